// Package s3 is the objsync driver for Amazon S3 and S3-compatible stores
// (MinIO, Ceph RGW, Cloudflare R2), built on aws-sdk-go-v2. Importing it
// registers the driver under the name "s3".
//
// # DSN
//
//	s3://BUCKET/KEY[?PARAM=VALUE&...]
//
// BUCKET is the bucket name and KEY the object key: everything after the
// first slash, percent-decoded, so it may contain further slashes
// ("s3://b/locks/a" is key "locks/a"). Both are required. A '?' or '#' in a
// key must be written %3F or %23. User information ("s3://user:pass@...") is
// rejected: credentials never belong in the DSN.
//
// Parameters, all optional; any other parameter is an error:
//
//   - region: the signing region, e.g. "eu-west-1". Default: AWS_REGION or
//     the profile's region; if neither is set, "us-east-1".
//   - endpoint: base URL of an S3-compatible server, http or https, e.g.
//     "http://127.0.0.1:9000" or "https://ACCOUNT.r2.cloudflarestorage.com".
//     Default: the SDK's choice (AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL, the
//     profile's endpoint_url, else Amazon S3 for the region).
//   - path_style: "true" to address the bucket in the path
//     (http://host/BUCKET/KEY) rather than in the host name
//     (http://BUCKET.host/KEY). Default: true when endpoint is given,
//     since most S3-compatible servers need it, false otherwise.
//   - profile: the shared config profile to load (~/.aws/config,
//     ~/.aws/credentials). Default: AWS_PROFILE, else "default".
//
// Examples:
//
//	s3://my-bucket/locks/deploy
//	s3://my-bucket/locks/deploy?region=eu-west-1&profile=ops
//	s3://locks/job-42?endpoint=http://127.0.0.1:9000&region=us-east-1
//	s3://locks/job-42?endpoint=https://ACCOUNT.r2.cloudflarestorage.com&region=auto
//
// # Credentials
//
// Credentials come from the SDK's default chain, in its order: the
// environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN),
// a web identity token (AWS_WEB_IDENTITY_TOKEN_FILE), the shared config and
// credentials files for the profile (static keys, SSO, assumed roles,
// credential_process), the container endpoint
// (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI or _FULL_URI) and the EC2 instance
// role; a profile named in the DSN comes first. They are resolved at the
// first request, not when a DSN is opened.
//
// When none of these is configured and the instance role gives none either
// (or is not asked, with AWS_EC2_METADATA_DISABLED=true), requests fail
// before anything is sent to the store, with an error that wraps
// driver.ErrNoCredentials and names the location and the sources tried. A
// source that is configured but fails (an expired SSO session, an
// unreachable container endpoint) reports its own error instead, and
// credentials that the store refuses read "access denied, check the
// credentials".
//
// # Logging
//
// The SDK's own log messages, such as its warnings about the instance
// metadata service or unvalidated checksums, go to slog.Default() at Debug
// level, with the attributes source=aws-sdk-go-v2 and classification (the
// SDK's level, "WARN" or "DEBUG"), never to stderr directly.
//
// # Behaviour
//
// Opening DSNs does no network I/O, and all DSNs with the same region,
// endpoint, path_style and profile share one client. The environment and
// config files are read when the first of them is opened.
//
// Versions are ETags without their quotes. Create-only writes send
// "If-None-Match: *"; replacing writes send "If-Match" with the unquoted ETag,
// because Ceph RGW rejects the quoted form. The SDK's default CRC32 request
// checksums are turned off, as several S3-compatible stores reject them.
// A 409 ConditionalRequestConflict is retried, and a 5xx answer to a write
// is settled by reading the object back: Ceph RGW answers 500 instead of 412
// to some of the conditional writes that lose a race.
//
// S3 ETags of single-part uploads are the MD5 of the content, so writing the
// same bytes twice yields the same version: callers must make each write's
// content unique if they rely on versions never repeating.
//
// The credentials need s3:GetObject, s3:PutObject and s3:ListBucket on the
// bucket: without s3:ListBucket, Amazon S3 answers 403 rather than 404 for a
// missing object, which reads as "access denied".
package s3

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials/ec2rolecreds"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/s3compat"
)

func init() {
	driver.Register("s3", s3Driver{})
}

type s3Driver struct{}

