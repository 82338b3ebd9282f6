// Package azblob is the objsync driver for Azure Blob Storage, built on the
// Azure SDK for Go (sdk/storage/azblob). Importing it registers the driver
// under the name "azblob".
//
// # DSN
//
//	azblob://ACCOUNT/CONTAINER/KEY[?endpoint=URL]
//
// ACCOUNT is the storage account name (3 to 24 lower-case letters and
// digits), CONTAINER the container and KEY the blob name: everything after
// the container's slash, percent-decoded, so it may contain further slashes
// ("azblob://acct/c/locks/a" is blob "locks/a"). All three are required. A
// '?' or '#' in a key must be written %3F or %23. User information and ports
// are rejected: credentials never belong in the DSN.
//
// One parameter, optional; any other parameter is an error:
//
//   - endpoint: the blob service URL of the account, http or https, e.g.
//     "http://127.0.0.1:10000/devstoreaccount1" for Azurite. Default:
//     "https://ACCOUNT.blob.core.windows.net".
//
// Examples:
//
//	azblob://myaccount/locks/deploy
//	azblob://devstoreaccount1/locks/job-42?endpoint=http://127.0.0.1:10000/devstoreaccount1
//
// # Credentials
//
// In this order, read when the first DSN with an account and endpoint is
// opened:
//
//  1. AZURE_STORAGE_CONNECTION_STRING, if set: its AccountKey (a shared
//     key) or its SharedAccessSignature. Only its credentials are used: the
//     DSN says where the blobs are, and a connection string that names
//     another account or another blob endpoint than the DSN is refused
//     rather than followed.
//  2. AZURE_STORAGE_KEY, if set: the shared key of the DSN's account.
//  3. azidentity's DefaultAzureCredential (Microsoft Entra ID): the
//     environment (AZURE_CLIENT_ID, AZURE_TENANT_ID and a secret or
//     certificate), workload identity, the managed identity, then the Azure
//     CLI, the Azure Developer CLI and Azure PowerShell;
//     AZURE_TOKEN_CREDENTIALS narrows the chain ("dev", "prod" or one
//     credential's name). Tokens are asked for at the first request and
//     kept until five minutes before they expire. Azure refuses tokens on
//     plain http, so this source needs an https endpoint.
//
// When the chain finds no credentials either, requests fail before anything
// is sent to the store, with an error that wraps driver.ErrNoCredentials and
// names the location and the sources tried. Credentials that the store
// refuses (401, 403) read "access denied, check the credentials" and name
// the source they came from.
//
// # Behaviour
//
// Opening DSNs does no network I/O, and all DSNs with the same account and
// endpoint share their credentials (and so their tokens).
//
// Versions are the blobs' ETags, as Azure sends them. Azure gives every
// write a new ETag, even of the same bytes. Create-only writes send
// "If-None-Match: *", which Azure refuses with 409 BlobAlreadyExists (not
// 412) when the blob exists; replacing writes send "If-Match" with the ETag,
// refused with 412 ConditionNotMet. Both read as driver.ErrPrecondition. The
// SDK never retries a request: a write retried after a success whose answer
// was lost would be refused, a success reported as a failure. Transient
// errors (5xx, 429, timeouts, refused or reset connections) are marked
// driver.Retryable for the lock protocol to retry, and a 5xx answer to a
// write is settled by reading the blob back, as the s3 driver does.
//
// A read in a container that does not exist reports the blob as absent
// (Azure answers both with 404), with a message that names the container;
// the first write then fails with "container does not exist".
//
// # Blob leases
//
// The driver takes no leases. A lease would add nothing the conditional
// writes do not already give (one writer wins each version), and it would
// break the protocol's guarantees: while one client holds a blob's lease,
// every other client's write is refused, so a dead holder's lock could not
// be taken over until the lease ran out (15 to 60 s, or never for an
// infinite lease), and the server's lease timer would run beside the
// protocol's own TTL without agreeing with it. A write refused because
// someone else leased the blob (412 LeaseIdMissing) is therefore reported as
// such, not as a failed precondition.
//
// # Store clock
//
// The store does not implement driver.AgeReader. On Azure the Date header is
// stamped by the front end that answers and Last-Modified by the partition
// server that committed the write; Azure documents no bound on how far their
// clocks may differ, so their difference is no safe lower bound on a blob's
// age, and objsync refuses WithStoreClock (--store-clock) on this driver.
package azblob

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/runtime"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/streaming"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/s3compat"
)

func init() {
	driver.Register("azblob", azblobDriver{})
}

type azblobDriver struct{}

