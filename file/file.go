//go:build unix

// Package file is the objsync driver for a local filesystem, the embedded
// default: locks that are correct across the processes of one host, with no
// server at all.
//
// Import it for its side effect of registering the driver "file":
//
//	import _ "github.com/objsync/objsync/file"
//
// DSN grammar:
//
//	file:///ABSOLUTE/PATH/TO/KEY
//	/absolute/path/to/key
//	relative/path/to/key
//
// The object lives in the file at that path; its directory must exist. A
// relative path is taken from the working directory when Open is called. No
// query parameters are accepted. A store is a directory: keys given to its
// Write and Read are slash-separated paths below it, and subdirectories are
// created as needed.
//
// How it keeps the contract: every write takes an exclusive flock(2) on a
// file named .objsync-flock in the object's directory, compares the current
// version, writes the new content to a temporary file, fsyncs it, renames it
// over the object and fsyncs the directory. Readers need no lock, because a
// rename replaces the file atomically. A process killed at any point leaves
// either the old object or the new one, never a torn or missing one; the
// next writer overwrites any temporary file left behind.
//
// Versions are kept inside the file, in a one-line header before the
// content, as a generation number and a random nonce, so they survive
// restarts and never repeat. A file without that header (written by
// something else) is read as content whose version is a hash of its bytes
// and inode, and can still be replaced conditionally.
//
// Network filesystems are not supported: flock(2) and rename(2) are not
// reliably atomic on NFS or SMB.
package file

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/objsync/objsync/driver"
)

func init() { driver.Register("file", fileDriver{}) }

type fileDriver struct{}

// Open parses a file DSN or a plain path.
func (fileDriver) Open(dsn string) (driver.Store, string, error) {
	path := dsn
	if len(dsn) >= 5 && strings.EqualFold(dsn[:5], "file:") { // schemes ignore case
		u, err := url.Parse(dsn)
		if err != nil {
			return nil, "", fmt.Errorf("file: bad DSN: %w", err)
		}
		if u.Host != "" && u.Host != "localhost" {
			return nil, "", fmt.Errorf("file: DSN %q names host %q; only local paths are supported (file:///ABS/PATH)", dsn, u.Host)
		}
		if _, err := driver.ParseQuery(u.RawQuery); err != nil {
			return nil, "", fmt.Errorf("file: %w", err)
		}
		path = u.Path
	}
	if path == "" || strings.HasSuffix(path, "/") {
		return nil, "", fmt.Errorf("file: DSN %q must name a file, not a directory", dsn)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, "", fmt.Errorf("file: %w", err)
	}
	dir, key := filepath.Split(abs)
	return NewStore(filepath.Clean(dir)), key, nil
}

var stores driver.Shared[string, *Store]

// NewStore returns the store rooted at dir, an absolute path. Stores are
// shared: every call with the same dir returns the same one. The directory
// is not checked until the first request.
func NewStore(dir string) *Store {
	s, _ := stores.Get(dir, func() (*Store, error) { return &Store{root: dir}, nil })
	return s
}

// Store is a directory of objects. It is safe for concurrent use, by
// goroutines and by processes.
type Store struct {
	root string
}

const (
	lockName   = ".objsync-flock"
	tempPrefix = ".objsync-tmp-"
	// header is the first line of every file this driver writes, followed
	// by the version and a newline.
	header = "objsync-file/1 "
)

// Location returns the object's path as a file:// URL.
func (s *Store) Location(key string) string {
	return (&url.URL{Scheme: "file", Path: filepath.Join(s.root, filepath.FromSlash(key))}).String()
}

// path returns the file for key, refusing keys that would leave the root or
// clash with the driver's own files.
func (s *Store) path(key string) (string, error) {
	if key == "" {
		return "", errors.New("file: empty key")
	}
	for elem := range strings.SplitSeq(key, "/") {
		switch {
		case elem == "" || elem == "." || elem == "..":
			return "", fmt.Errorf("file: key %q has an empty, . or .. path element", key)
		case elem == lockName || strings.HasPrefix(elem, tempPrefix):
			return "", fmt.Errorf("file: key %q uses a name reserved by the driver", key)
		}
	}
	return filepath.Join(s.root, filepath.FromSlash(key)), nil
}

