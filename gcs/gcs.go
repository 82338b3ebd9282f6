// Package gcs is the objsync driver for Google Cloud Storage, built on
// cloud.google.com/go/storage. Importing it registers the driver under the
// name "gcs".
//
// # DSN
//
//	gs://BUCKET/KEY
//
// BUCKET is the bucket name and KEY the object name: everything after the
// first slash, percent-decoded, so it may contain further slashes
// ("gs://b/locks/a" is object "locks/a"). Both are required. A '?' or '#' in
// a key must be written %3F or %23. The scheme "gcs" is accepted as a synonym
// of "gs". There are no parameters: any query parameter is an error, and so
// is user information or a port.
//
// Examples:
//
//	gs://my-bucket/locks/deploy
//	gs://my-bucket/locks/job%3F42
//
// # Credentials
//
// Application Default Credentials, found at the first request: the file named
// by GOOGLE_APPLICATION_CREDENTIALS (and only that file when the variable is
// set), then gcloud's application default credentials file
// (~/.config/gcloud/application_default_credentials.json, or under %APPDATA%
// on Windows), then the metadata server, asked on Google Cloud or when
// GCE_METADATA_HOST names it. When STORAGE_EMULATOR_HOST is set (for example
// "127.0.0.1:4443" or "http://127.0.0.1:4443"), requests go to that emulator
// without authentication instead.
//
// When none of these gives credentials (the named file does not exist, or
// there is neither file and no metadata server, or the metadata server has
// no token to give), requests fail, before anything is sent to the store,
// with an error that wraps driver.ErrNoCredentials and names the location
// and the sources tried. Credentials that the store refuses (401, 403) read
// "access denied, check the credentials".
//
// # Behaviour
//
// Opening DSNs does no network I/O, and all DSNs share one client (one per
// value of STORAGE_EMULATOR_HOST at the time of opening).
//
// Versions are object generations, as decimal strings. Create-only writes use
// the precondition ifGenerationMatch=0 (DoesNotExist), replacing writes
// ifGenerationMatch=GENERATION. Every write creates a new generation, even
// with unchanged content. GCS accepts about one write per second to the same
// object name and answers 429 beyond that; the driver reports it as
// transient. A read in a bucket that does not exist reports the object as
// absent (GCS answers both with 404); the first write then names the bucket.
package gcs

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"cloud.google.com/go/storage"

	"github.com/objsync/objsync/driver"
)

func init() {
	driver.Register("gcs", gcsDriver{})
}

type gcsDriver struct{}

// settings is what selects a client, and so the key under which clients are
// shared. The client reads STORAGE_EMULATOR_HOST when it is built.
type settings struct {
	emulatorHost string
}

// clients holds one client per distinct settings, and stores one store per
// bucket and settings, so that Mutexes on one lock share (see
// driver.Driver).
var (
	clients driver.Shared[settings, *lazyClient]
	stores  driver.Shared[storeID, *store]
)

type storeID struct {
	settings
	bucket string
}

// Open implements driver.Driver.
func (gcsDriver) Open(dsn string) (driver.Store, string, error) {
	bucket, key, err := parseDSN(dsn)
	if err != nil {
		return nil, "", fmt.Errorf("gcs: invalid DSN: %w", err)
	}
	set := settings{emulatorHost: os.Getenv("STORAGE_EMULATOR_HOST")}
	st, _ := stores.Get(storeID{set, bucket}, func() (*store, error) { // cannot fail
		client, _ := clients.Get(set, func() (*lazyClient, error) { return &lazyClient{}, nil })
		return &store{client: client, bucket: bucket}, nil
	})
	return st, key, nil
}

// parseDSN splits a DSN into bucket and key. Its errors never quote the
// DSN, which might hold a secret put there by mistake.
func parseDSN(dsn string) (bucket, key string, err error) {
	u, err := url.Parse(dsn)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return "", "", err
	}
	switch {
	case u.Scheme != "gs" && u.Scheme != "gcs":
		return "", "", fmt.Errorf("scheme must be gs, not %q", u.Scheme)
	case u.Opaque != "":
		return "", "", errors.New("want gs://BUCKET/KEY")
	case u.User != nil:
		return "", "", errors.New("credentials do not belong in the DSN; use Application Default Credentials")
	case u.Fragment != "" || strings.HasSuffix(dsn, "#"):
		return "", "", errors.New("unexpected '#'; write it %23 in a key")
	case u.Port() != "":
		return "", "", errors.New("a bucket name has no port")
	case u.Host == "":
		return "", "", errors.New("missing bucket")
	}
	if _, err := driver.ParseQuery(u.RawQuery); err != nil {
		return "", "", err
	}
	key = strings.TrimPrefix(u.Path, "/")
	if key == "" {
		return "", "", errors.New("missing key")
	}
	return u.Host, key, nil
}