// settings is everything a DSN says about the client, and so the key under
// which clients are shared.
type settings struct {
	account string
	// endpoint is the blob service URL as the DSN gave it, normalized;
	// empty for Azure's default.
	endpoint string
}

// serviceURL is the blob service URL that requests go to.
func (set settings) serviceURL() string {
	if set.endpoint != "" {
		return set.endpoint
	}
	return "https://" + set.account + ".blob.core.windows.net"
}

// clients holds one client per distinct settings, and stores one store per
// container and settings, so that Mutexes on one lock share (see
// driver.Driver).
var (
	clients driver.Shared[settings, *client]
	stores  driver.Shared[storeID, *store]
)

type storeID struct {
	settings
	container string
}

// Open implements driver.Driver.
func (azblobDriver) Open(dsn string) (driver.Store, string, error) {
	set, containerName, key, err := parseDSN(dsn)
	if err != nil {
		return nil, "", fmt.Errorf("azblob: invalid DSN: %w", err)
	}
	st, err := stores.Get(storeID{set, containerName}, func() (*store, error) {
		c, err := clients.Get(set, func() (*client, error) { return newClient(set) })
		if err != nil {
			return nil, err
		}
		return &store{client: c, settings: set, container: containerName,
			containerURL: runtime.JoinPaths(c.base, containerName)}, nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("azblob: %w", err)
	}
	return st, key, nil
}

// parseDSN splits a DSN into client settings, container and key. Its errors
// never quote the DSN, which might hold a secret put there by mistake.
func parseDSN(dsn string) (set settings, containerName, key string, err error) {
	u, err := url.Parse(dsn)
	if err != nil {
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return settings{}, "", "", err
	}
	switch {
	case u.Scheme != "azblob":
		return settings{}, "", "", fmt.Errorf("scheme must be azblob, not %q", u.Scheme)
	case u.Opaque != "":
		return settings{}, "", "", errors.New("want azblob://ACCOUNT/CONTAINER/KEY")
	case u.User != nil:
		return settings{}, "", "", errors.New("credentials do not belong in the DSN; use the environment")
	case u.Fragment != "" || strings.HasSuffix(dsn, "#"):
		return settings{}, "", "", errors.New("unexpected '#'; write it %23 in a key")
	case u.Port() != "":
		return settings{}, "", "", errors.New("an account name has no port; use the endpoint parameter")
	case u.Host == "":
		return settings{}, "", "", errors.New("missing account")
	case !validAccount(u.Host):
		return settings{}, "", "", errors.New("an account name is 3 to 24 lower-case letters and digits")
	}
	containerName, key, _ = strings.Cut(strings.TrimPrefix(u.Path, "/"), "/")
	switch {
	case containerName == "":
		return settings{}, "", "", errors.New("missing container")
	case key == "":
		return settings{}, "", "", errors.New("missing key")
	}
	q, err := driver.ParseQuery(u.RawQuery, "endpoint")
	if err != nil {
		return settings{}, "", "", err
	}
	set = settings{account: u.Host}
	if e := q.Get("endpoint"); e != "" {
		if set.endpoint, err = normalizeEndpoint(e); err != nil {
			return settings{}, "", "", err
		}
	}
	return set, containerName, key, nil
}

// validAccount reports whether name is an Azure storage account name, and
// so can stand in the default endpoint's host name.
func validAccount(name string) bool {
	return len(name) >= 3 && len(name) <= 24 &&
		strings.Trim(name, "abcdefghijklmnopqrstuvwxyz0123456789") == ""
}

// normalizeEndpoint checks a blob service URL and returns it in one
// spelling, so that equivalent spellings share a client. Its path is kept:
// emulators put the account there.
func normalizeEndpoint(raw string) (string, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", errors.New("endpoint must be an http:// or https:// URL with a host")
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return "", errors.New("endpoint must not have user information, a query or a fragment")
	}
	u.Scheme = strings.ToLower(u.Scheme)
	u.Host = strings.ToLower(u.Host)
	u.Path = strings.TrimSuffix(u.Path, "/")
	u.RawPath = ""
	return u.String(), nil
}

// store is a container reached through a shared client.
type store struct {
	settings
	client    *client
	container string
	// containerURL is the container's URL, joined as the SDK's
	// service.Client.NewContainerClient did (with the query of a shared
	// access signature at its end).
	containerURL string
}

