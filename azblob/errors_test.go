package azblob

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/objsync/objsync/driver"
)

// openOn opens the blob "k" of container "c" on the fake, with a client of
// its own built from the test's environment.
func openOn(t *testing.T, f *fake) driver.Store {
	t.Helper()
	st, key, err := azblobDriver{}.Open("azblob://acct/c/k?endpoint=" + f.url)
	if err != nil {
		t.Fatal(err)
	}
	if key != "k" {
		t.Fatalf("key = %q", key)
	}
	return st
}

// TestWriteConditions: a create-only write sends If-None-Match: *, a
// replacing write If-Match with the version read, and both read the new
// ETag from the answer.
func TestWriteConditions(t *testing.T) {
	f := serve(t, reply{status: 201, etag: `"0x1"`}, reply{status: 201, etag: `"0x2"`})
	st := openOn(t, f)
	v1, err := st.Write(context.Background(), "k", []byte("one"), "")
	if err != nil || v1 != `"0x1"` {
		t.Fatalf("create-only Write = %q, %v", v1, err)
	}
	v2, err := st.Write(context.Background(), "k", []byte("two"), v1)
	if err != nil || v2 != `"0x2"` {
		t.Fatalf("replacing Write = %q, %v", v2, err)
	}
	seen := f.seen()
	if len(seen) != 2 {
		t.Fatalf("%d requests, want 2", len(seen))
	}
	create, replace := seen[0], seen[1]
	if create.method != http.MethodPut || create.path != "/acct/c/k" || create.body != "one" ||
		create.header.Get("If-None-Match") != "*" || create.header.Get("If-Match") != "" ||
		create.header.Get("x-ms-blob-type") != "BlockBlob" {
		t.Errorf("create-only write sent %s %s %q with If-None-Match %q, If-Match %q, x-ms-blob-type %q", create.method, create.path, create.body,
			create.header.Get("If-None-Match"), create.header.Get("If-Match"), create.header.Get("x-ms-blob-type"))
	}
	if replace.header.Get("If-Match") != `"0x1"` || replace.header.Get("If-None-Match") != "" || replace.body != "two" {
		t.Errorf("replacing write sent If-Match %q, If-None-Match %q, body %q", replace.header.Get("If-Match"), replace.header.Get("If-None-Match"), replace.body)
	}
	if _, err := st.Write(context.Background(), "k", []byte("x"), "*"); !errors.Is(err, driver.ErrPrecondition) {
		t.Errorf(`Write with version "*" = %v, want ErrPrecondition before sending`, err)
	}
	if n := len(f.seen()); n != 2 {
		t.Errorf(`a write with version "*" was sent`)
	}
}

// TestRead: a read returns the content and the ETag as sent.
func TestRead(t *testing.T) {
	f := serve(t, reply{status: 200, etag: `"0x8DC1"`, body: "state"})
	data, v, err := openOn(t, f).Read(context.Background(), "k")
	if err != nil || string(data) != "state" || v != `"0x8DC1"` {
		t.Fatalf("Read = %q, %q, %v", data, v, err)
	}
	if seen := f.seen(); len(seen) != 1 || seen[0].method != http.MethodGet || seen[0].path != "/acct/c/k" {
		t.Errorf("Read sent %+v", seen)
	}
}

// TestReadDate: ReadDate tells the Date of the answer, and refuses an
// answer without one or with a time no clock that works gives (as s3's).
func TestReadDate(t *testing.T) {
	f := serve(t, reply{status: 200, etag: `"0x8DC1"`, body: "state", date: "Thu, 03 Dec 2026 10:00:10 GMT"})
	got, err := openOn(t, f).(driver.DateReader).ReadDate(context.Background(), "k")
	if want := time.Date(2026, 12, 3, 10, 0, 10, 0, time.UTC); err != nil || !got.Equal(want) {
		t.Errorf("ReadDate = %v, %v; want %v", got, err, want)
	}
	for _, date := range []string{"none", "Thu, 01 Jan 1970 00:00:00 GMT"} {
		f = serve(t, reply{status: 200, etag: `"0x8DC1"`, body: "state", date: date})
		if got, err := openOn(t, f).(driver.DateReader).ReadDate(context.Background(), "k"); err == nil || !strings.Contains(err.Error(), "no usable Date header") {
			t.Errorf("ReadDate with Date %q = %v, %v; want an error", date, got, err)
		}
	}
}

