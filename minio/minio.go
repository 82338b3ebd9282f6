// Package minio is the objsync driver for MinIO and other S3-compatible
// stores, built on minio-go. Importing it registers the driver under the name
// "minio".
//
// # DSN
//
//	minio://[ACCESS_KEY:SECRET_KEY@]HOST[:PORT]/BUCKET/KEY[?PARAM=VALUE&...]
//
// HOST[:PORT] is the server; without a port, 443 or 80 according to secure.
// BUCKET is the first path segment and KEY the rest, percent-decoded, so it
// may contain slashes ("minio://h:9000/b/locks/a" is key "locks/a"). Both are
// required. A '?' or '#' in a key must be written %3F or %23, and so must
// reserved characters in the keys, for example '/' as %2F and '@' as %40.
//
// Parameters, all optional; any other parameter is an error:
//
//   - secure: "false" to speak plain HTTP. Default: true (HTTPS).
//   - region: the signing region. Default: asked of the server once per
//     bucket (GetBucketLocation) and cached; MinIO's own default is
//     "us-east-1".
//
// Examples:
//
//	minio://minio.internal:9000/locks/deploy
//	minio://127.0.0.1:9000/locks/job-42?secure=false&region=us-east-1
//	minio://AKIAEXAMPLE:wJalrXUtnFEMI%2FK7MDENG@127.0.0.1:9000/locks/a?secure=false
//
// # Credentials
//
// When the DSN has user information, its access key and secret key are used,
// and both are required. Otherwise the first of these that yields a key is
// used, at each request until one does: MINIO_ROOT_USER and
// MINIO_ROOT_PASSWORD, then MINIO_ACCESS_KEY and MINIO_SECRET_KEY;
// AWS_ACCESS_KEY_ID (or AWS_ACCESS_KEY), AWS_SECRET_ACCESS_KEY (or
// AWS_SECRET_KEY) and AWS_SESSION_TOKEN; the mc config file
// (MINIO_SHARED_CREDENTIALS_FILE or ~/.mc/config.json, alias MINIO_ALIAS or
// "s3"); the AWS shared config and credentials files (profile AWS_PROFILE or
// "default"); a web identity token, the AWS container endpoint, and the EC2
// instance role, which is not asked when AWS_EC2_METADATA_DISABLED is true
// (as with the AWS SDK).
//
// With none, requests are sent anonymous, which a bucket open to anonymous
// access accepts. When the store refuses them (401 or 403), the error wraps
// driver.ErrNoCredentials and names the location and the sources tried.
// Keys that the store refuses read "access denied, check the credentials".
// The secret key never appears in an error, a Location or a String.
//
// # Behaviour
//
// Opening DSNs does no network I/O, and all DSNs naming the same server,
// secure, region and credentials share one client.
//
// Versions are ETags without their quotes. Create-only writes send
// "If-None-Match: *"; replacing writes send "If-Match" with the ETag
// unquoted, because Ceph RGW rejects the quoted form that minio-go sends.
// minio-go adds no request checksums here: trailing-header checksums stay
// off, and the payload is signed with its SHA-256 rather than streamed.
// A 409 ConditionalRequestConflict is retried, and a 5xx answer to a write
// is settled by reading the object back: Ceph RGW answers 500 instead of 412
// to some of the conditional writes that lose a race.
//
// ETags of single-part uploads are the MD5 of the content, so writing the
// same bytes twice yields the same version: callers must make each write's
// content unique if they rely on versions never repeating.
package minio

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
	"github.com/minio/minio-go/v7/pkg/s3utils"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/s3compat"
)

func init() {
	driver.Register("minio", minioDriver{})
}

type minioDriver struct{}

// settings is everything a DSN says about the client, and so the key under
// which clients are shared. It lives only in that key, never in a store,
// so that printing a store cannot show the secret.
type settings struct {
	host      string // host[:port], lower case
	secure    bool
	region    string
	accessKey string // with secretKey, from the DSN; empty: the chain
	secretKey string
}

