// Package s3test is for tests only, not for any other code: a fake S3
// server that answers from a script and records what it was sent (Serve),
// one that keeps objects and honours conditional writes, with a hook for a
// store's quirks (ServeBucket, for objsync check's tests), the unit tests the two drivers share because
// both speak the S3 API to it (Suite.Run), and the loops of their DSN
// tests (ParseDSN, OpenRejects, OpenSharesOneClientPerSettings). What
// differs between the drivers (how a store is opened on the fake, the
// checks on a driver's own headers and signatures, the exact wording of
// some errors) stays in each driver's tests and is given as a parameter.
package s3test

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objsync/objsync/driver"
)

// Reply is one scripted answer of the fake server.
type Reply struct {
	Status int
	Code   string // S3 error code, for error answers
	ETag   string // sent as is, so quoted like S3 does
	Body   string
	Date   string // if not empty, the Date header instead of the time
}

// Request is what the fake server saw.
type Request struct {
	Method string
	Path   string
	Header http.Header
	Body   string
}

// Fake answers like an S3 server, from a script: each request takes the
// next reply, and the last reply repeats. Successful answers carry a
// Last-Modified header, which minio-go expects.
type Fake struct {
	// URL is the fake's address, http://127.0.0.1:PORT.
	URL string

	verify   func(r *http.Request, body []byte) bool
	mu       sync.Mutex
	replies  []Reply
	requests []Request
}

// Serve starts a fake server answering with replies, closed when the test
// ends. If verify is not nil, the fake checks every request with it, as a
// real server checks signatures: when verify returns false the request
// still takes its reply, but is answered 403 SignatureDoesNotMatch.
func Serve(t testing.TB, verify func(r *http.Request, body []byte) bool, replies ...Reply) *Fake {
	t.Helper()
	f := &Fake{verify: verify, replies: replies}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// ServeHTTP implements http.Handler.
func (f *Fake) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.requests = append(f.requests, Request{r.Method, r.URL.Path, r.Header.Clone(), string(body)})
	rep := f.replies[0]
	if len(f.replies) > 1 {
		f.replies = f.replies[1:]
	}
	f.mu.Unlock()

	if f.verify != nil && !f.verify(r, body) {
		rep = Reply{Status: http.StatusForbidden, Code: "SignatureDoesNotMatch"}
	}
	if rep.ETag != "" {
		w.Header().Set("ETag", rep.ETag)
	}
	if rep.Date != "" {
		w.Header().Set("Date", rep.Date)
	}
	if rep.Code != "" {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(rep.Status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>scripted %s</Message><RequestId>req-1</RequestId></Error>`, rep.Code, rep.Code)
		return
	}
	w.Header().Set("Last-Modified", time.Now().UTC().Format(http.TimeFormat))
	w.WriteHeader(rep.Status)
	io.WriteString(w, rep.Body)
}

// Seen returns the requests the fake has answered, in order.
func (f *Fake) Seen() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.requests...)
}

// Bucket is a fake S3 server that keeps objects in memory, in any bucket,
// and honours conditional PUTs as MinIO does: If-None-Match: * and
// If-Match with the ETag, quoted or not, else 412 PreconditionFailed.
// ETags are the MD5 of the content, quoted. It answers GET, PUT and an
// unconditional DELETE.
type Bucket struct {
	// URL is the fake's address, http://127.0.0.1:PORT.
	URL string

	quirk   func(r *http.Request, status int) int
	mu      sync.Mutex
	objects map[string]bucketObject // by path: /BUCKET/KEY
}

type bucketObject struct {
	data     []byte
	etag     string // quoted
	modified time.Time
}

// ServeBucket starts a Bucket, closed when the test ends. If quirk is not
// nil, it is given every request and the status the fake would answer,
// after the fake acted on it, and returns the status to answer instead:
// a store's bug in its HTTP layer (304 for a failed condition, say).
func ServeBucket(t testing.TB, quirk func(r *http.Request, status int) int) *Bucket {
	t.Helper()
	b := &Bucket{quirk: quirk, objects: map[string]bucketObject{}}
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	b.URL = srv.URL
	return b
}

// ServeHTTP implements http.Handler.
func (b *Bucket) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	b.mu.Lock()
	o, exists := b.objects[r.URL.Path]
	status, code := http.StatusOK, ""
	switch r.Method {
	case http.MethodGet:
		if !exists {
			status, code = http.StatusNotFound, "NoSuchKey"
		}
	case http.MethodPut:
		ifMatch := r.Header.Get("If-Match")
		switch {
		case r.Header.Get("If-None-Match") == "*" && exists,
			ifMatch != "" && (!exists || strings.Trim(ifMatch, `"`) != strings.Trim(o.etag, `"`)):
			status, code = http.StatusPreconditionFailed, "PreconditionFailed"
		default:
			sum := md5.Sum(body)
			o = bucketObject{body, `"` + hex.EncodeToString(sum[:]) + `"`, time.Now()}
			b.objects[r.URL.Path] = o
		}
	case http.MethodDelete:
		delete(b.objects, r.URL.Path)
		status = http.StatusNoContent
	default:
		status, code = http.StatusNotImplemented, "NotImplemented"
	}
	b.mu.Unlock()
	if b.quirk != nil {
		status = b.quirk(r, status)
	}
	switch {
	case code != "" && status >= 400:
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>req-1</RequestId></Error>`, code, code)
	case status != http.StatusOK:
		w.WriteHeader(status)
	default:
		w.Header().Set("ETag", o.etag)
		w.Header().Set("Last-Modified", o.modified.UTC().Format(http.TimeFormat))
		if r.Method == http.MethodGet {
			w.Header().Set("Content-Length", fmt.Sprint(len(o.data)))
			w.Write(o.data)
		}
	}
}