// Read implements driver.Store.
func (s *Store) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	path, err := s.path(key)
	if err != nil {
		return nil, "", err
	}
	data, version, err := readObject(path)
	if err != nil {
		return nil, "", s.describe(key, err)
	}
	return data, version, nil
}

// readObject reads a file and splits off the version header. A missing
// file is an error wrapping driver.ErrNotExist.
func readObject(path string) ([]byte, driver.Version, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	raw, err := io.ReadAll(f)
	if err != nil {
		return nil, "", err
	}
	if rest, ok := bytes.CutPrefix(raw, []byte(header)); ok {
		if line, content, ok := bytes.Cut(rest, []byte("\n")); ok {
			return content, driver.Version(line), nil
		}
	}
	// Not ours: the version must still change when the file does, so hash
	// what identifies this content in this file.
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return nil, "", err
	}
	sum := sha256.New()
	sum.Write(raw)
	fmt.Fprintf(sum, "%d/%d/%d", st.Dev, st.Ino, st.Size)
	return raw, driver.Version("raw-" + hex.EncodeToString(sum.Sum(nil)[:16])), nil
}

// Write implements driver.Store.
func (s *Store) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	path, err := s.path(key)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(path)
	if dir != s.root {
		if err := s.checkRoot(); err != nil {
			return "", s.describe(key, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", s.describe(key, err)
		}
	}
	unlock, err := lockDir(ctx, dir)
	if err != nil {
		return "", s.describe(key, err)
	}
	defer unlock()

	_, current, err := readObject(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return "", s.describe(key, err)
	}
	if current != ifVersion {
		return "", fmt.Errorf("%s: %w", s.Location(key), driver.ErrPrecondition)
	}
	version, err := nextVersion(current)
	if err != nil {
		return "", err
	}
	if err := replaceFile(dir, path, version, data); err != nil {
		return "", s.describe(key, err)
	}
	return version, nil
}

// Delete implements driver.Deleter: it removes the object's file.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	path, err := s.path(key)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return s.describe(key, err)
	}
	return nil
}

// checkRoot makes sure the store's own directory exists, so that a typo in
// a DSN is reported rather than created.
func (s *Store) checkRoot() error {
	st, err := os.Stat(s.root)
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is not a directory", s.root)
	}
	return nil
}

// describe turns a filesystem error into one that names the location and
// says what to do.
func (s *Store) describe(key string, err error) error {
	loc := s.Location(key)
	switch {
	case errors.Is(err, fs.ErrNotExist) && s.checkRoot() != nil:
		return fmt.Errorf("%s: directory %s does not exist: %w", loc, s.root, err)
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s: %w", loc, driver.ErrNotExist)
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS):
		return fmt.Errorf("%s: no permission to write in %s (the file driver needs a writable directory): %w", loc, s.root, err)
	}
	return fmt.Errorf("%s: %w", loc, err)
}

// nextVersion returns a version with the generation after current's and a
// fresh nonce, so that no version repeats even if the file is deleted and
// written again.
func nextVersion(current driver.Version) (driver.Version, error) {
	var gen uint64
	if g, _, ok := strings.Cut(string(current), "."); ok {
		gen, _ = strconv.ParseUint(strings.TrimPrefix(g, "g"), 10, 64)
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", err
	}
	return driver.Version(fmt.Sprintf("g%d.%x", gen+1, nonce)), nil
}

// replaceFile atomically replaces path with a file holding the version
// header and data. The caller holds the directory's lock, which is why a
// fixed temporary name per key is safe.
func replaceFile(dir, path string, version driver.Version, data []byte) error {
	tmp := filepath.Join(dir, tempPrefix+filepath.Base(path))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	content := make([]byte, 0, len(header)+len(version)+1+len(data))
	content = append(append(append(append(content, header...), version...), '\n'), data...)
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(dir)
}

// syncDir makes a rename in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// lockPoll is how often a writer retries a busy directory lock. Holds last
// one read, one write and two fsyncs, so a short poll keeps waits short.
const lockPoll = time.Millisecond

// lockDir takes the exclusive lock of dir, polling so that ctx can stop the
// wait, and returns its release.
func lockDir(ctx context.Context, dir string) (func(), error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			// Closing the file releases the lock.
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("flock %s: %w", f.Name(), err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(lockPoll):
		}
	}
}