// settings is everything a DSN says about the client, and so the key under
// which clients are shared.
type settings struct {
	region    string
	endpoint  string
	pathStyle bool
	profile   string
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
func (s3Driver) Open(dsn string) (driver.Store, string, error) {
	bucket, key, set, err := parseDSN(dsn)
	if err != nil {
		return nil, "", fmt.Errorf("s3: invalid DSN: %w", err)
	}
	st, err := stores.Get(storeID{set, bucket}, func() (*store, error) {
		client, err := clients.Get(set, func() (*client, error) { return newClient(set) })
		st := &store{client: client, bucket: bucket, endpoint: set.endpoint}
		st.Reads = s3compat.Reads{Get: st.get, Location: st.Location}
		return st, err
	})
	if err != nil {
		return nil, "", fmt.Errorf("s3: %w", err)
	}
	return st, key, nil
}

// parseDSN splits a DSN into bucket, key and client settings. Its errors
// never quote the DSN, which might hold a secret put there by mistake.
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
	case u.Scheme != "s3":
		return "", "", settings{}, fmt.Errorf("scheme must be s3, not %q", u.Scheme)
	case u.Opaque != "":
		return "", "", settings{}, errors.New("want s3://BUCKET/KEY")
	case u.User != nil:
		return "", "", settings{}, errors.New("credentials do not belong in the DSN; use the environment or a profile")
	case u.Fragment != "" || strings.HasSuffix(dsn, "#"):
		return "", "", settings{}, errors.New("unexpected '#'; write it %23 in a key")
	case u.Port() != "":
		return "", "", settings{}, errors.New("a bucket name has no port; use the endpoint parameter")
	case u.Host == "":
		return "", "", settings{}, errors.New("missing bucket")
	}
	key = strings.TrimPrefix(u.Path, "/")
	if key == "" {
		return "", "", settings{}, errors.New("missing key")
	}

	q, err := driver.ParseQuery(u.RawQuery, "region", "endpoint", "path_style", "profile")
	if err != nil {
		return "", "", settings{}, err
	}
	set = settings{region: q.Get("region"), profile: q.Get("profile")}
	if e := q.Get("endpoint"); e != "" {
		if set.endpoint, err = normalizeEndpoint(e); err != nil {
			return "", "", settings{}, err
		}
		set.pathStyle = true
	}
	if p := q.Get("path_style"); p != "" {
		if set.pathStyle, err = strconv.ParseBool(p); err != nil {
			return "", "", settings{}, fmt.Errorf("path_style must be true or false, not %q", p)
		}
	}
	return u.Host, key, set, nil
}

// normalizeEndpoint checks an endpoint URL and returns it in one spelling, so
// that equivalent spellings share a client.
func normalizeEndpoint(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("endpoint must be an http:// or https:// URL with a host")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("endpoint must not have user information, a query or a fragment")
	}
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// client is an S3 client and what it knows of its credentials.
type client struct {
	api *s3.Client
	// credentials is the client's own cache of the chain's answer, so
	// that asking it before a request asks nothing twice.
	credentials aws.CredentialsProvider
	// lastResort: the chain came down to the EC2 instance role, which
	// it asks when nothing else is configured. Its failure means that
	// no credentials were found.
	lastResort bool
	// tried names the sources the chain looked at before, in order.
	tried []string
}

func newClient(set settings) (*client, error) {
	opts := []func(*config.LoadOptions) error{
		// The SDK writes its warnings to stderr; they go to slog's
		// default logger at Debug level instead (see sdkLogger).
		config.WithLogger(sdkLogger{}),
		// The lock protocol retries transient errors itself, and a write
		// retried here could turn a success whose answer was lost into a
		// precondition failure. So the SDK never retries.
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
	}
	if set.region != "" {
		opts = append(opts, config.WithRegion(set.region))
	}
	if set.profile != "" {
		opts = append(opts, config.WithSharedConfigProfile(set.profile))
	}
	// Loading reads only the environment and files: nothing to cancel.
	cfg, err := config.LoadDefaultConfig(context.Background(), opts...)
	if err != nil {
		return nil, fmt.Errorf("loading AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	api := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if set.endpoint != "" {
			o.BaseEndpoint = aws.String(set.endpoint)
		}
		o.UsePathStyle = set.pathStyle
	})
	c := &client{api: api, credentials: api.Options().Credentials}
	if cache, ok := c.credentials.(*aws.CredentialsCache); ok && cache.IsCredentialsProvider(&ec2rolecreds.Provider{}) {
		c.lastResort = true
		c.tried = sourcesBeforeInstanceRole(set.profile)
	}
	return c, nil
}

// sourcesBeforeInstanceRole names, in the SDK's order, the sources of
// credentials that the chain found empty before it settled on the EC2
// instance role: a profile given in the DSN first, else the environment's.
func sourcesBeforeInstanceRole(dsnProfile string) []string {
	profile := s3compat.ProfileSource(dsnProfile)
	if dsnProfile != "" {
		return []string{profile, s3compat.EnvKeysSource, s3compat.WebIdentitySource, s3compat.ContainerSource}
	}
	return []string{s3compat.EnvKeysSource, s3compat.WebIdentitySource, profile, s3compat.ContainerSource}
}