// Suite is the shared tests, as run on one driver by Run.
type Suite struct {
	// Open opens the key "k" in bucket Bucket on the S3 endpoint at url,
	// such as a Fake's URL.
	Open func(t *testing.T, url string) driver.Store
	// Verify, if not nil, checks every request the fakes of the suite see
	// (see Serve).
	Verify func(r *http.Request, body []byte) bool
	// Bucket is the bucket Open opens.
	Bucket string
	// Location is what every write error must name: the key's location, or
	// the part of it that does not change with the fake's port.
	Location string
	// Secret is what no error may contain.
	Secret string
	// CheckPut, if not nil, checks the headers of a PUT the driver sent.
	CheckPut func(t *testing.T, h http.Header)
	// CheckReplace, if not nil, further checks the PUT of a replacing write.
	CheckReplace func(t *testing.T, r Request)
	// WriteErrors, ReadErrors and DeleteErrors add the driver's own
	// expectations to the cases of the shared error tables.
	WriteErrors, ReadErrors, DeleteErrors Msgs
}

// Run runs the shared tests on the suite's driver, each as a subtest.
func (s Suite) Run(t *testing.T) {
	t.Run("CreateOnlyWrite", s.testCreateOnlyWrite)
	t.Run("ReplaceSendsUnquotedETag", s.testReplaceSendsUnquotedETag)
	t.Run("WriteErrors", s.testWriteErrors)
	t.Run("WriteRetriesConflicts", s.testWriteRetriesConflicts)
	t.Run("WriteRejectsVersionsThatAreNotETags", s.testWriteRejectsVersionsThatAreNotETags)
	t.Run("Read", s.testRead)
	t.Run("ReadDate", s.testReadDate)
	t.Run("ReadErrors", s.testReadErrors)
	t.Run("UnreachableEndpoint", s.testUnreachableEndpoint)
	t.Run("ConnectionResetIsRetryable", s.testConnectionResetIsRetryable)
	t.Run("CanceledContext", s.testCanceledContext)
	t.Run("Delete", s.testDelete)
	t.Run("WriteSettlesServerErrors", s.testWriteSettlesServerErrors)
}

// Msgs gives, by case name, a text the driver's error must contain beside
// the one the shared case table expects. A name that is no case of the
// table fails the test.
type Msgs map[string]string

// newFake starts a fake server answering with replies and opens the key "k"
// in the suite's bucket on it.
func (s Suite) newFake(t *testing.T, replies ...Reply) (*Fake, driver.Store) {
	t.Helper()
	fake := Serve(t, s.Verify, replies...)
	return fake, s.Open(t, fake.URL)
}

func (s Suite) path() string { return "/" + s.Bucket + "/k" }