// lazyClient builds the storage client at the first request, because
// building it may probe the metadata server for credentials, and Open must
// do no network I/O. A failed build is tried again at the next request.
type lazyClient struct {
	mu     sync.Mutex
	client *storage.Client
}

func (l *lazyClient) get(ctx context.Context) (*storage.Client, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.client != nil {
		return l.client, nil
	}
	// The client outlives this request, so it must not inherit its
	// cancellation. Reads use the JSON API, like writes: the XML API
	// that is the default for reads is the one emulators serve least
	// well (fake-gcs-server only under its public host name).
	c, err := storage.NewClient(context.WithoutCancel(ctx), storage.WithJSONReads())
	if err != nil {
		return nil, err
	}
	// The client would otherwise retry conditional writes, which it deems
	// idempotent. But a create-only write whose success was lost in transit
	// (a reset connection, a 503 after the commit) would then be retried and
	// answered 412: a write that took effect reported as one that did not.
	// So the client never retries; transient errors are marked
	// driver.Retryable and the lock protocol, which settles unknown outcomes
	// by reading the object again, retries them.
	c.SetRetry(storage.WithPolicy(storage.RetryNever))
	l.client = c
	return c, nil
}

// store is a bucket reached through a shared client.
type store struct {
	client *lazyClient
	bucket string
}

// WriteInterval implements driver.WriteLimiter: GCS accepts about one
// write a second to an object.
func (s *store) WriteInterval() time.Duration { return time.Second }

// Location implements driver.Store.
func (s *store) Location(key string) string {
	return "gs://" + s.bucket + "/" + key
}

// Read implements driver.Store.
func (s *store) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	c, err := s.client.get(ctx)
	if err != nil {
		return nil, "", s.clientError("read", key, err)
	}
	r, err := c.Bucket(s.bucket).Object(key).NewReader(ctx)
	if err != nil {
		return nil, "", s.readError(key, err)
	}
	defer r.Close()
	data, err := io.ReadAll(r)
	if err != nil {
		return nil, "", s.readError(key, err)
	}
	return data, generationVersion(r.Attrs.Generation), nil
}

// Write implements driver.Store.
func (s *store) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	cond := storage.Conditions{DoesNotExist: true}
	if ifVersion != "" {
		gen, err := strconv.ParseInt(string(ifVersion), 10, 64)
		if err != nil || gen <= 0 {
			// Generation 0 would mean "absent" to GCS.
			return "", fmt.Errorf("write %s: version %q is not a generation: %w", s.Location(key), ifVersion, driver.ErrPrecondition)
		}
		cond = storage.Conditions{GenerationMatch: gen}
	}
	c, err := s.client.get(ctx)
	if err != nil {
		return "", s.clientError("write", key, err)
	}
	w := c.Bucket(s.bucket).Object(key).If(cond).NewWriter(ctx)
	w.ChunkSize = 0 // one request, no resumable upload session
	// The server checks the checksum before it commits, so a corrupted
	// upload fails cleanly instead of being found out after the fact.
	w.CRC32C = crc32.Checksum(data, castagnoli)
	w.SendCRC32C = true
	if _, err := w.Write(data); err != nil {
		w.Close()
		return "", s.writeError(key, err)
	}
	if err := w.Close(); err != nil {
		return "", s.writeError(key, err)
	}
	return generationVersion(w.Attrs().Generation), nil
}

// Delete implements driver.Deleter.
func (s *store) Delete(ctx context.Context, key string) error {
	c, err := s.client.get(ctx)
	if err != nil {
		return s.clientError("delete", key, err)
	}
	err = c.Bucket(s.bucket).Object(key).Delete(ctx)
	if err != nil && !errors.Is(err, storage.ErrObjectNotExist) {
		return s.classify("delete", key, err)
	}
	return nil
}

// DeleteIf implements driver.ConditionalDeleter: a delete with
// ifGenerationMatch.
func (s *store) DeleteIf(ctx context.Context, key string, ifVersion driver.Version) error {
	gen, err := strconv.ParseInt(string(ifVersion), 10, 64)
	if err != nil || gen <= 0 {
		return fmt.Errorf("delete %s: version %q is not a generation: %w", s.Location(key), ifVersion, driver.ErrPrecondition)
	}
	c, err := s.client.get(ctx)
	if err != nil {
		return s.clientError("delete", key, err)
	}
	err = c.Bucket(s.bucket).Object(key).If(storage.Conditions{GenerationMatch: gen}).Delete(ctx)
	switch {
	case err == nil:
		return nil
	case httpStatus(err) == http.StatusPreconditionFailed:
		return fmt.Errorf("delete %s: %w", s.Location(key), driver.ErrPrecondition)
	}
	return s.classify("delete", key, err)
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func generationVersion(gen int64) driver.Version {
	return driver.Version(strconv.FormatInt(gen, 10))
}