// clients holds one client per distinct settings, and stores one store per
// bucket and settings, so that Mutexes on one lock share (see
// driver.Driver).
var (
	clients driver.Shared[settings, *client]
	stores  driver.Shared[storeID, *store]
)

type storeID struct {
	settings
	bucket string
}

// Open implements driver.Driver.
func (minioDriver) Open(dsn string) (driver.Store, string, error) {
	bucket, key, set, err := parseDSN(dsn)
	if err != nil {
		return nil, "", fmt.Errorf("minio: invalid DSN: %w", err)
	}
	st, err := stores.Get(storeID{set, bucket}, func() (*store, error) {
		client, err := clients.Get(set, func() (*client, error) { return newClient(set) })
		st := &store{client: client, host: set.host, bucket: bucket}
		st.Reads = s3compat.Reads{Get: st.get, Location: st.Location}
		return st, err
	})
	if err != nil {
		// minio-go's errors here name the endpoint only.
		return nil, "", fmt.Errorf("minio: %w", err)
	}
	return st, key, nil
}

// parseDSN splits a DSN into bucket, key and client settings. Its errors
// never quote the DSN, which may hold a secret key.
func parseDSN(dsn string) (bucket, key string, set settings, err error) {
	u, err := url.Parse(dsn)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return "", "", settings{}, err
	}
	switch {
	case u.Scheme != "minio":
		return "", "", settings{}, fmt.Errorf("scheme must be minio, not %q", u.Scheme)
	case u.Opaque != "":
		return "", "", settings{}, errors.New("want minio://HOST[:PORT]/BUCKET/KEY")
	case u.Fragment != "" || strings.HasSuffix(dsn, "#"):
		return "", "", settings{}, errors.New("unexpected '#'; write it %23 in a key")
	case u.Host == "":
		return "", "", settings{}, errors.New("missing host")
	}
	set.host = strings.ToLower(u.Host)
	bucket, key, _ = strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	if bucket == "" {
		return "", "", settings{}, errors.New("missing bucket")
	}
	if err := s3utils.CheckValidBucketName(bucket); err != nil {
		return "", "", settings{}, fmt.Errorf("bucket %q: %w", bucket, err)
	}
	if key == "" {
		return "", "", settings{}, errors.New("missing key")
	}
	if u.User != nil {
		set.accessKey = u.User.Username()
		set.secretKey, _ = u.User.Password()
		if set.accessKey == "" || set.secretKey == "" {
			return "", "", settings{}, errors.New("user information must be ACCESS_KEY:SECRET_KEY, both non-empty")
		}
	}

	q, err := driver.ParseQuery(u.RawQuery, "secure", "region")
	if err != nil {
		return "", "", settings{}, err
	}
	set.secure = true
	if s := q.Get("secure"); s != "" {
		if set.secure, err = strconv.ParseBool(s); err != nil {
			return "", "", settings{}, fmt.Errorf("secure must be true or false, not %q", s)
		}
	}
	set.region = q.Get("region")
	return bucket, key, set, nil
}

// client is a minio-go client and, for DSNs without keys, the chain that
// finds its credentials.
type client struct {
	core  *minio.Core
	chain *chain // nil with the DSN's keys
}

func newClient(set settings) (*client, error) {
	var c client
	var creds *credentials.Credentials
	if set.accessKey != "" {
		creds = credentials.NewStaticV4(set.accessKey, set.secretKey, "")
	} else {
		c.chain = &chain{Chain: credentials.Chain{Providers: []credentials.Provider{
			&credentials.EnvMinio{},
			&credentials.EnvAWS{},
			&credentials.FileMinioClient{},
			&credentials.FileAWSCredentials{},
			&iamUnlessMetadataDisabled{},
		}}}
		creds = credentials.New(c.chain)
	}
	transport, err := minio.DefaultTransport(set.secure)
	if err != nil {
		return nil, err
	}
	c.core, err = minio.NewCore(set.host, &minio.Options{
		Creds:     creds,
		Secure:    set.secure,
		Region:    set.region,
		Transport: &unquoteIfMatch{next: transport, creds: creds},
		// The lock protocol retries transient errors itself, and a write
		// retried here could turn a success whose answer was lost into a
		// precondition failure. 1 means a single attempt.
		MaxRetries: 1,
	})
	return &c, err
}