func (s Suite) checkPut(t *testing.T, h http.Header) {
	t.Helper()
	if s.CheckPut != nil {
		s.CheckPut(t, h)
	}
}

// checkMsgs fails the test if msgs names a case that names does not hold,
// so that no expectation of a driver is lost to a misspelt name.
func checkMsgs(t *testing.T, msgs Msgs, names []string) {
	t.Helper()
	for name := range msgs {
		if !slices.Contains(names, name) {
			t.Errorf("messages for %q, which is no case", name)
		}
	}
}

// testCreateOnlyWrite checks that a write without a version is a PUT with
// If-None-Match: *.
func (s Suite) testCreateOnlyWrite(t *testing.T) {
	fake, st := s.newFake(t, Reply{Status: 200, ETag: `"e1"`})
	v, err := st.Write(context.Background(), "k", []byte("hello"), "")
	if err != nil {
		t.Fatal(err)
	}
	if v != "e1" {
		t.Errorf("version = %q, want the unquoted ETag e1", v)
	}
	reqs := fake.Seen()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if r.Method != http.MethodPut || r.Path != s.path() || r.Body != "hello" {
		t.Errorf("request = %s %s %q, want PUT %s \"hello\"", r.Method, r.Path, r.Body, s.path())
	}
	if got := r.Header.Values("If-None-Match"); len(got) != 1 || got[0] != "*" {
		t.Errorf("If-None-Match = %q, want [*]", got)
	}
	if got := r.Header.Get("If-Match"); got != "" {
		t.Errorf("If-Match = %q on a create-only write", got)
	}
	s.checkPut(t, r.Header)
}

// testReplaceSendsUnquotedETag checks that a write with a version is a PUT
// with If-Match and the unquoted ETag.
func (s Suite) testReplaceSendsUnquotedETag(t *testing.T) {
	fake, st := s.newFake(t, Reply{Status: 200, ETag: `"e2"`})
	v, err := st.Write(context.Background(), "k", []byte("v2"), "e1")
	if err != nil {
		t.Fatal(err) // SignatureDoesNotMatch if Verify finds the signature wrong
	}
	if v != "e2" {
		t.Errorf("version = %q, want e2", v)
	}
	r := fake.Seen()[0]
	if got := r.Header.Values("If-Match"); len(got) != 1 || got[0] != "e1" {
		t.Errorf("If-Match = %q, want [e1] (unquoted)", got)
	}
	if got := r.Header.Get("If-None-Match"); got != "" {
		t.Errorf("If-None-Match = %q on a replacing write", got)
	}
	s.checkPut(t, r.Header)
	if s.CheckReplace != nil {
		s.CheckReplace(t, r)
	}
}

// testWriteErrors checks how failed writes are reported: which are
// precondition failures, which are retryable, how many requests they take,
// and that each error names the location, contains the expected text (and
// the driver's own text from WriteErrors), and not the secret.
func (s Suite) testWriteErrors(t *testing.T) {
	msgs := s.WriteErrors
	noBucket := fmt.Sprintf("bucket %q does not exist", s.Bucket)
	tests := []struct {
		name         string
		ifVersion    driver.Version
		replies      []Reply
		precondition bool
		retryable    bool
		requests     int
		msg          string
	}{
		{"create-only on a present key", "", []Reply{{Status: 412, Code: "PreconditionFailed"}}, true, false, 1, "precondition failed"},
		{"stale ETag", "e1", []Reply{{Status: 412, Code: "PreconditionFailed"}}, true, false, 1, "precondition failed"},
		{"If-Match on a missing key", "e1", []Reply{{Status: 404, Code: "NoSuchKey"}}, true, false, 1, "object does not exist"},
		{"missing bucket, create-only", "", []Reply{{Status: 404, Code: "NoSuchBucket"}}, false, false, 1, noBucket},
		{"missing bucket, If-Match", "e1", []Reply{{Status: 404, Code: "NoSuchBucket"}}, false, false, 1, noBucket},
		{"conflict, then precondition", "e1", []Reply{{Status: 409, Code: "ConditionalRequestConflict"}, {Status: 412, Code: "PreconditionFailed"}}, true, false, 2, "precondition failed"},
		{"conflict that persists", "", []Reply{{Status: 409, Code: "ConditionalRequestConflict"}}, false, true, 4, "conflicting concurrent writes"},
		{"slow down, read back fails too", "", []Reply{{Status: 503, Code: "SlowDown"}}, false, true, 2, "SlowDown"},
		{"internal error, read back fails too", "e1", []Reply{{Status: 500, Code: "InternalError"}}, false, true, 2, "InternalError"},
		{"too many requests", "e1", []Reply{{Status: 429, Code: "TooManyRequests"}}, false, true, 1, "TooManyRequests"},
		{"bad access key", "", []Reply{{Status: 403, Code: "InvalidAccessKeyId"}}, false, false, 1, "access denied, check the credentials"},
		{"bad secret", "", []Reply{{Status: 403, Code: "SignatureDoesNotMatch"}}, false, false, 1, "access denied, check the credentials"},
	}
	var names []string
	for _, tt := range tests {
		names = append(names, tt.name)
		t.Run(tt.name, func(t *testing.T) {
			fake, st := s.newFake(t, tt.replies...)
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
			if n := len(fake.Seen()); n != tt.requests {
				t.Errorf("%d requests, want %d", n, tt.requests)
			}
			for _, msg := range []string{tt.msg, msgs[tt.name]} {
				if !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), s.Location) {
					t.Errorf("error %q does not contain %q and the location", err, msg)
				}
			}
			if strings.Contains(err.Error(), s.Secret) {
				t.Errorf("error reveals the secret: %v", err)
			}
		})
	}
	checkMsgs(t, msgs, names)
}

