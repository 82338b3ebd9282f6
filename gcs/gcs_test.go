package gcs

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"mime"
	"mime/multipart"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"github.com/objsync/objsync/driver"
)

func TestRegistered(t *testing.T) {
	if _, ok := driver.Lookup("gcs"); !ok {
		t.Fatal(`driver "gcs" is not registered`)
	}
}

func TestParseDSN(t *testing.T) {
	tests := []struct{ dsn, bucket, key string }{
		{"gs://b/k", "b", "k"},
		{"gs://my-bucket/locks/deploy", "my-bucket", "locks/deploy"},
		{"gcs://my-bucket/locks/deploy", "my-bucket", "locks/deploy"},
		{"gs://b/a%3Fb%23c", "b", "a?b#c"},
	}
	for _, tt := range tests {
		bucket, key, err := parseDSN(tt.dsn)
		if err != nil {
			t.Errorf("parseDSN(%q): %v", tt.dsn, err)
			continue
		}
		if bucket != tt.bucket || key != tt.key {
			t.Errorf("parseDSN(%q) = %q, %q; want %q, %q", tt.dsn, bucket, key, tt.bucket, tt.key)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	const secret = "s3cr3t"
	tests := []struct{ dsn, wantErr string }{
		{"gs://b", "missing key"},
		{"gs://b/", "missing key"},
		{"gs:///k", "missing bucket"},
		{"gs:b/k", "want gs://BUCKET/KEY"},
		{"s3://b/k", "scheme must be gs"},
		{"gs://b/k?project=p", `unknown DSN parameter "project"`},
		{"gs://b/k?project=%zz", `DSN parameter "project" has an invalid %-escape`},
		{"gs://b/k#frag", "unexpected '#'"},
		{"gs://b:443/k", "a bucket name has no port"},
		{"gs://user:" + secret + "@b/k", "credentials do not belong in the DSN"},
		{"gs://user:" + secret + "@b:x/k", "invalid port"},
	}
	for _, tt := range tests {
		_, _, err := gcsDriver{}.Open(tt.dsn)
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

func TestOpenSharesOneClient(t *testing.T) {
	t.Setenv("STORAGE_EMULATOR_HOST", "127.0.0.1:1") // a key of its own
	before := clients.Len()
	var first *store
	for i := range 1000 {
		st, key, err := gcsDriver{}.Open(fmt.Sprintf("gs://bucket-%d/locks/%d", i%7, i))
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
	if first.client.client != nil {
		t.Fatal("Open built the storage client; it must wait for the first request")
	}
}

func TestLocation(t *testing.T) {
	st, key, err := gcsDriver{}.Open("gs://b/locks/a")
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Location(key); got != "gs://b/locks/a" {
		t.Fatalf("Location = %q", got)
	}
	if again, _, err := (gcsDriver{}).Open("gs://b/locks/b"); err != nil || again != st {
		t.Fatalf("another key of the bucket opened another store (err %v)", err)
	}
}

// reply is one scripted answer of the fake server.
type reply struct {
	status     int
	generation int64  // of the object written or read, on success
	body       string // content served by a read
	reason     string // error reason, for error answers
	crc32c     uint32 // the checksum sent with a read's content, if not 0
}

// request is what the fake server saw.
type request struct {
	method string
	path   string
	query  url.Values
	media  string // the uploaded content
}

// fakeGCS answers like the GCS JSON API would for uploads and downloads,
// from a script: each request takes the next reply, and the last one
// repeats.
type fakeGCS struct {
	t        *testing.T
	mu       sync.Mutex
	replies  []reply
	requests []request
}

func (f *fakeGCS) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req := request{method: r.Method, path: r.URL.Path, query: r.URL.Query()}
	if r.Method == http.MethodPost {
		req.media = f.media(r)
	}
	f.mu.Lock()
	f.requests = append(f.requests, req)
	rep := f.replies[0]
	if len(f.replies) > 1 {
		f.replies = f.replies[1:]
	}
	f.mu.Unlock()

	if rep.status != http.StatusOK {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(rep.status)
		json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
			"code": rep.status, "message": "scripted " + rep.reason,
			"errors": []map[string]string{{"domain": "global", "reason": rep.reason, "message": "scripted " + rep.reason}},
		}})
		return
	}
	if r.Method == http.MethodPost {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]string{
			"kind": "storage#object", "bucket": "b", "name": r.URL.Query().Get("name"),
			"generation": fmt.Sprint(rep.generation), "metageneration": "1", "size": fmt.Sprint(len(req.media)),
		})
		return
	}
	if rep.crc32c != 0 {
		sum := binary.BigEndian.AppendUint32(nil, rep.crc32c)
		w.Header().Set("X-Goog-Hash", "crc32c="+base64.StdEncoding.EncodeToString(sum))
	}
	w.Header().Set("X-Goog-Generation", fmt.Sprint(rep.generation))
	w.Header().Set("X-Goog-Metageneration", "1")
	io.WriteString(w, rep.body)
}

