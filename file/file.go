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
// The object lives in the file at that path. Its directory must exist, as
// with flock(1): a mistyped directory is reported rather than created. A
// relative path is taken from the working directory when Open is called.
// A symbolic link at the path is followed, as flock(1) does, so a link and
// its target are one lock; an empty file (left by touch, or by flock(1))
// is an object that does not exist yet. No query parameters are accepted.
// A store is a directory: keys given to its Write and Read are
// slash-separated paths below it, and their subdirectories are created as
// needed, as object stores accept any key.
//
// How it keeps the contract: a write takes an exclusive flock(2), a read a
// shared one, on a file named .objsync-flock in the object's directory;
// the writer compares the current version and writes the new object as a
// checksummed record in the same file, beside the record of the current
// version, never over it, then fsyncs the file. Readers take the valid
// record with the highest generation. A process killed at any point
// leaves the old object or the new one, never a torn or missing one: a
// torn record fails its checksum, and the record it did not overwrite is
// still there. A file holds at most two live records; each starts at a
// multiple of 4 KiB.
//
// Several users can share a lock file, as they share one of flock(1) in
// /tmp or /run/lock: the lock file is opened read-only (flock needs no
// more) and created readable by all; an object's file is written in place,
// never renamed over (in a sticky directory only a file's owner may do
// that), opened without O_CREAT once it exists (Linux's
// fs.protected_regular refuses O_CREAT on another user's file there), and
// created writable by whoever may write in its directory, whatever the
// umask. A user who may not create the lock file reads without it.
//
// Versions are kept inside the records, as a generation number and a
// random nonce, so they survive restarts and never repeat. A file in
// format 1 (one header line and the content, written by objsync before
// format 2) is read as before, and replaced whole by rename, as then, at
// its first write; objsync before format 2 reads a format-2 file as an
// object that is not a lock, and leaves it alone: run one version on a
// host. A file written by something else is read as content whose version
// is a hash of its bytes and inode, and can still be replaced
// conditionally, also by rename.
//
// Network filesystems are not supported: flock(2) is not reliable on NFS
// or SMB.
package file

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
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
			return nil, "", fmt.Errorf("file: DSN %q names host %q; only local paths are supported (file:///ABS/PATH)", driver.Redact(dsn), u.Hostname())
		}
		if _, err := driver.ParseQuery(u.RawQuery); err != nil {
			return nil, "", fmt.Errorf("file: %w", err)
		}
		path = u.Path
	}
	if path == "" || strings.HasSuffix(path, "/") {
		return nil, "", fmt.Errorf("file: DSN %q must name a file, not a directory", driver.Redact(dsn))
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
)

// WriteInterval implements driver.WriteLimiter: a file system has no limit
// on how often a file is written.
func (s *Store) WriteInterval() time.Duration { return 0 }

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
	data, version, err := s.read(ctx, path)
	if err != nil {
		return nil, "", s.describe(key, err)
	}
	return data, version, nil
}