// testWriteRetriesConflicts checks that a write answered 409
// ConditionalRequestConflict is sent again, the same, until it succeeds:
// both a create-only write and a replacing one.
func (s Suite) testWriteRetriesConflicts(t *testing.T) {
	for _, tt := range []struct {
		name      string
		ifVersion driver.Version
	}{
		{"create-only", ""},
		{"replace", "e2"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			fake, st := s.newFake(t,
				Reply{Status: 409, Code: "ConditionalRequestConflict"},
				Reply{Status: 409, Code: "ConditionalRequestConflict"},
				Reply{Status: 200, ETag: `"e3"`})
			v, err := st.Write(context.Background(), "k", []byte("payload"), tt.ifVersion)
			if err != nil {
				t.Fatal(err)
			}
			if v != "e3" {
				t.Errorf("version = %q, want e3", v)
			}
			reqs := fake.Seen()
			if len(reqs) != 3 {
				t.Fatalf("%d requests, want 3", len(reqs))
			}
			for i, r := range reqs {
				if tt.ifVersion == "" && (r.Body != "payload" || r.Header.Get("If-None-Match") != "*") {
					t.Errorf("attempt %d sent body %q, If-None-Match %q", i, r.Body, r.Header.Get("If-None-Match"))
				}
				if tt.ifVersion != "" && (r.Body != "payload" || r.Header.Get("If-Match") != string(tt.ifVersion)) {
					t.Errorf("attempt %d sent body %q, If-Match %q", i, r.Body, r.Header.Get("If-Match"))
				}
			}
		})
	}
}

// testWriteRejectsVersionsThatAreNotETags checks that a version that is
// not an ETag fails the precondition without a request.
func (s Suite) testWriteRejectsVersionsThatAreNotETags(t *testing.T) {
	for _, v := range []driver.Version{"*", `"e1"`, "e1, e2", "e 1"} {
		fake, st := s.newFake(t, Reply{Status: 200, ETag: `"x"`})
		_, err := st.Write(context.Background(), "k", []byte("data"), v)
		if !errors.Is(err, driver.ErrPrecondition) {
			t.Errorf("Write with version %q: %v, want ErrPrecondition", v, err)
		}
		if n := len(fake.Seen()); n != 0 {
			t.Errorf("Write with version %q sent %d requests", v, n)
		}
	}
}