// media returns the content part of a multipart upload.
func (f *fakeGCS) media(r *http.Request) string {
	_, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		f.t.Errorf("upload Content-Type: %v", err)
		return ""
	}
	mr := multipart.NewReader(r.Body, params["boundary"])
	var last []byte
	for {
		p, err := mr.NextPart()
		if err != nil {
			return string(last)
		}
		last, _ = io.ReadAll(p)
	}
}

func (f *fakeGCS) seen() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

// newFake starts a fake server answering with replies, points the client at
// it as an emulator, and opens gs://b/k.
func newFake(t *testing.T, replies ...reply) (*fakeGCS, driver.Store) {
	t.Helper()
	fake := &fakeGCS{t: t, replies: replies}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	t.Setenv("STORAGE_EMULATOR_HOST", srv.URL)
	st, _, err := gcsDriver{}.Open("gs://b/k")
	if err != nil {
		t.Fatal(err)
	}
	return fake, st
}

func TestCreateOnlyWrite(t *testing.T) {
	fake, st := newFake(t, reply{status: 200, generation: 1700000000000001})
	v, err := st.Write(context.Background(), "k", []byte("hello"), "")
	if err != nil {
		t.Fatal(err)
	}
	if v != "1700000000000001" {
		t.Errorf("version = %q, want the generation", v)
	}
	reqs := fake.seen()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.method != http.MethodPost || r.path != "/upload/storage/v1/b/b/o" || r.media != "hello" {
		t.Errorf("request = %s %s %q", r.method, r.path, r.media)
	}
	if got := r.query["ifGenerationMatch"]; len(got) != 1 || got[0] != "0" {
		t.Errorf("ifGenerationMatch = %q, want [0]", got)
	}
	if got := r.query["uploadType"]; len(got) != 1 || got[0] != "multipart" {
		t.Errorf("uploadType = %q, want a single-request upload", got)
	}
}

func TestReplaceSendsGeneration(t *testing.T) {
	fake, st := newFake(t, reply{status: 200, generation: 43})
	v, err := st.Write(context.Background(), "k", []byte("v2"), "42")
	if err != nil {
		t.Fatal(err)
	}
	if v != "43" {
		t.Errorf("version = %q, want 43", v)
	}
	if got := fake.seen()[0].query["ifGenerationMatch"]; len(got) != 1 || got[0] != "42" {
		t.Errorf("ifGenerationMatch = %q, want [42]", got)
	}
}

func TestWriteErrors(t *testing.T) {
	tests := []struct {
		name         string
		ifVersion    driver.Version
		reply        reply
		precondition bool
		retryable    bool
		msg          string
	}{
		{"create-only on a present key", "", reply{status: 412, reason: "conditionNotMet"}, true, false, "write gs://b/k: precondition failed"},
		{"stale generation", "42", reply{status: 412, reason: "conditionNotMet"}, true, false, "write gs://b/k: precondition failed"},
		{"missing bucket", "", reply{status: 404, reason: "notFound"}, false, false, `bucket "b" does not exist`},
		{"rate limit", "42", reply{status: 429, reason: "rateLimitExceeded"}, false, true, "rateLimitExceeded"},
		{"unavailable", "", reply{status: 503, reason: "backendError"}, false, true, "backendError"},
		{"internal error", "42", reply{status: 500, reason: "internalError"}, false, true, "internalError"},
		{"forbidden", "", reply{status: 403, reason: "forbidden"}, false, false, "access denied, check the credentials"},
		{"unauthorized", "", reply{status: 401, reason: "authError"}, false, false, "access denied, check the credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, st := newFake(t, tt.reply, reply{status: 200, generation: 99})
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
			// The client must not retry: a retried create-only write that
			// had succeeded would come back as 412.
			if n := len(fake.seen()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), "gs://b/k") {
				t.Errorf("error %q does not contain %q and the location", err, tt.msg)
			}
		})
	}
}

