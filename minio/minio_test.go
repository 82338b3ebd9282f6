package minio

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objsync/objsync/driver"
)

const (
	accessKey = "AKIDTEST"
	secretKey = "s3cr3t-never-shown"
	envSecret = "env-s3cr3t"
)

// TestMain makes the credential chain stop at the environment, so that no
// test reads the user's files or asks an instance metadata service.
func TestMain(m *testing.M) {
	os.Setenv("MINIO_ROOT_USER", "ENVUSER")
	os.Setenv("MINIO_ROOT_PASSWORD", envSecret)
	os.Exit(m.Run())
}

func TestRegistered(t *testing.T) {
	if _, ok := driver.Lookup("minio"); !ok {
		t.Fatal(`driver "minio" is not registered`)
	}
}

func TestParseDSN(t *testing.T) {
	tests := []struct {
		dsn         string
		bucket, key string
		want        settings
	}{
		{"minio://h:9000/bkt/k", "bkt", "k", settings{host: "h:9000", secure: true}},
		{"minio://MinIO.Local/bucket/locks/a", "bucket", "locks/a", settings{host: "minio.local", secure: true}},
		{"minio://h:9000/bkt/a%3Fb%23c%2Fd", "bkt", "a?b#c/d", settings{host: "h:9000", secure: true}},
		{"minio://h:9000/bkt/k?secure=false&region=eu-west-1", "bkt", "k", settings{host: "h:9000", region: "eu-west-1"}},
		{"minio://AK:S%2Fx%40y@h:9000/bkt/k", "bkt", "k", settings{host: "h:9000", secure: true, accessKey: "AK", secretKey: "S/x@y"}},
		{"minio://[::1]:9000/bkt/k?secure=0", "bkt", "k", settings{host: "[::1]:9000"}},
	}
	for _, tt := range tests {
		bucket, key, set, err := parseDSN(tt.dsn)
		if err != nil {
			t.Errorf("parseDSN(%q): %v", tt.dsn, err)
			continue
		}
		if bucket != tt.bucket || key != tt.key || set != tt.want {
			t.Errorf("parseDSN(%q) = %q, %q, %+v; want %q, %q, %+v", tt.dsn, bucket, key, set, tt.bucket, tt.key, tt.want)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	const secret = "s3cr3t"
	tests := []struct{ dsn, wantErr string }{
		{"minio://h:9000/bkt", "missing key"},
		{"minio://h:9000/bkt/", "missing key"},
		{"minio://h:9000/", "missing bucket"},
		{"minio:///bkt/k", "missing host"},
		{"minio:h/bkt/k", "want minio://HOST[:PORT]/BUCKET/KEY"},
		{"s3://h/bkt/k", "scheme must be minio"},
		{"minio://h:9000/bkt/k?secure=maybe", "secure must be true or false"},
		{"minio://h:9000/bkt/k?sekure=false", `unknown DSN parameter "sekure"`},
		{"minio://h:9000/bkt/k#x", "unexpected '#'"},
		{"minio://h:9000/a..b/k", `bucket "a..b"`},
		{"minio://AK@h:9000/bkt/k", "both non-empty"},
		{"minio://:" + secret + "@h:9000/bkt/k", "both non-empty"},
		{"minio://AK:" + secret + "@h:bad/bkt/k", "invalid port"},
		{"minio://AK:" + secret + "@h:9000/bkt", "missing key"},
		{"minio://AK:" + secret + "@h:9000/bkt/k?x=1", `unknown DSN parameter "x"`},
		{"minio://AK:" + secret + "@h%zz/bkt/k", "invalid URL escape"},
	}
	for _, tt := range tests {
		_, _, err := minioDriver{}.Open(tt.dsn)
		if err == nil {
			t.Errorf("Open(%q) succeeded", tt.dsn)
			continue
		}
		if !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("Open(%q) = %v; want an error containing %q", tt.dsn, err, tt.wantErr)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open(%q) error reveals the secret: %v", tt.dsn, err)
		}
	}
}

func TestSecretNeverShown(t *testing.T) {
	st, key, err := minioDriver{}.Open("minio://" + accessKey + ":" + secretKey + "@127.0.0.1:1/bkt/locks/a?secure=false&region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Location(key); got != "minio://127.0.0.1:1/bkt/locks/a" {
		t.Errorf("Location = %q", got)
	}
	_, _, readErr := st.Read(context.Background(), key)
	_, writeErr := st.Write(context.Background(), key, []byte("x"), "e1")
	for _, s := range []string{
		st.Location(key), fmt.Sprint(st), fmt.Sprintf("%+v", st), fmt.Sprintf("%#v", st),
		readErr.Error(), writeErr.Error(),
	} {
		if strings.Contains(s, secretKey) {
			t.Errorf("%q reveals the secret", s)
		}
	}
}

func TestOpenSharesOneClientPerSettings(t *testing.T) {
	before := clients.Len()
	var first *store
	for i := range 1000 {
		dsn := fmt.Sprintf("minio://127.0.0.1:1/bucket-%d/locks/%d?secure=false&region=test-sharing", i%7, i)
		st, key, err := minioDriver{}.Open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("locks/%d", i); key != want {
			t.Fatalf("key = %q, want %q", key, want)
		}
		if first == nil {
			first = st.(*store)
		} else if st.(*store).client != first.client {
			t.Fatalf("DSN %d got its own client", i)
		}
	}
	if built := clients.Len() - before; built != 1 {
		t.Fatalf("opening 1000 DSNs built %d clients, want 1", built)
	}
	for _, dsn := range []string{
		"minio://127.0.0.1:1/bkt/k?secure=true&region=test-sharing",
		"minio://AK:other@127.0.0.1:1/bkt/k?secure=false&region=test-sharing",
	} {
		other, _, err := minioDriver{}.Open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if other.(*store).client == first.client {
			t.Errorf("%s shares a client with different settings", dsn)
		}
	}
}

// reply is one scripted answer of the fake server.
type reply struct {
	status int
	code   string // S3 error code, for error answers
	etag   string // sent as is, so quoted like S3 does
	body   string
}

// request is what the fake server saw.
type request struct {
	method string
	path   string
	header http.Header
	body   string
}

// fakeS3 answers like an S3 server, from a script: each request takes the
// next reply, and the last reply repeats. Like a real server it checks the
// Signature Version 4 of every request against secret, and answers
// SignatureDoesNotMatch when it is wrong.
type fakeS3 struct {
	secret   string
	mu       sync.Mutex
	replies  []reply
	requests []request
}

func (f *fakeS3) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, request{r.Method, r.URL.Path, r.Header.Clone(), string(body)})
	rep := f.replies[0]
	if len(f.replies) > 1 {
		f.replies = f.replies[1:]
	}
	f.mu.Unlock()

	if !validSignature(r, body, f.secret) {
		rep = reply{status: http.StatusForbidden, code: "SignatureDoesNotMatch"}
	}
	if rep.etag != "" {
		w.Header().Set("ETag", rep.etag)
	}
	if rep.code != "" {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(rep.status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>scripted %s</Message><RequestId>req-1</RequestId></Error>`, rep.code, rep.code)
		return
	}
	w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

func (f *fakeS3) seen() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

// validSignature checks an AWS Signature Version 4 Authorization header the
// way a server does, independently of minio-go's signer.
func validSignature(r *http.Request, body []byte, secret string) bool {
	fields := map[string]string{}
	rest, ok := strings.CutPrefix(r.Header.Get("Authorization"), "AWS4-HMAC-SHA256 ")
	if !ok {
		return false
	}
	for f := range strings.SplitSeq(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(f), "=")
		fields[k] = v
	}
	cred := strings.Split(fields["Credential"], "/")
	if len(cred) < 5 {
		return false
	}
	scope := cred[len(cred)-4:] // date, region, service, aws4_request
	payloadHash := r.Header.Get("X-Amz-Content-Sha256")
	if sum := sha256.Sum256(body); payloadHash != hex.EncodeToString(sum[:]) {
		return false
	}
	var canonical strings.Builder
	fmt.Fprintf(&canonical, "%s\n%s\n%s\n", r.Method, r.URL.EscapedPath(), r.URL.RawQuery)
	for h := range strings.SplitSeq(fields["SignedHeaders"], ";") {
		v := strings.Join(r.Header.Values(h), ",")
		if h == "host" {
			v = r.Host
		}
		fmt.Fprintf(&canonical, "%s:%s\n", h, strings.TrimSpace(v))
	}
	fmt.Fprintf(&canonical, "\n%s\n%s", fields["SignedHeaders"], payloadHash)
	canonicalSum := sha256.Sum256([]byte(canonical.String()))
	stringToSign := "AWS4-HMAC-SHA256\n" + r.Header.Get("X-Amz-Date") + "\n" +
		strings.Join(scope, "/") + "\n" + hex.EncodeToString(canonicalSum[:])

	key := []byte("AWS4" + secret)
	for _, s := range scope {
		key = hmacSHA256(key, s)
	}
	return hmac.Equal([]byte(fields["Signature"]), []byte(hex.EncodeToString(hmacSHA256(key, stringToSign))))
}

func hmacSHA256(key []byte, data string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(data))
	return h.Sum(nil)
}

// newFake starts a fake server answering with replies and opens the key "k"
// in bucket "bkt" on it, with the credentials in the DSN.
func newFake(t *testing.T, replies ...reply) (*fakeS3, driver.Store) {
	t.Helper()
	fake := &fakeS3{secret: secretKey, replies: replies}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	host := strings.TrimPrefix(srv.URL, "http://")
	st, _, err := minioDriver{}.Open("minio://" + accessKey + ":" + secretKey + "@" + host + "/bkt/k?secure=false&region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	return fake, st
}

func TestCreateOnlyWrite(t *testing.T) {
	fake, st := newFake(t, reply{status: 200, etag: `"e1"`})
	v, err := st.Write(context.Background(), "k", []byte("hello"), "")
	if err != nil {
		t.Fatal(err)
	}
	if v != "e1" {
		t.Errorf("version = %q, want the unquoted ETag e1", v)
	}
	reqs := fake.seen()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.method != http.MethodPut || r.path != "/bkt/k" || r.body != "hello" {
		t.Errorf("request = %s %s %q, want PUT /bkt/k \"hello\"", r.method, r.path, r.body)
	}
	if got := r.header.Values("If-None-Match"); len(got) != 1 || got[0] != "*" {
		t.Errorf("If-None-Match = %q, want [*]", got)
	}
	if got := r.header.Get("If-Match"); got != "" {
		t.Errorf("If-Match = %q on a create-only write", got)
	}
	assertNoChecksums(t, r.header)
}

// assertNoChecksums checks that the request carries no checksum that
// S3-compatible stores may reject, and is not a streaming upload.
func assertNoChecksums(t *testing.T, h http.Header) {
	t.Helper()
	for name := range h {
		if l := strings.ToLower(name); strings.HasPrefix(l, "x-amz-checksum-") ||
			l == "x-amz-sdk-checksum-algorithm" || l == "x-amz-trailer" || l == "x-amz-decoded-content-length" {
			t.Errorf("request carries header %s", name)
		}
	}
	if strings.HasPrefix(h.Get("X-Amz-Content-Sha256"), "STREAMING-") {
		t.Errorf("request is a streaming upload: %s", h.Get("X-Amz-Content-Sha256"))
	}
}

func TestReplaceSendsUnquotedETagSigned(t *testing.T) {
	fake, st := newFake(t, reply{status: 200, etag: `"e2"`})
	v, err := st.Write(context.Background(), "k", []byte("v2"), "e1")
	if err != nil {
		t.Fatal(err) // SignatureDoesNotMatch if the re-signing is wrong
	}
	if v != "e2" {
		t.Errorf("version = %q, want e2", v)
	}
	r := fake.seen()[0]
	if got := r.header.Values("If-Match"); len(got) != 1 || got[0] != "e1" {
		t.Errorf("If-Match = %q, want [e1] (unquoted)", got)
	}
	if !strings.Contains(r.header.Get("Authorization"), "if-match") {
		t.Errorf("If-Match is not among the signed headers: %s", r.header.Get("Authorization"))
	}
	if got := r.header.Get("If-None-Match"); got != "" {
		t.Errorf("If-None-Match = %q on a replacing write", got)
	}
	assertNoChecksums(t, r.header)
}

func TestCredentialsFromEnvironment(t *testing.T) {
	fake := &fakeS3{secret: envSecret, replies: []reply{{status: 200, etag: `"e2"`}}}
	srv := httptest.NewServer(fake)
	defer srv.Close()
	st, _, err := minioDriver{}.Open("minio://" + strings.TrimPrefix(srv.URL, "http://") + "/bkt/k?secure=false&region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(context.Background(), "k", []byte("v"), "e1"); err != nil {
		t.Fatal(err)
	}
	if auth := fake.seen()[0].header.Get("Authorization"); !strings.Contains(auth, "Credential=ENVUSER/") {
		t.Errorf("request not signed with the environment's key: %s", auth)
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name         string
		ifVersion    driver.Version
		replies      []reply
		precondition bool
		retryable    bool
		requests     int
		msg          string
	}{
		{"create-only on a present key", "", []reply{{status: 412, code: "PreconditionFailed"}}, true, false, 1, "write minio://127.0.0.1"},
		{"stale ETag", "e1", []reply{{status: 412, code: "PreconditionFailed"}}, true, false, 1, "precondition failed"},
		{"If-Match on a missing key", "e1", []reply{{status: 404, code: "NoSuchKey"}}, true, false, 1, "object does not exist"},
		{"missing bucket, create-only", "", []reply{{status: 404, code: "NoSuchBucket"}}, false, false, 1, `bucket "bkt" does not exist`},
		{"missing bucket, If-Match", "e1", []reply{{status: 404, code: "NoSuchBucket"}}, false, false, 1, `bucket "bkt" does not exist`},
		{"conflict, then precondition", "e1", []reply{{status: 409, code: "ConditionalRequestConflict"}, {status: 412, code: "PreconditionFailed"}}, true, false, 2, "precondition failed"},
		{"conflict that persists", "", []reply{{status: 409, code: "ConditionalRequestConflict"}}, false, true, 4, "conflicting concurrent writes"},
		{"slow down, read back fails too", "", []reply{{status: 503, code: "SlowDown"}}, false, true, 2, "SlowDown"},
		{"internal error, read back fails too", "e1", []reply{{status: 500, code: "InternalError"}}, false, true, 2, "InternalError"},
		{"too many requests", "e1", []reply{{status: 429, code: "TooManyRequests"}}, false, true, 1, "TooManyRequests"},
		{"bad access key", "", []reply{{status: 403, code: "InvalidAccessKeyId"}}, false, false, 1, "access denied, check the credentials: InvalidAccessKeyId"},
		{"bad secret", "", []reply{{status: 403, code: "SignatureDoesNotMatch"}}, false, false, 1, "access denied, check the credentials: SignatureDoesNotMatch"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, st := newFake(t, tt.replies...)
			_, err := st.Write(context.Background(), "k", []byte("data"), tt.ifVersion)
			if err == nil {
				t.Fatal("Write succeeded")
			}
			if got := errors.Is(err, driver.ErrPrecondition); got != tt.precondition {
				t.Errorf("errors.Is(ErrPrecondition) = %v, want %v: %v", got, tt.precondition, err)
			}
			if got := driver.IsRetryable(err); got != tt.retryable {
				t.Errorf("IsRetryable = %v, want %v: %v", got, tt.retryable, err)
			}
			if n := len(fake.seen()); n != tt.requests {
				t.Errorf("%d requests, want %d", n, tt.requests)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), "/bkt/k") {
				t.Errorf("error %q does not contain %q and the location", err, tt.msg)
			}
			if strings.Contains(err.Error(), secretKey) {
				t.Errorf("error reveals the secret: %v", err)
			}
		})
	}
}

func TestWriteRetriesConflicts(t *testing.T) {
	fake, st := newFake(t,
		reply{status: 409, code: "ConditionalRequestConflict"},
		reply{status: 409, code: "ConditionalRequestConflict"},
		reply{status: 200, etag: `"e3"`})
	v, err := st.Write(context.Background(), "k", []byte("payload"), "e2")
	if err != nil {
		t.Fatal(err)
	}
	if v != "e3" {
		t.Errorf("version = %q, want e3", v)
	}
	reqs := fake.seen()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3", len(reqs))
	}
	for i, r := range reqs {
		if r.body != "payload" || r.header.Get("If-Match") != "e2" {
			t.Errorf("attempt %d sent body %q, If-Match %q", i, r.body, r.header.Get("If-Match"))
		}
	}
}

func TestWriteRejectsVersionsThatAreNotETags(t *testing.T) {
	for _, v := range []driver.Version{"*", `"e1"`, "e1, e2", "e 1"} {
		fake, st := newFake(t, reply{status: 200, etag: `"x"`})
		_, err := st.Write(context.Background(), "k", []byte("data"), v)
		if !errors.Is(err, driver.ErrPrecondition) {
			t.Errorf("Write with version %q: %v, want ErrPrecondition", v, err)
		}
		if n := len(fake.seen()); n != 0 {
			t.Errorf("Write with version %q sent %d requests", v, n)
		}
	}
}

func TestRead(t *testing.T) {
	fake, st := newFake(t, reply{status: 200, etag: `"e1"`, body: "content"})
	data, v, err := st.Read(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "content" || v != "e1" {
		t.Errorf("Read = %q, %q; want content, e1", data, v)
	}
	if r := fake.seen()[0]; r.method != http.MethodGet || r.path != "/bkt/k" {
		t.Errorf("request = %s %s", r.method, r.path)
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name      string
		reply     reply
		notExist  bool
		retryable bool
		msg       string
	}{
		{"missing key", reply{status: 404, code: "NoSuchKey"}, true, false, "/bkt/k: object does not exist"},
		{"missing bucket", reply{status: 404, code: "NoSuchBucket"}, false, false, `bucket "bkt" does not exist`},
		{"access denied", reply{status: 403, code: "AccessDenied"}, false, false, "access denied"},
		{"slow down", reply{status: 503, code: "SlowDown"}, false, true, "SlowDown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, st := newFake(t, tt.reply)
			_, _, err := st.Read(context.Background(), "k")
			if got := errors.Is(err, driver.ErrNotExist); got != tt.notExist {
				t.Errorf("errors.Is(ErrNotExist) = %v, want %v: %v", got, tt.notExist, err)
			}
			if got := driver.IsRetryable(err); got != tt.retryable {
				t.Errorf("IsRetryable = %v, want %v: %v", got, tt.retryable, err)
			}
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("error %v does not contain %q", err, tt.msg)
			}
			if n := len(fake.seen()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
}

func TestUnreachableEndpoint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	st, _, err := minioDriver{}.Open("minio://" + addr + "/bkt/k?secure=false&region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Write(context.Background(), "k", []byte("data"), "")
	if err == nil || !strings.Contains(err.Error(), "endpoint unreachable") || !driver.IsRetryable(err) {
		t.Fatalf("Write = %v; want a retryable 'endpoint unreachable' error", err)
	}
	if errors.Is(err, driver.ErrPrecondition) {
		t.Fatal("unreachable endpoint reported as a precondition failure")
	}
}

func TestConnectionResetIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		conn.(*net.TCPConn).SetLinger(0) // close with RST
		conn.Close()
	}))
	defer srv.Close()
	st, _, err := minioDriver{}.Open("minio://" + strings.TrimPrefix(srv.URL, "http://") + "/bkt/k?secure=false&region=us-east-1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(context.Background(), "k", []byte("data"), "e1"); !driver.IsRetryable(err) || errors.Is(err, driver.ErrPrecondition) {
		t.Errorf("Write = %v; want a retryable error", err)
	}
	if _, _, err := st.Read(context.Background(), "k"); !driver.IsRetryable(err) || errors.Is(err, driver.ErrNotExist) {
		t.Errorf("Read = %v; want a retryable error", err)
	}
}

func TestCanceledContext(t *testing.T) {
	fake, st := newFake(t, reply{status: 200, etag: `"e1"`})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := st.Write(ctx, "k", []byte("data"), ""); !errors.Is(err, context.Canceled) || driver.IsRetryable(err) {
		t.Errorf("Write = %v; want context.Canceled, not retryable", err)
	}
	if _, _, err := st.Read(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Read = %v; want context.Canceled", err)
	}
	if n := len(fake.seen()); n != 0 {
		t.Errorf("%d requests sent with a canceled context", n)
	}
}

func TestSigningRegion(t *testing.T) {
	tests := []struct {
		auth   string
		region string
		ok     bool
	}{
		{"AWS4-HMAC-SHA256 Credential=AK/20250101/eu-west-1/s3/aws4_request, SignedHeaders=host, Signature=ab", "eu-west-1", true},
		{"AWS4-HMAC-SHA256 Credential=A/K/20250101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=ab", "us-east-1", true},
		{"AWS AK:signature", "", false},
		{"", "", false},
	}
	for _, tt := range tests {
		region, ok := signingRegion(tt.auth)
		if region != tt.region || ok != tt.ok {
			t.Errorf("signingRegion(%q) = %q, %v; want %q, %v", tt.auth, region, ok, tt.region, tt.ok)
		}
	}
}

func TestDelete(t *testing.T) {
	tests := []struct {
		name    string
		reply   reply
		wantErr string // "" for success
	}{
		{"deleted", reply{status: 204}, ""},
		{"absent, answered 404", reply{status: 404, code: "NoSuchKey"}, ""},
		{"missing bucket", reply{status: 404, code: "NoSuchBucket"}, `bucket "bkt" does not exist`},
		{"access denied", reply{status: 403, code: "AccessDenied"}, "access denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, st := newFake(t, tt.reply)
			err := st.(driver.Deleter).Delete(context.Background(), "k")
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr) || !strings.Contains(err.Error(), "delete minio://")) {
				t.Fatalf("Delete = %v; want an error containing %q", err, tt.wantErr)
			}
			if err != nil && strings.Contains(err.Error(), secretKey) {
				t.Fatalf("error reveals the secret: %v", err)
			}
			reqs := fake.seen()
			if len(reqs) != 1 || reqs[0].method != http.MethodDelete || reqs[0].path != "/bkt/k" {
				t.Fatalf("requests = %+v; want one DELETE /bkt/k", reqs)
			}
		})
	}
}

// TestWriteSettlesServerErrors: a 5xx answer to a conditional PUT is
// settled by reading the object back (Ceph RGW answers 500 to some writes
// that lose a race).
func TestWriteSettlesServerErrors(t *testing.T) {
	fake, st := newFake(t, reply{status: 500, code: "InternalError"}, reply{status: 200, etag: `"e2"`, body: "data"})
	v, err := st.Write(context.Background(), "k", []byte("data"), "e1")
	if err != nil || v != "e2" {
		t.Fatalf("Write = %q, %v; want the version read back", v, err)
	}
	if reqs := fake.seen(); len(reqs) != 2 || reqs[1].method != http.MethodGet {
		t.Fatalf("requests %+v, want PUT then GET", reqs)
	}
}