// testRead checks that a read is a GET of the key, returning the content and
// the unquoted ETag.
func (s Suite) testRead(t *testing.T) {
	fake, st := s.newFake(t, Reply{Status: 200, ETag: `"e1"`, Body: "content"})
	data, v, err := st.Read(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	if string(data) != "content" || v != "e1" {
		t.Errorf("Read = %q, %q; want content, e1", data, v)
	}
	if r := fake.Seen()[0]; r.Method != http.MethodGet || r.Path != s.path() {
		t.Errorf("request = %s %s", r.Method, r.Path)
	}
}

// testReadDate checks that the driver tells the Date of a read's answer,
// and refuses one without a usable Date.
func (s Suite) testReadDate(t *testing.T) {
	for _, tc := range []struct {
		date string
		want time.Time // zero: an error
	}{
		{"Thu, 03 Dec 2026 10:00:10 GMT", time.Date(2026, 12, 3, 10, 0, 10, 0, time.UTC)},
		{"soon", time.Time{}},
		{"Fri, 31 Dec 9999 23:59:59 GMT", time.Time{}},
	} {
		_, st := s.newFake(t, Reply{Status: 200, ETag: `"e1"`, Body: "content", Date: tc.date})
		dates, ok := st.(driver.DateReader)
		if !ok {
			t.Fatalf("%T is no driver.DateReader", st)
		}
		got, err := dates.ReadDate(context.Background(), "k")
		switch {
		case !tc.want.IsZero() && (err != nil || !got.Equal(tc.want)):
			t.Errorf("Date %q: ReadDate = %v, %v; want %v", tc.date, got, err, tc.want)
		case tc.want.IsZero() && (err == nil || !strings.Contains(err.Error(), "no usable Date")):
			t.Errorf("Date %q: ReadDate = %v, %v; want an error", tc.date, got, err)
		}
	}
	_, st := s.newFake(t, Reply{Status: 404, Code: "NoSuchKey"})
	if _, err := st.(driver.DateReader).ReadDate(context.Background(), "k"); !errors.Is(err, driver.ErrNotExist) {
		t.Errorf("ReadDate of a missing key: %v, want ErrNotExist", err)
	}
}

// testReadErrors checks how failed reads are reported, each error with the
// expected text and the driver's own text from ReadErrors.
func (s Suite) testReadErrors(t *testing.T) {
	msgs := s.ReadErrors
	tests := []struct {
		name      string
		reply     Reply
		notExist  bool
		retryable bool
		msg       string
	}{
		{"missing key", Reply{Status: 404, Code: "NoSuchKey"}, true, false, "object does not exist"},
		{"missing bucket", Reply{Status: 404, Code: "NoSuchBucket"}, false, false, fmt.Sprintf("bucket %q does not exist", s.Bucket)},
		{"access denied", Reply{Status: 403, Code: "AccessDenied"}, false, false, "access denied"},
		{"slow down", Reply{Status: 503, Code: "SlowDown"}, false, true, "SlowDown"},
	}
	var names []string
	for _, tt := range tests {
		names = append(names, tt.name)
		t.Run(tt.name, func(t *testing.T) {
			fake, st := s.newFake(t, tt.reply)
			_, _, err := st.Read(context.Background(), "k")
			if got := errors.Is(err, driver.ErrNotExist); got != tt.notExist {
				t.Errorf("errors.Is(ErrNotExist) = %v, want %v: %v", got, tt.notExist, err)
			}
			if got := driver.IsRetryable(err); got != tt.retryable {
				t.Errorf("IsRetryable = %v, want %v: %v", got, tt.retryable, err)
			}
			for _, msg := range []string{tt.msg, msgs[tt.name]} {
				if err == nil || !strings.Contains(err.Error(), msg) {
					t.Errorf("error %v does not contain %q", err, msg)
				}
			}
			if n := len(fake.Seen()); n != 1 {
				t.Errorf("%d requests, want 1", n)
			}
		})
	}
	checkMsgs(t, msgs, names)
}

// testUnreachableEndpoint checks that a write to an endpoint nothing
// listens on fails as retryable.
func (s Suite) testUnreachableEndpoint(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	st := s.Open(t, "http://"+addr)
	_, err = st.Write(context.Background(), "k", []byte("data"), "")
	if err == nil || !strings.Contains(err.Error(), "endpoint unreachable") || !driver.IsRetryable(err) {
		t.Fatalf("Write = %v; want a retryable 'endpoint unreachable' error", err)
	}
	if errors.Is(err, driver.ErrPrecondition) {
		t.Fatal("unreachable endpoint reported as a precondition failure")
	}
}

// testConnectionResetIsRetryable checks that writes and reads whose
// connection is reset fail as retryable.
func (s Suite) testConnectionResetIsRetryable(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			return
		}
		conn.(*net.TCPConn).SetLinger(0) // close with RST
		conn.Close()
	}))
	defer srv.Close()
	st := s.Open(t, srv.URL)
	if _, err := st.Write(context.Background(), "k", []byte("data"), "e1"); !driver.IsRetryable(err) || errors.Is(err, driver.ErrPrecondition) {
		t.Errorf("Write = %v; want a retryable error", err)
	}
	if _, _, err := st.Read(context.Background(), "k"); !driver.IsRetryable(err) || errors.Is(err, driver.ErrNotExist) {
		t.Errorf("Read = %v; want a retryable error", err)
	}
}