// store is a bucket reached through a shared client.
type store struct {
	s3compat.Reads
	client *client
	host   string
	bucket string
}

// WriteInterval implements driver.WriteLimiter: a second on Cloudflare R2,
// none elsewhere.
func (s *store) WriteInterval() time.Duration { return s3compat.WriteInterval(s.host) }

// Location implements driver.Store.
func (s *store) Location(key string) string {
	return "minio://" + s.host + "/" + s.bucket + "/" + key
}

// String describes the store without its credentials.
func (s *store) String() string {
	return "minio://" + s.host + "/" + s.bucket
}

// get reads the object at key (s3compat.Reads makes Read, ReadAge and
// ReadDate of it).
func (s *store) get(ctx context.Context, key string) (s3compat.Object, error) {
	body, info, header, err := s.client.core.GetObject(ctx, s.bucket, key, minio.GetObjectOptions{})
	if err != nil {
		return s3compat.Object{}, s.readError(key, err)
	}
	defer body.Close()
	data, err := io.ReadAll(body)
	if err != nil {
		return s3compat.Object{}, s.readError(key, err)
	}
	if info.ETag == "" {
		return s3compat.Object{}, fmt.Errorf("read %s: the store sent no ETag", s.Location(key))
	}
	return s3compat.Object{Data: data, Version: driver.Version(info.ETag), Date: header.Get("Date"), LastModified: info.LastModified}, nil
}

// Delete implements driver.Deleter.
func (s *store) Delete(ctx context.Context, key string) error {
	err := s.client.core.RemoveObject(ctx, s.bucket, key, minio.RemoveObjectOptions{})
	// S3 answers success for an absent key; some compatible stores answer
	// 404, which readError knows to tell from a missing bucket.
	if err == nil || errors.Is(s.readError(key, err), driver.ErrNotExist) {
		return nil
	}
	return s.classify("delete", key, err)
}

// Write implements driver.Store.
func (s *store) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	// DisableContentSha256 turns off the streaming signature; the payload is
	// signed with its SHA-256 instead, which every S3 server accepts.
	opts := minio.PutObjectOptions{DisableContentSha256: true}
	if ifVersion == "" {
		opts.SetMatchETagExcept("*")
	} else {
		if !s3compat.IsETag(ifVersion) {
			return "", fmt.Errorf("write %s: version %q is not an ETag: %w", s.Location(key), ifVersion, driver.ErrPrecondition)
		}
		opts.SetMatchETag(string(ifVersion)) // quoted by minio-go; see unquoteIfMatch
	}
	sum := sha256.Sum256(data)
	put := func(ctx context.Context) (driver.Version, error) {
		info, err := s.client.core.PutObject(ctx, s.bucket, key, bytes.NewReader(data), int64(len(data)), "", hex.EncodeToString(sum[:]), opts)
		if err != nil {
			return "", err
		}
		if info.ETag == "" {
			return "", fmt.Errorf("the store sent no ETag")
		}
		return driver.Version(info.ETag), nil
	}
	read := func(ctx context.Context) ([]byte, driver.Version, error) { return s.Read(ctx, key) }
	v, err := s3compat.Write(ctx, data, ifVersion, put, answerOf, read)
	if err != nil {
		return "", s.writeError(key, ifVersion, err)
	}
	return v, nil
}

// answerOf sorts a failed PutObject's answer for s3compat.Write.
func answerOf(err error) s3compat.Answer {
	switch resp := minio.ToErrorResponse(err); {
	case resp.Code == "ConditionalRequestConflict":
		return s3compat.Conflict
	case resp.StatusCode >= 500:
		return s3compat.ServerError
	}
	return s3compat.Other
}
