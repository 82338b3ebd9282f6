package s3

import (
	"context"
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

	"github.com/objsync/objsync/driver"
)

// TestMain isolates the tests from the machine's AWS configuration, so that
// credentials come from the environment and nothing asks an instance
// metadata service.
func TestMain(m *testing.M) {
	for _, name := range []string{"AWS_PROFILE", "AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3", "AWS_SESSION_TOKEN"} {
		os.Unsetenv(name)
	}
	os.Setenv("AWS_ACCESS_KEY_ID", "AKIDTEST")
	os.Setenv("AWS_SECRET_ACCESS_KEY", "s3cr3t-never-shown")
	os.Setenv("AWS_CONFIG_FILE", os.DevNull)
	os.Setenv("AWS_SHARED_CREDENTIALS_FILE", os.DevNull)
	os.Setenv("AWS_EC2_METADATA_DISABLED", "true")
	os.Exit(m.Run())
}

func TestRegistered(t *testing.T) {
	if _, ok := driver.Lookup("s3"); !ok {
		t.Fatal(`driver "s3" is not registered`)
	}
}

func TestParseDSN(t *testing.T) {
	tests := []struct {
		dsn         string
		bucket, key string
		want        settings
	}{
		{"s3://b/k", "b", "k", settings{}},
		{"s3://my-bucket/locks/deploy", "my-bucket", "locks/deploy", settings{}},
		{"s3://b/a%3Fb%23c", "b", "a?b#c", settings{}},
		{"s3://b/k?region=eu-west-1&profile=ops", "b", "k", settings{region: "eu-west-1", profile: "ops"}},
		{"s3://b/k?endpoint=http://127.0.0.1:9000", "b", "k", settings{endpoint: "http://127.0.0.1:9000", pathStyle: true}},
		{"s3://b/k?endpoint=HTTP://MinIO.local:9000/", "b", "k", settings{endpoint: "http://minio.local:9000", pathStyle: true}},
		{"s3://b/k?endpoint=https://acct.r2.example&path_style=false&region=auto", "b", "k",
			settings{endpoint: "https://acct.r2.example", region: "auto"}},
		{"s3://b/k?path_style=true", "b", "k", settings{pathStyle: true}},
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
		{"s3://b", "missing key"},
		{"s3://b/", "missing key"},
		{"s3:///k", "missing bucket"},
		{"s3:b/k", "want s3://BUCKET/KEY"},
		{"gs://b/k", "scheme must be s3"},
		{"s3://b/k?regoin=eu-west-1", `unknown DSN parameter "regoin"`},
		{"s3://b/k?path_style=maybe", "path_style must be true or false"},
		{"s3://b/k?endpoint=127.0.0.1:9000", "endpoint must be an http:// or https:// URL"},
		{"s3://b/k?endpoint=ftp://host", "endpoint must be an http:// or https:// URL"},
		{"s3://b/k#frag", "unexpected '#'"},
		{"s3://b:9000/k", "a bucket name has no port"},
		{"s3://AKID:" + secret + "@b/k", "credentials do not belong in the DSN"},
		{"s3://AKID:" + secret + "@b:bad/k", "invalid port"},
		{"s3://b/k?endpoint=http://AKID:" + secret + "@host", "must not have user information"},
		{"s3://b/k?profile=no-such-profile", "loading AWS configuration"},
	}
	d := s3Driver{}
	for _, tt := range tests {
		_, _, err := d.Open(tt.dsn)
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

func TestOpenSharesOneClientPerSettings(t *testing.T) {
	before := clients.Len()
	var first *store
	for i := range 1000 {
		dsn := fmt.Sprintf("s3://bucket-%d/locks/%d?endpoint=http://127.0.0.1:1&region=test-sharing", i%7, i)
		st, key, err := s3Driver{}.Open(dsn)
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
	other, _, err := s3Driver{}.Open("s3://bucket-0/k?endpoint=http://127.0.0.1:1&region=test-sharing&path_style=false")
	if err != nil {
		t.Fatal(err)
	}
	if other.(*store).client == first.client {
		t.Fatal("different settings share a client")
	}
}

func TestLocation(t *testing.T) {
	st, key, err := s3Driver{}.Open("s3://b/locks/a?endpoint=http://127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Location(key); got != "s3://b/locks/a" {
		t.Fatalf("Location = %q", got)
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

// fakeS3 answers like S3 would, from a script: each request takes the next
// reply, and the last reply repeats.
type fakeS3 struct {
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

	if rep.etag != "" {
		w.Header().Set("ETag", rep.etag)
	}
	if rep.code != "" {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(rep.status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>scripted %s</Message><RequestId>req-1</RequestId></Error>`, rep.code, rep.code)
		return
	}
	w.WriteHeader(rep.status)
	io.WriteString(w, rep.body)
}

func (f *fakeS3) seen() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

// newFake starts a fake server answering with replies and opens the key "k"
// in bucket "b" on it.
func newFake(t *testing.T, replies ...reply) (*fakeS3, driver.Store) {
	t.Helper()
	fake := &fakeS3{replies: replies}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	st, _, err := s3Driver{}.Open("s3://b/k?region=us-east-1&endpoint=" + srv.URL)
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
	if r.method != http.MethodPut || r.path != "/b/k" || r.body != "hello" {
		t.Errorf("request = %s %s %q, want PUT /b/k \"hello\"", r.method, r.path, r.body)
	}
	if got := r.header.Values("If-None-Match"); len(got) != 1 || got[0] != "*" {
		t.Errorf("If-None-Match = %q, want [*]", got)
	}
	if got := r.header.Get("If-Match"); got != "" {
		t.Errorf("If-Match = %q on a create-only write", got)
	}
	assertNoChecksums(t, r.header)
}

// assertNoChecksums checks that the SDK's default checksums, which several
// S3-compatible stores reject, are off.
func assertNoChecksums(t *testing.T, h http.Header) {
	t.Helper()
	for name := range h {
		if l := strings.ToLower(name); strings.HasPrefix(l, "x-amz-checksum-") ||
			l == "x-amz-sdk-checksum-algorithm" || l == "x-amz-trailer" {
			t.Errorf("request carries checksum header %s", name)
		}
	}
	if h.Get("Content-Encoding") == "aws-chunked" {
		t.Error("request body is aws-chunked")
	}
}

func TestReplaceSendsUnquotedETag(t *testing.T) {
	fake, st := newFake(t, reply{status: 200, etag: `"e2"`})
	v, err := st.Write(context.Background(), "k", []byte("v2"), "e1")
	if err != nil {
		t.Fatal(err)
	}
	if v != "e2" {
		t.Errorf("version = %q, want e2", v)
	}
	r := fake.seen()[0]
	if got := r.header.Values("If-Match"); len(got) != 1 || got[0] != "e1" {
		t.Errorf("If-Match = %q, want [e1] (unquoted)", got)
	}
	if got := r.header.Get("If-None-Match"); got != "" {
		t.Errorf("If-None-Match = %q on a replacing write", got)
	}
	assertNoChecksums(t, r.header)
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
		{"create-only on a present key", "", []reply{{status: 412, code: "PreconditionFailed"}}, true, false, 1, "write s3://b/k: precondition failed"},
		{"stale ETag", "e1", []reply{{status: 412, code: "PreconditionFailed"}}, true, false, 1, "write s3://b/k: precondition failed"},
		{"If-Match on a missing key", "e1", []reply{{status: 404, code: "NoSuchKey"}}, true, false, 1, "object does not exist"},
		{"missing bucket, create-only", "", []reply{{status: 404, code: "NoSuchBucket"}}, false, false, 1, `bucket "b" does not exist`},
		{"missing bucket, If-Match", "e1", []reply{{status: 404, code: "NoSuchBucket"}}, false, false, 1, `bucket "b" does not exist`},
		{"conflict, then precondition", "e1", []reply{{status: 409, code: "ConditionalRequestConflict"}, {status: 412, code: "PreconditionFailed"}}, true, false, 2, "precondition failed"},
		{"conflict that persists", "", []reply{{status: 409, code: "ConditionalRequestConflict"}}, false, true, 4, "conflicting concurrent writes"},
		{"slow down, read back fails too", "", []reply{{status: 503, code: "SlowDown"}}, false, true, 2, "SlowDown"},
		{"internal error, read back fails too", "e1", []reply{{status: 500, code: "InternalError"}}, false, true, 2, "InternalError"},
		{"too many requests", "e1", []reply{{status: 429, code: "TooManyRequests"}}, false, true, 1, "TooManyRequests"},
		{"bad access key", "", []reply{{status: 403, code: "InvalidAccessKeyId"}}, false, false, 1, "access denied, check the credentials"},
		{"bad secret", "", []reply{{status: 403, code: "SignatureDoesNotMatch"}}, false, false, 1, "access denied, check the credentials"},
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
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), "s3://b/k") {
				t.Errorf("error %q does not contain %q and the location", err, tt.msg)
			}
			if strings.Contains(err.Error(), "s3cr3t") {
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
	v, err := st.Write(context.Background(), "k", []byte("payload"), "")
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
		if r.body != "payload" || r.header.Get("If-None-Match") != "*" {
			t.Errorf("attempt %d sent body %q, If-None-Match %q", i, r.body, r.header.Get("If-None-Match"))
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
	if r := fake.seen()[0]; r.method != http.MethodGet || r.path != "/b/k" {
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
		{"missing key", reply{status: 404, code: "NoSuchKey"}, true, false, "read s3://b/k: object does not exist"},
		{"missing bucket", reply{status: 404, code: "NoSuchBucket"}, false, false, `bucket "b" does not exist`},
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
	st, _, err := s3Driver{}.Open("s3://b/k?region=us-east-1&endpoint=http://" + addr)
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
	st, _, err := s3Driver{}.Open("s3://b/k?region=us-east-1&endpoint=" + srv.URL)
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

func TestDelete(t *testing.T) {
	tests := []struct {
		name    string
		reply   reply
		wantErr string // "" for success
	}{
		{"deleted", reply{status: 204}, ""},
		{"absent, answered 404", reply{status: 404, code: "NoSuchKey"}, ""},
		{"missing bucket", reply{status: 404, code: "NoSuchBucket"}, `delete s3://b/k: bucket "b" does not exist`},
		{"access denied", reply{status: 403, code: "AccessDenied"}, "delete s3://b/k: access denied"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, st := newFake(t, tt.reply)
			err := st.(driver.Deleter).Delete(context.Background(), "k")
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Delete = %v; want an error containing %q", err, tt.wantErr)
			}
			reqs := fake.seen()
			if len(reqs) != 1 || reqs[0].method != http.MethodDelete || reqs[0].path != "/b/k" {
				t.Fatalf("requests = %+v; want one DELETE /b/k", reqs)
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