// testCanceledContext checks that nothing is sent with a canceled context,
// and that the error is context.Canceled.
func (s Suite) testCanceledContext(t *testing.T) {
	fake, st := s.newFake(t, Reply{Status: 200, ETag: `"e1"`})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := st.Write(ctx, "k", []byte("data"), ""); !errors.Is(err, context.Canceled) || driver.IsRetryable(err) {
		t.Errorf("Write = %v; want context.Canceled, not retryable", err)
	}
	if _, _, err := st.Read(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Errorf("Read = %v; want context.Canceled", err)
	}
	if n := len(fake.Seen()); n != 0 {
		t.Errorf("%d requests sent with a canceled context", n)
	}
}

// testDelete checks that a delete is one DELETE of the key, that deleting
// an absent key succeeds, and how failures are reported: each error with
// the expected text and the driver's own text from DeleteErrors, and not
// the secret.
func (s Suite) testDelete(t *testing.T) {
	msgs := s.DeleteErrors
	tests := []struct {
		name    string
		reply   Reply
		wantErr string // "" for success
	}{
		{"deleted", Reply{Status: 204}, ""},
		{"absent, answered 404", Reply{Status: 404, Code: "NoSuchKey"}, ""},
		{"missing bucket", Reply{Status: 404, Code: "NoSuchBucket"}, fmt.Sprintf("bucket %q does not exist", s.Bucket)},
		{"access denied", Reply{Status: 403, Code: "AccessDenied"}, "access denied"},
	}
	var names []string
	for _, tt := range tests {
		names = append(names, tt.name)
		t.Run(tt.name, func(t *testing.T) {
			fake, st := s.newFake(t, tt.reply)
			err := st.(driver.Deleter).Delete(context.Background(), "k")
			if tt.wantErr == "" && err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if tt.wantErr != "" {
				for _, want := range []string{tt.wantErr, msgs[tt.name]} {
					if err == nil || !strings.Contains(err.Error(), want) {
						t.Fatalf("Delete = %v; want an error containing %q", err, want)
					}
				}
			}
			if err != nil && strings.Contains(err.Error(), s.Secret) {
				t.Fatalf("error reveals the secret: %v", err)
			}
			reqs := fake.Seen()
			if len(reqs) != 1 || reqs[0].Method != http.MethodDelete || reqs[0].Path != s.path() {
				t.Fatalf("requests = %+v; want one DELETE %s", reqs, s.path())
			}
		})
	}
	checkMsgs(t, msgs, names)
}

// testWriteSettlesServerErrors checks that a 5xx answer to a conditional
// PUT is settled by reading the object back (Ceph RGW answers 500 to some
// writes that lose a race).
func (s Suite) testWriteSettlesServerErrors(t *testing.T) {
	fake, st := s.newFake(t, Reply{Status: 500, Code: "InternalError"}, Reply{Status: 200, ETag: `"e2"`, Body: "data"})
	v, err := st.Write(context.Background(), "k", []byte("data"), "e1")
	if err != nil || v != "e2" {
		t.Fatalf("Write = %q, %v; want the version read back", v, err)
	}
	if reqs := fake.Seen(); len(reqs) != 2 || reqs[1].Method != http.MethodGet {
		t.Fatalf("requests %+v, want PUT then GET", reqs)
	}
}