// TestErrors: each of Azure's answers maps to the driver's vocabulary, the
// message names the location, and the SDK sends each request once.
func TestErrors(t *testing.T) {
	const loc = "azblob://acct/c/k?endpoint=http://127.0.0.1:"
	for _, tt := range []struct {
		name     string
		op       string // "read", "create", "replace", "delete"
		replies  []reply
		is       error // nil: neither sentinel
		retry    bool
		msg      string
		requests int
	}{
		{"create-only on a present blob is 409 on Azure", "create", []reply{{status: 409, code: "BlobAlreadyExists"}}, driver.ErrPrecondition, false, "the blob exists", 1},
		{"stale ETag", "replace", []reply{{status: 412, code: "ConditionNotMet"}}, driver.ErrPrecondition, false, "precondition failed", 1},
		{"replace on a missing blob", "replace", []reply{{status: 404, code: "BlobNotFound"}}, driver.ErrPrecondition, false, "the blob does not exist", 1},
		{"missing blob", "read", []reply{{status: 404, code: "BlobNotFound"}}, driver.ErrNotExist, false, "object does not exist", 1},
		{"read in a missing container", "read", []reply{{status: 404, code: "ContainerNotFound"}}, driver.ErrNotExist, false, `container "c" does not exist`, 1},
		{"write in a missing container", "create", []reply{{status: 404, code: "ContainerNotFound"}}, nil, false, `container "c" does not exist`, 1},
		{"delete in a missing container", "delete", []reply{{status: 404, code: "ContainerNotFound"}}, nil, false, `container "c" does not exist`, 1},
		{"leased by another client", "replace", []reply{{status: 412, code: "LeaseIdMissing"}}, nil, false, "the blob is leased by another client", 1},
		{"forbidden read", "read", []reply{{status: 403, code: "AuthorizationFailure"}}, nil, false, "access denied, check the credentials (shared key from AZURE_STORAGE_KEY)", 1},
		{"bad signature", "create", []reply{{status: 403, code: "AuthenticationFailed"}}, nil, false, "access denied, check the credentials", 1},
		{"server busy", "read", []reply{{status: 503, code: "ServerBusy"}}, nil, true, "ServerBusy", 1},
		{"throttled", "read", []reply{{status: 429, code: "TooManyRequests"}}, nil, true, "TooManyRequests", 1},
		// A 5xx write is settled by reading back: the blob is unchanged.
		{"server error on a write, not landed", "replace", []reply{{status: 500, code: "InternalError"}, {status: 200, etag: `"0x1"`, body: "old"}}, nil, true, "InternalError", 2},
		{"server error on a create, not landed", "create", []reply{{status: 500, code: "OperationTimedOut"}, {status: 404, code: "BlobNotFound"}}, nil, true, "OperationTimedOut", 2},
		{"server error on a write, another write in place", "replace", []reply{{status: 503, code: "ServerBusy"}, {status: 200, etag: `"0x9"`, body: "theirs"}}, driver.ErrPrecondition, false, "another write is in place", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := serve(t, tt.replies...)
			st := openOn(t, f)
			ctx := context.Background()
			var err error
			switch tt.op {
			case "read":
				_, _, err = st.Read(ctx, "k")
			case "create":
				_, err = st.Write(ctx, "k", []byte("new"), "")
			case "replace":
				_, err = st.Write(ctx, "k", []byte("new"), `"0x1"`)
			case "delete":
				err = st.(driver.Deleter).Delete(ctx, "k")
			}
			if err == nil {
				t.Fatal("no error")
			}
			for _, sentinel := range []error{driver.ErrPrecondition, driver.ErrNotExist, driver.ErrNoCredentials} {
				if errors.Is(err, sentinel) != (sentinel == tt.is) {
					t.Errorf("errors.Is(err, %v) = %t: %v", sentinel, !(sentinel == tt.is), err)
				}
			}
			if driver.IsRetryable(err) != tt.retry {
				t.Errorf("IsRetryable = %t, want %t: %v", !tt.retry, tt.retry, err)
			}
			if !strings.Contains(err.Error(), tt.msg) || !strings.Contains(err.Error(), loc) {
				t.Errorf("err = %v\nwant it to contain %q and %q", err, tt.msg, loc)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("err shows the key: %v", err)
			}
			if n := len(f.seen()); n != tt.requests {
				t.Errorf("%d requests, want %d (the SDK must not retry)", n, tt.requests)
			}
		})
	}
}

// TestWriteSettledLanded: a 5xx answer to a write whose bytes are found in
// place when read back is a success, with the version read.
func TestWriteSettledLanded(t *testing.T) {
	f := serve(t, reply{status: 500, code: "OperationTimedOut"}, reply{status: 200, etag: `"0x2"`, body: "new"})
	v, err := openOn(t, f).Write(context.Background(), "k", []byte("new"), `"0x1"`)
	if err != nil || v != `"0x2"` {
		t.Fatalf("Write = %q, %v; want the version read back", v, err)
	}
}

// TestDelete: deleting a blob, present or not, succeeds.
func TestDelete(t *testing.T) {
	f := serve(t, reply{status: 202}, reply{status: 404, code: "BlobNotFound"})
	st := openOn(t, f).(driver.Deleter)
	for range 2 {
		if err := st.Delete(context.Background(), "k"); err != nil {
			t.Fatal(err)
		}
	}
	if seen := f.seen(); len(seen) != 2 || seen[0].method != http.MethodDelete || seen[0].path != "/acct/c/k" {
		t.Errorf("Delete sent %+v", seen)
	}
}

// TestEndpointUnreachable: a refused connection is transient, and named.
func TestEndpointUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing listens there now
	st, _, err := azblobDriver{}.Open("azblob://acct/c/k?endpoint=http://" + addr + "/acct")
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = st.Read(context.Background(), "k")
	if !driver.IsRetryable(err) || !strings.Contains(err.Error(), "endpoint unreachable") {
		t.Errorf("Read = %v, want a retryable \"endpoint unreachable\"", err)
	}
}

// TestCancelled: a cancelled context is reported as such, not as transient.
func TestCancelled(t *testing.T) {
	f := serve(t, reply{status: 200, etag: `"0x1"`, body: "x"})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := openOn(t, f).Read(ctx, "k")
	if !errors.Is(err, context.Canceled) || driver.IsRetryable(err) {
		t.Errorf("Read = %v, want context.Canceled, not retryable", err)
	}
}
