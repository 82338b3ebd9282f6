package driver_test

import (
	"context"
	"errors"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/objsync/objsync/driver"
)

type nopDriver struct{}

func (nopDriver) Open(string) (driver.Store, string, error) { return nil, "", nil }

func expectPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s did not panic", what)
		}
	}()
	f()
}

func TestRegister(t *testing.T) {
	driver.Register("test-b", nopDriver{})
	driver.Register("test-a", nopDriver{})
	expectPanic(t, "a duplicate name", func() { driver.Register("test-a", nopDriver{}) })
	expectPanic(t, "a nil driver", func() { driver.Register("test-nil", nil) })
	if got := driver.Drivers(); !slices.Equal(got, []string{"test-a", "test-b"}) {
		t.Fatalf("Drivers() = %v", got)
	}
	if _, ok := driver.Lookup("test-nil"); ok {
		t.Fatal("a nil driver was registered")
	}
	if d, ok := driver.Lookup("test-a"); !ok || d != (nopDriver{}) {
		t.Fatalf("Lookup = %v, %v", d, ok)
	}
}

func TestRetryable(t *testing.T) {
	base := context.DeadlineExceeded
	err := driver.Retryable(base)
	if !driver.IsRetryable(err) || !errors.Is(err, base) || err.Error() != base.Error() {
		t.Fatalf("Retryable(%v) = %v", base, err)
	}
	if driver.IsRetryable(base) || driver.Retryable(nil) != nil {
		t.Fatal("unmarked error is retryable, or nil was wrapped")
	}
}

func TestCheckQuery(t *testing.T) {
	q, _ := url.ParseQuery("region=x&regoin=y&zz=1")
	err := driver.CheckQuery(q, "region", "endpoint")
	want := `unknown DSN parameter "regoin", "zz" (known: region, endpoint)`
	if err == nil || err.Error() != want {
		t.Fatalf("CheckQuery err = %v, want %s", err, want)
	}
	if err := driver.CheckQuery(q, "region", "regoin", "zz"); err != nil {
		t.Fatal(err)
	}
	// A driver without parameters says so, rather than "(known: )".
	err = driver.CheckQuery(q)
	want = `unknown DSN parameter "region", "regoin", "zz" (this driver takes no parameters)`
	if err == nil || err.Error() != want {
		t.Fatalf("CheckQuery without parameters: err = %v, want %s", err, want)
	}
}

// TestParseQuery: a query that does not decode is refused, not shortened,
// and the error never shows a value.
func TestParseQuery(t *testing.T) {
	q, err := driver.ParseQuery("endpoint=http%3A%2F%2F127.0.0.1%3A9000&region=eu+west&&path_style", "endpoint", "region", "path_style")
	if err != nil || q.Get("endpoint") != "http://127.0.0.1:9000" || q.Get("region") != "eu west" || !q.Has("path_style") {
		t.Fatalf("ParseQuery = %v, %v", q, err)
	}
	const secret = "s3cr3t"
	for raw, want := range map[string]string{
		"endpoint=http%zz://" + secret:        `DSN parameter "endpoint" has an invalid %-escape`,
		"region=a;endpoint=" + secret:         "use '&'",
		"%zz=" + secret:                       "a parameter name in the DSN's query has an invalid %-escape",
		"region=x&regoin=" + secret + "&zz=1": `unknown DSN parameter "regoin", "zz" (known: endpoint, region)`,
	} {
		_, err := driver.ParseQuery(raw, "endpoint", "region")
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), secret) {
			t.Errorf("ParseQuery(%q) = %v, want an error with %q and no value", raw, err, want)
		}
	}
}

func TestRedact(t *testing.T) {
	for dsn, want := range map[string]string{
		"minio://AK:s3cr3t@host:9000/b/k":   "minio://AK:xxxxx@host:9000/b/k",
		"file://AK:s3cr3t@host/x":           "file://AK:xxxxx@host/x",
		"//:000000@":                        "//:xxxxx@",
		"minio://AK:s3cr3t@host:bad/b/k":    "minio://AK:xxxxx@host:bad/b/k", // not a URL
		"s3://bucket/key?endpoint=http://x": "s3://bucket/key?endpoint=http://x",
		"/plain/path":                       "/plain/path",
	} {
		if got := driver.Redact(dsn); got != want {
			t.Errorf("Redact(%q) = %q, want %q", dsn, got, want)
		}
	}
}

func TestShared(t *testing.T) {
	var s driver.Shared[string, *int]
	builds := 0
	build := func() (*int, error) { builds++; v := builds; return &v, nil }
	a, _ := s.Get("x", build)
	for range 1000 {
		if b, _ := s.Get("x", build); b != a {
			t.Fatal("a second Get built a new value")
		}
	}
	fail := errors.New("no")
	if _, err := s.Get("y", func() (*int, error) { return nil, fail }); err != fail {
		t.Fatal(err)
	}
	if _, err := s.Get("y", build); err != nil || builds != 2 || s.Len() != 2 {
		t.Fatalf("after a failed build: err %v, builds %d, len %d", err, builds, s.Len())
	}
}

type limited struct {
	driver.Store
	interval time.Duration
}

func (l limited) WriteInterval() time.Duration { return l.interval }

func TestWriteInterval(t *testing.T) {
	for _, tc := range []struct {
		store driver.Store
		want  time.Duration
	}{
		{nil, time.Second}, // says nothing: the strictest limit known
		{limited{nil, 0}, 0},
		{limited{nil, 3 * time.Second}, 3 * time.Second},
		{limited{nil, -time.Second}, 0},
	} {
		if got := driver.WriteInterval(tc.store); got != tc.want {
			t.Errorf("WriteInterval(%#v) = %v, want %v", tc.store, got, tc.want)
		}
	}
}

// TestNoCredentials: the error says plainly that no credentials were found,
// names the location and the sources in order, and wraps the cause.
func TestNoCredentials(t *testing.T) {
	cause := errors.New("metadata server unreachable")
	err := driver.NoCredentials("read", "s3://b/k", []string{"AWS_ACCESS_KEY_ID", "~/.aws/credentials"}, cause)
	want := "read s3://b/k: no credentials found; tried, in order: AWS_ACCESS_KEY_ID; ~/.aws/credentials: metadata server unreachable"
	if err.Error() != want {
		t.Errorf("NoCredentials = %q, want %q", err, want)
	}
	if !errors.Is(err, driver.ErrNoCredentials) || !errors.Is(err, cause) {
		t.Errorf("NoCredentials does not wrap ErrNoCredentials and its cause: %v", err)
	}
	err = driver.NoCredentials("write", "gs://b/k", []string{"GOOGLE_APPLICATION_CREDENTIALS"}, nil)
	if want := "write gs://b/k: no credentials found; tried, in order: GOOGLE_APPLICATION_CREDENTIALS"; err.Error() != want {
		t.Errorf("NoCredentials without a cause = %q, want %q", err, want)
	}
}