// ParseDSN checks that parse splits each DSN of tests into its bucket,
// key and client settings.
func ParseDSN[S comparable](t *testing.T, parse func(dsn string) (bucket, key string, set S, err error),
	tests []struct {
		DSN, Bucket, Key string
		Want             S
	}) {
	for _, tt := range tests {
		bucket, key, set, err := parse(tt.DSN)
		if err != nil {
			t.Errorf("parseDSN(%q): %v", tt.DSN, err)
			continue
		}
		if bucket != tt.Bucket || key != tt.Key || set != tt.Want {
			t.Errorf("parseDSN(%q) = %q, %q, %+v; want %q, %q, %+v", tt.DSN, bucket, key, set, tt.Bucket, tt.Key, tt.Want)
		}
	}
}

// OpenRejects checks that d refuses each DSN of rejects with an error
// containing Err, and that no error contains secret.
func OpenRejects(t *testing.T, d driver.Driver, secret string, rejects []struct{ DSN, Err string }) {
	for _, tt := range rejects {
		_, _, err := d.Open(tt.DSN)
		if err == nil {
			t.Errorf("Open(%q) succeeded", tt.DSN)
			continue
		}
		if !strings.Contains(err.Error(), tt.Err) {
			t.Errorf("Open(%q) = %v; want an error containing %q", tt.DSN, err, tt.Err)
		}
		if strings.Contains(err.Error(), secret) {
			t.Errorf("Open(%q) error reveals the secret: %v", tt.DSN, err)
		}
	}
}

// Sharing is how a driver shares its clients between stores, for
// TestOpenSharesOneClientPerSettings.
type Sharing struct {
	// DSN returns the i-th of DSNs with the same client settings, whose
	// key is locks/i.
	DSN func(i int) string
	// Others are DSNs whose client settings differ from DSN's.
	Others []string
	// Client returns the client a store of the driver uses.
	Client func(driver.Store) any
	// Built returns how many clients the driver has built so far.
	Built func() int
}

// OpenSharesOneClientPerSettings checks that d builds one client for
// 1000 DSNs with the same settings, and that a DSN with other settings gets
// a client of its own.
func OpenSharesOneClientPerSettings(t *testing.T, d driver.Driver, sh Sharing) {
	before := sh.Built()
	var first any
	for i := range 1000 {
		st, key, err := d.Open(sh.DSN(i))
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("locks/%d", i); key != want {
			t.Fatalf("key = %q, want %q", key, want)
		}
		if first == nil {
			first = sh.Client(st)
		} else if sh.Client(st) != first {
			t.Fatalf("DSN %d got its own client", i)
		}
	}
	if built := sh.Built() - before; built != 1 {
		t.Fatalf("opening 1000 DSNs built %d clients, want 1", built)
	}
	for _, dsn := range sh.Others {
		other, _, err := d.Open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if sh.Client(other) == first {
			t.Errorf("%s shares a client with different settings", dsn)
		}
	}
}

// WithoutCredentials leaves the AWS SDK's and minio-go's chains nothing to
// find, for the rest of the test: no keys in the environment, no mc or AWS
// files (HOME and the files' variables point into the test's own
// directory), no web identity or container endpoint, and the instance
// metadata service switched off, so that nothing is asked beyond the
// loopback fakes.
func WithoutCredentials(t testing.TB) {
	for _, name := range []string{
		"MINIO_ROOT_USER", "MINIO_ROOT_PASSWORD", "MINIO_ACCESS_KEY", "MINIO_SECRET_KEY", "MINIO_ALIAS",
		"AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY", "AWS_SECRET_KEY", "AWS_SESSION_TOKEN",
		"AWS_PROFILE", "AWS_WEB_IDENTITY_TOKEN_FILE", "AWS_ROLE_ARN",
		"AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "AWS_CONTAINER_CREDENTIALS_FULL_URI",
		"AWS_CONTAINER_AUTHORIZATION_TOKEN", "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE",
	} {
		t.Setenv(name, "") // restored after the test
		os.Unsetenv(name)
	}
	dir := t.TempDir()
	t.Setenv("HOME", dir)
	t.Setenv("MINIO_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "mc.json"))
	t.Setenv("AWS_CONFIG_FILE", filepath.Join(dir, "config"))
	t.Setenv("AWS_SHARED_CREDENTIALS_FILE", filepath.Join(dir, "credentials"))
	t.Setenv("AWS_EC2_METADATA_DISABLED", "true")
}