// store is a bucket reached through a shared client.
type store struct {
	s3compat.Reads
	client   *client
	bucket   string
	endpoint string // empty for Amazon S3
}

// WriteInterval implements driver.WriteLimiter: a second on Cloudflare R2,
// none elsewhere.
func (s *store) WriteInterval() time.Duration {
	if u, err := url.Parse(s.endpoint); err == nil && s.endpoint != "" {
		return s3compat.WriteInterval(u.Host)
	}
	return 0
}

// Location implements driver.Store. It names the endpoint when there is
// one, so that the same bucket and key on two servers never read alike.
func (s *store) Location(key string) string {
	loc := "s3://" + s.bucket + "/" + key
	if s.endpoint != "" {
		loc += "?endpoint=" + s.endpoint
	}
	return loc
}

// get reads the object at key (s3compat.Reads makes Read, ReadAge and
// ReadDate of it).
func (s *store) get(ctx context.Context, key string) (s3compat.Object, error) {
	if err := s.checkCredentials(ctx, "read", key); err != nil {
		return s3compat.Object{}, err
	}
	out, err := s.client.api.GetObject(ctx, &s3.GetObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(key),
	})
	if err != nil {
		return s3compat.Object{}, s.readError(key, err)
	}
	defer out.Body.Close()
	data, err := io.ReadAll(out.Body)
	if err != nil {
		return s3compat.Object{}, s.readError(key, err)
	}
	etag := s3compat.Unquote(aws.ToString(out.ETag))
	if etag == "" {
		return s3compat.Object{}, fmt.Errorf("read %s: the store sent no ETag", s.Location(key))
	}
	a := s3compat.Object{Data: data, Version: driver.Version(etag), LastModified: aws.ToTime(out.LastModified)}
	if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
		a.Date = raw.Header.Get("Date")
	}
	return a, nil
}

// Delete implements driver.Deleter.
func (s *store) Delete(ctx context.Context, key string) error {
	if err := s.checkCredentials(ctx, "delete", key); err != nil {
		return err
	}
	_, err := s.client.api.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(s.bucket),
		Key:    aws.String(key),
	})
	// S3 answers success for an absent key; some compatible stores answer
	// 404, which readError knows to tell from a missing bucket.
	if err == nil || errors.Is(s.readError(key, err), driver.ErrNotExist) {
		return nil
	}
	return s.classify("delete", key, err)
}

// DeleteIf implements driver.ConditionalDeleter: a DELETE with If-Match,
// the ETag unquoted, as writes send it.
func (s *store) DeleteIf(ctx context.Context, key string, ifVersion driver.Version) error {
	if !s3compat.IsETag(ifVersion) {
		return fmt.Errorf("delete %s: version %q is not an ETag: %w", s.Location(key), ifVersion, driver.ErrPrecondition)
	}
	if err := s.checkCredentials(ctx, "delete", key); err != nil {
		return err
	}
	_, err := s.client.api.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket:  aws.String(s.bucket),
		Key:     aws.String(key),
		IfMatch: aws.String(string(ifVersion)),
	})
	if err != nil && statusCode(err) == http.StatusPreconditionFailed {
		return fmt.Errorf("delete %s: %w", s.Location(key), driver.ErrPrecondition)
	}
	if err != nil {
		return s.classify("delete", key, err)
	}
	return nil
}

// Write implements driver.Store.
func (s *store) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	in := &s3.PutObjectInput{
		Bucket:        aws.String(s.bucket),
		Key:           aws.String(key),
		ContentLength: aws.Int64(int64(len(data))),
	}
	if ifVersion == "" {
		in.IfNoneMatch = aws.String("*")
	} else {
		if !s3compat.IsETag(ifVersion) {
			return "", fmt.Errorf("write %s: version %q is not an ETag: %w", s.Location(key), ifVersion, driver.ErrPrecondition)
		}
		// Unquoted: Ceph RGW compares the header verbatim (Ceph bug 64439).
		in.IfMatch = aws.String(string(ifVersion))
	}
	if err := s.checkCredentials(ctx, "write", key); err != nil {
		return "", err
	}
	put := func(ctx context.Context) (driver.Version, error) {
		in.Body = bytes.NewReader(data)
		out, err := s.client.api.PutObject(ctx, in)
		if err != nil {
			return "", err
		}
		etag := s3compat.Unquote(aws.ToString(out.ETag))
		if etag == "" {
			return "", fmt.Errorf("the store sent no ETag")
		}
		return driver.Version(etag), nil
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
	switch {
	case errorCode(err) == "ConditionalRequestConflict":
		return s3compat.Conflict
	case statusCode(err) >= 500:
		return s3compat.ServerError
	}
	return s3compat.Other
}