func (s *Store) read(ctx context.Context, path string) ([]byte, driver.Version, error) {
	path, err := followLinks(path)
	if err != nil {
		return nil, "", err
	}
	// Shared with other readers, exclusive of writers, which write in
	// place. A reader that may not create the lock file (a read-only
	// directory, or one of format 1's that only its owner can read) reads
	// without it: a write under way then shows as the version before it.
	unlock, err := lockDir(ctx, filepath.Dir(path), syscall.LOCK_SH)
	switch {
	case err == nil:
		defer unlock()
	case errors.Is(err, fs.ErrPermission) || errors.Is(err, syscall.EROFS):
	default:
		return nil, "", err
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	c, err := readContent(f)
	if err != nil {
		return nil, "", err
	}
	if c.kind == absent {
		return nil, "", fs.ErrNotExist
	}
	return c.data, c.version, nil
}

// readContent reads and parses the whole of f.
func readContent(f *os.File) (content, error) {
	raw, err := io.ReadAll(f)
	if err != nil {
		return content{}, err
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return content{}, err
	}
	return parse(raw, &st), nil
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
	if dir := filepath.Dir(path); dir != s.root {
		if err := s.checkRoot(); err != nil {
			return "", s.describe(key, err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return "", s.describe(key, err)
		}
	}
	version, err := s.write(ctx, path, data, ifVersion)
	switch {
	case errors.Is(err, driver.ErrPrecondition):
		return "", fmt.Errorf("%s: %w", s.Location(key), driver.ErrPrecondition)
	case err != nil:
		return "", s.describe(key, err)
	}
	return version, nil
}

func (s *Store) write(ctx context.Context, path string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	path, err := followLinks(path)
	if err != nil {
		return "", err
	}
	dir := filepath.Dir(path)
	unlock, err := lockDir(ctx, dir, syscall.LOCK_EX)
	if err != nil {
		return "", err
	}
	defer unlock()

	f, created, err := openObject(path, ifVersion == "")
	if err != nil {
		return "", err
	}
	defer f.Close()
	cur, err := readContent(f)
	if err != nil {
		return "", err
	}
	if cur.version != ifVersion {
		return "", driver.ErrPrecondition
	}
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return "", err
	}
	version := driver.Version(fmt.Sprintf("g%d.%x", generation(cur.version)+1, nonce))
	rec := encodeRecord(version, data)
	switch cur.kind {
	case legacy, foreign:
		// Their content has no second record to fall back on: replace
		// the file whole, as format 1 did.
		return version, replaceFile(dir, path, rec)
	case absent:
		// Nothing to keep: an empty file, or a first record torn.
		if err := f.Truncate(0); err != nil {
			return "", err
		}
	}
	if _, err := f.WriteAt(rec, int64(cur.place(len(rec)))); err != nil {
		return "", err
	}
	if err := f.Sync(); err != nil {
		return "", err
	}
	if created {
		if err := syncDir(dir); err != nil {
			return "", err
		}
	}
	return version, nil
}

// openObject opens the object's file for reading and writing, creating it
// if it is absent and create is true (else absent is ErrPrecondition).
//
// An existing file is opened without O_CREAT: in a sticky directory such
// as /tmp, Linux's fs.protected_regular refuses O_CREAT on a file of
// another user even when it exists. A new file is writable by whoever may
// write in its directory, whatever the umask, so that every user who can
// lock there can lock this file too.
func openObject(path string, create bool) (f *os.File, created bool, err error) {
	for {
		f, err = os.OpenFile(path, os.O_RDWR, 0)
		if !errors.Is(err, fs.ErrNotExist) {
			return f, false, err
		}
		if !create {
			return nil, false, driver.ErrPrecondition
		}
		f, err = os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, fs.ErrExist) {
			continue // created meanwhile, by someone not holding our lock
		}
		if err != nil {
			return nil, false, err
		}
		dirInfo, err := os.Stat(filepath.Dir(path))
		if err == nil {
			err = f.Chmod(0o644 | dirInfo.Mode().Perm()&0o022)
		}
		if err != nil {
			f.Close()
			return nil, false, err
		}
		return f, true, nil
	}
}

// followLinks returns the file that path names after following symbolic
// links in its last element, as flock(1) does: a link and its target are
// one lock. A link to a missing file gives that file's path, where a write
// creates it.
func followLinks(path string) (string, error) {
	for range 40 { // as Linux's limit on links in a path
		target, err := os.Readlink(path)
		if err != nil {
			// Not a link (EINVAL), or absent: path is the file.
			return path, nil
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(path), target)
		}
		path = filepath.Clean(target)
	}
	return "", fmt.Errorf("%s: %w", path, syscall.ELOOP)
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

// replaceFile atomically replaces path with a file holding content. The
// caller holds the directory's lock, which is why a fixed temporary name
// per key is safe.
func replaceFile(dir, path string, content []byte) error {
	tmp := filepath.Join(dir, tempPrefix+filepath.Base(path))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
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

// lockPoll is how often a busy directory lock is tried again. Writers
// hold it for one read, one write and an fsync, so a short poll keeps
// waits short.
const lockPoll = time.Millisecond

// lockDir takes the lock of dir, shared (syscall.LOCK_SH, for readers) or
// exclusive (LOCK_EX, for writers), polling so that ctx can stop the wait,
// and returns its release. The lock file is opened read-only, and created
// readable by all, so that every user who may read the directory can take
// the lock: flock(2) needs no write permission.
func lockDir(ctx context.Context, dir string, how int) (func(), error) {
	name := filepath.Join(dir, lockName)
	f, err := os.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		f, err = os.OpenFile(name, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err == nil {
			err = f.Chmod(0o644) // whatever the umask
		} else if errors.Is(err, fs.ErrExist) {
			f, err = os.Open(name) // created meanwhile
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		return nil, err
	}
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
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