// blob returns a client of the blob at key. The SDK's service and container
// clients, which would share one pipeline, pull in Apache Arrow (9 MB of
// the objsync command), so each request builds a blob client of its own:
// about 9 µs and 9 KB (BenchmarkBlobClient), where a request takes
// milliseconds.
func (s *store) blob(key string) (*blockblob.Client, error) {
	// Escaped as container.Client.NewBlobClient does, and joined in a call
	// of its own: JoinPaths cleans the path it joins, which would resolve
	// a key ".." against the container's name.
	return s.client.blob(runtime.JoinPaths(s.containerURL, url.PathEscape(key)))
}

// WriteInterval implements driver.WriteLimiter: Azure documents no limit
// on the writes to one blob below its account-wide limits.
func (s *store) WriteInterval() time.Duration { return 0 }

// Location implements driver.Store. It names the endpoint when it is not
// Azure's default, so that the same blob on two servers never reads alike.
func (s *store) Location(key string) string {
	loc := "azblob://" + s.account + "/" + s.container + "/" + key
	if s.endpoint != "" {
		loc += "?endpoint=" + s.endpoint
	}
	return loc
}

// Read implements driver.Store.
func (s *store) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	data, v, _, err := s.read(ctx, key)
	return data, v, err
}

// ReadDate implements driver.DateReader.
func (s *store) ReadDate(ctx context.Context, key string) (time.Time, error) {
	_, _, date, err := s.read(ctx, key)
	if err != nil {
		return time.Time{}, err
	}
	return s3compat.UsableDate(s.Location(key), date)
}

// read returns the object at key, its version, and the Date of the answer
// (zero if it had none).
func (s *store) read(ctx context.Context, key string) ([]byte, driver.Version, time.Time, error) {
	if err := s.checkCredentials(ctx, "read", key); err != nil {
		return nil, "", time.Time{}, err
	}
	bb, err := s.blob(key)
	if err != nil {
		return nil, "", time.Time{}, s.readError(key, err)
	}
	resp, err := bb.BlobClient().DownloadStream(ctx, nil)
	if err != nil {
		return nil, "", time.Time{}, s.readError(key, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", time.Time{}, s.readError(key, err)
	}
	if resp.ETag == nil || *resp.ETag == "" {
		return nil, "", time.Time{}, fmt.Errorf("read %s: the store sent no ETag", s.Location(key))
	}
	var date time.Time
	if resp.Date != nil {
		date = *resp.Date
	}
	return data, driver.Version(*resp.ETag), date, nil
}

// Write implements driver.Store.
func (s *store) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	cond := &blob.ModifiedAccessConditions{}
	if ifVersion == "" {
		cond.IfNoneMatch = new(azcore.ETagAny)
	} else {
		// "*" or a list would match other states than the one read.
		if ifVersion == driver.Version(azcore.ETagAny) || strings.Contains(string(ifVersion), ",") {
			return "", fmt.Errorf("write %s: version %q is not an ETag: %w", s.Location(key), ifVersion, driver.ErrPrecondition)
		}
		cond.IfMatch = new(azcore.ETag(ifVersion))
	}
	if err := s.checkCredentials(ctx, "write", key); err != nil {
		return "", err
	}
	bb, err := s.blob(key)
	if err != nil {
		return "", s.writeError(key, ifVersion, err)
	}
	put := func(ctx context.Context) (driver.Version, error) {
		resp, err := bb.Upload(ctx, streaming.NopCloser(bytes.NewReader(data)),
			&blockblob.UploadOptions{AccessConditions: &blob.AccessConditions{ModifiedAccessConditions: cond}})
		if err != nil {
			return "", err
		}
		if resp.ETag == nil || *resp.ETag == "" {
			return "", errors.New("the store sent no ETag")
		}
		return driver.Version(*resp.ETag), nil
	}
	read := func(ctx context.Context) ([]byte, driver.Version, error) { return s.Read(ctx, key) }
	v, err := s3compat.Write(ctx, data, ifVersion, put, answerOf, read)
	if err != nil {
		return "", s.writeError(key, ifVersion, err)
	}
	return v, nil
}

// answerOf sorts a failed Put Blob's answer for s3compat.Write: a 5xx
// answer leaves the outcome unknown, and is settled by reading back.
func answerOf(err error) s3compat.Answer {
	if statusCode(err) >= 500 {
		return s3compat.ServerError
	}
	return s3compat.Other
}

// Delete implements driver.Deleter.
func (s *store) Delete(ctx context.Context, key string) error {
	if err := s.checkCredentials(ctx, "delete", key); err != nil {
		return err
	}
	bb, err := s.blob(key)
	if err != nil {
		return s.classify("delete", key, err)
	}
	_, err = bb.BlobClient().Delete(ctx, nil)
	if err == nil || errorCode(err) == codeBlobNotFound {
		return nil
	}
	return s.classify("delete", key, err)
}