func TestWriteRejectsVersionsThatAreNotGenerations(t *testing.T) {
	for _, v := range []driver.Version{"0", "-1", "abc", "1.5", "e1"} {
		fake, st := newFake(t, reply{status: 200, generation: 1})
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
	fake, st := newFake(t, reply{status: 200, generation: 7, body: "content"})
	data, v, err := st.Read(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "content" || v != "7" {
		t.Errorf("Read = %q, %q; want content, 7", data, v)
	}
	r := fake.seen()[0]
	if r.method != http.MethodGet || r.path != "/storage/v1/b/b/o/k" || r.query.Get("alt") != "media" {
		t.Errorf("request = %s %s?%s, want a JSON API download", r.method, r.path, r.query.Encode())
	}
}

// TestReadBadChecksum: content that does not match the checksum sent with
// it (fake-gcs-server serves that for an object replaced while it is read)
// is a transient error, never a state with a version.
func TestReadBadChecksum(t *testing.T) {
	other := crc32.Checksum([]byte("other content"), crc32.MakeTable(crc32.Castagnoli))
	_, st := newFake(t, reply{status: 200, generation: 7, body: "content", crc32c: other})
	data, v, err := st.Read(context.Background(), "k")
	if err == nil || !driver.IsRetryable(err) || !strings.Contains(err.Error(), "read gs://b/k: the content did not match its checksum") {
		t.Fatalf("Read = %q, %q, %v; want a retryable error", data, v, err)
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
		{"missing", reply{status: 404, reason: "notFound"}, true, false, "read gs://b/k: object does not exist"},
		{"forbidden", reply{status: 403, reason: "forbidden"}, false, false, "access denied"},
		{"rate limit", reply{status: 429, reason: "rateLimitExceeded"}, false, true, "429"},
		{"unavailable", reply{status: 503, reason: "backendError"}, false, true, "503"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake, st := newFake(t, tt.reply, reply{status: 200, generation: 1})
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

func TestSharedClientIsBuiltOnce(t *testing.T) {
	_, st := newFake(t, reply{status: 200, generation: 1, body: "x"})
	other, _, err := gcsDriver{}.Open("gs://other-bucket/k")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := st.Read(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	built := st.(*store).client.client
	if _, _, err := other.Read(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
	if built == nil || other.(*store).client.client != built {
		t.Fatal("two stores built two storage clients")
	}
}

func TestUnreachableEndpoint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("STORAGE_EMULATOR_HOST", addr)
	st, _, err := gcsDriver{}.Open("gs://b/k")
	if err != nil {
		t.Fatal(err)
	}
	_, err = st.Write(context.Background(), "k", []byte("data"), "")
	if err == nil || !strings.Contains(err.Error(), "endpoint unreachable") || !driver.IsRetryable(err) {
		t.Fatalf("Write = %v; want a retryable 'endpoint unreachable' error", err)
	}
	_, _, err = st.Read(context.Background(), "k")
	if err == nil || !strings.Contains(err.Error(), "endpoint unreachable") || !driver.IsRetryable(err) {
		t.Fatalf("Read = %v; want a retryable 'endpoint unreachable' error", err)
	}
}

func TestConnectionResetIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		conn.(*net.TCPConn).SetLinger(0) // close with RST
		conn.Close()
	}))
	defer srv.Close()
	t.Setenv("STORAGE_EMULATOR_HOST", srv.URL)
	st, _, err := gcsDriver{}.Open("gs://b/k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Write(context.Background(), "k", []byte("data"), "42"); !driver.IsRetryable(err) || errors.Is(err, driver.ErrPrecondition) {
		t.Errorf("Write = %v; want a retryable error", err)
	}
	if _, _, err := st.Read(context.Background(), "k"); !driver.IsRetryable(err) || errors.Is(err, driver.ErrNotExist) {
		t.Errorf("Read = %v; want a retryable error", err)
	}
}

func TestCanceledContext(t *testing.T) {
	fake, st := newFake(t, reply{status: 200, generation: 1})
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
		{"deleted", reply{status: 200}, ""},
		{"absent", reply{status: 404, reason: "notFound"}, ""},
		{"forbidden", reply{status: 403, reason: "forbidden"}, "delete gs://b/k: access denied"},
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
			if len(reqs) != 1 || reqs[0].method != http.MethodDelete || reqs[0].path != "/storage/v1/b/b/o/k" {
				t.Fatalf("requests = %+v; want one DELETE of the object", reqs)
			}
			if got := reqs[0].query["ifGenerationMatch"]; got != nil {
				t.Errorf("Delete sent ifGenerationMatch=%q; it is unconditional", got)
			}
		})
	}
}

// TestDeleteIf: a conditional delete sends ifGenerationMatch, and a 412
// answer is a failed precondition.
func TestDeleteIf(t *testing.T) {
	for _, tt := range []struct {
		reply        reply
		precondition bool
	}{
		{reply{status: 204}, false},
		{reply{status: 412, reason: "conditionNotMet"}, true},
	} {
		fake, st := newFake(t, tt.reply)
		err := st.(driver.ConditionalDeleter).DeleteIf(t.Context(), "k", "7")
		if got := errors.Is(err, driver.ErrPrecondition); got != tt.precondition || (err != nil && !tt.precondition) {
			t.Errorf("answered %d: DeleteIf = %v; want precondition failed %v", tt.reply.status, err, tt.precondition)
		}
		reqs := fake.seen()
		if len(reqs) != 1 || reqs[0].method != http.MethodDelete || fmt.Sprint(reqs[0].query["ifGenerationMatch"]) != "[7]" {
			t.Errorf("requests %+v; want one DELETE with ifGenerationMatch=7", reqs)
		}
	}
}
