package s3

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/s3compat/s3test"
)

// openOn opens a store on fake with a region of the test's own, so that
// its client is built now, from the test's environment, not shared with
// the other tests.
func openOn(t *testing.T, fake *s3test.Fake) driver.Store {
	t.Helper()
	st, _, err := s3Driver{}.Open("s3://b/k?region=test-" + strings.ToLower(t.Name()) + "&endpoint=" + fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestNoCredentials: with no credentials anywhere, reads, writes and
// deletes fail with ErrNoCredentials, naming the location and the sources
// tried, and send nothing to the store.
func TestNoCredentials(t *testing.T) {
	s3test.WithoutCredentials(t)
	fake := s3test.Serve(t, nil, s3test.Reply{Status: 200, ETag: `"e1"`})
	st := openOn(t, fake)
	_, _, readErr := st.Read(context.Background(), "k")
	_, writeErr := st.Write(context.Background(), "k", []byte("v"), "")
	deleteErr := st.(driver.Deleter).Delete(context.Background(), "k")
	for _, err := range []error{readErr, writeErr, deleteErr} {
		if !errors.Is(err, driver.ErrNoCredentials) {
			t.Errorf("err = %v, want ErrNoCredentials", err)
			continue
		}
		for _, want := range []string{
			"s3://b/k?endpoint=" + fake.URL + ": no credentials found; tried, in order: ",
			"environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY); web identity",
			`profile "default" in ` + os.Getenv("AWS_CONFIG_FILE") + " and " + os.Getenv("AWS_SHARED_CREDENTIALS_FILE"),
			"container endpoint",
			"EC2 instance role (not asked: AWS_EC2_METADATA_DISABLED=true)",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v\nwant it to contain %q", err, want)
			}
		}
		if driver.IsRetryable(err) {
			t.Errorf("missing credentials are retryable: %v", err)
		}
	}
	if n := len(fake.Seen()); n != 0 {
		t.Errorf("the store was sent %d requests without credentials", n)
	}
}

// TestNoCredentialsProfileFirst: a profile named in the DSN is the first
// source the SDK looks at, and the message says so.
func TestNoCredentialsProfileFirst(t *testing.T) {
	s3test.WithoutCredentials(t)
	os.WriteFile(os.Getenv("AWS_CONFIG_FILE"), []byte("[profile ops]\nregion = eu-west-1\n"), 0o600)
	fake := s3test.Serve(t, nil, s3test.Reply{Status: 200, ETag: `"e1"`})
	st, _, err := s3Driver{}.Open("s3://b/k?profile=ops&endpoint=" + fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = st.Read(context.Background(), "k")
	if want := `no credentials found; tried, in order: profile "ops" in `; !errors.Is(err, driver.ErrNoCredentials) || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want ErrNoCredentials containing %q", err, want)
	}
}

// TestNoCredentialsMetadataUnreachable: an instance metadata service that
// does not answer (a closed port on loopback) leaves no credentials too, and
// is retryable, as a service that may answer again.
func TestNoCredentialsMetadataUnreachable(t *testing.T) {
	s3test.WithoutCredentials(t)
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", "http://127.0.0.1:1")
	fake := s3test.Serve(t, nil, s3test.Reply{Status: 200, ETag: `"e1"`})
	_, _, err := openOn(t, fake).Read(context.Background(), "k")
	if want := "; EC2 instance role: "; !errors.Is(err, driver.ErrNoCredentials) || !strings.Contains(err.Error(), want) || !driver.IsRetryable(err) {
		t.Errorf("err = %v, want a retryable ErrNoCredentials containing %q", err, want)
	}
	if n := len(fake.Seen()); n != 0 {
		t.Errorf("the store was sent %d requests without credentials", n)
	}
}

// TestConfiguredCredentialsThatFail: a credential source that is configured
// but fails (here a container endpoint on a closed port) is not "no
// credentials": its own error is reported.
func TestConfiguredCredentialsThatFail(t *testing.T) {
	s3test.WithoutCredentials(t)
	t.Setenv("AWS_CONTAINER_CREDENTIALS_FULL_URI", "http://127.0.0.1:1/credentials")
	fake := s3test.Serve(t, nil, s3test.Reply{Status: 200, ETag: `"e1"`})
	_, _, err := openOn(t, fake).Read(context.Background(), "k")
	if err == nil || errors.Is(err, driver.ErrNoCredentials) || !strings.Contains(err.Error(), "getting credentials: ") {
		t.Errorf("err = %v, want the container endpoint's failure", err)
	}
	if n := len(fake.Seen()); n != 0 {
		t.Errorf("the store was sent %d requests without credentials", n)
	}
}

// TestAccessDeniedIsNotNoCredentials: credentials the store refuses are
// "access denied", not missing credentials.
func TestAccessDeniedIsNotNoCredentials(t *testing.T) {
	fake := s3test.Serve(t, nil, s3test.Reply{Status: 403, Code: "AccessDenied"})
	_, _, err := openOn(t, fake).Read(context.Background(), "k")
	if !strings.Contains(err.Error(), "access denied, check the credentials") || errors.Is(err, driver.ErrNoCredentials) {
		t.Errorf("err = %v, want access denied", err)
	}
}

// records is a slog.Handler that keeps what it is given, at every level.
type records struct {
	mu   sync.Mutex
	list []slog.Record
}

func (r *records) Enabled(context.Context, slog.Level) bool { return true }
func (r *records) WithAttrs([]slog.Attr) slog.Handler       { return r }
func (r *records) WithGroup(string) slog.Handler            { return r }
func (r *records) Handle(_ context.Context, rec slog.Record) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, rec)
	return nil
}

// captureLogs makes slog.Default() keep every record and os.Stderr a file,
// until the test ends. It must come before the client is built: the SDK's
// default logger would keep the os.Stderr of that time.
func captureLogs(t *testing.T) (logged *records, stderr string) {
	logged = &records{}
	saved := slog.Default()
	slog.SetDefault(slog.New(logged))
	t.Cleanup(func() { slog.SetDefault(saved) })
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	savedStderr := os.Stderr
	os.Stderr = f
	t.Cleanup(func() { os.Stderr = savedStderr })
	return logged, f.Name()
}

// checkLogged checks that a record whose message contains text was logged
// at Debug level with the given classification, and that nothing was
// written to stderr.
func checkLogged(t *testing.T, logged *records, stderr, text, classification string) {
	t.Helper()
	logged.mu.Lock()
	defer logged.mu.Unlock()
	var found bool
	for _, rec := range logged.list {
		if !strings.Contains(rec.Message, text) {
			continue
		}
		found = true
		var got string
		rec.Attrs(func(a slog.Attr) bool {
			if a.Key == "classification" {
				got = a.Value.String()
			}
			return true
		})
		if rec.Level != slog.LevelDebug || got != classification {
			t.Errorf("%q logged at %v with classification %q, want DEBUG and %q", rec.Message, rec.Level, got, classification)
		}
	}
	if !found {
		t.Errorf("nothing containing %q reached slog; logged: %v", text, logged.list)
	}
	if written, _ := os.ReadFile(stderr); len(written) > 0 {
		t.Errorf("written to stderr: %s", written)
	}
}

// TestSDKWarningsGoToSlog: the SDK's warning that the instance metadata
// service (a fake on loopback, which knows no IMDSv2 token) makes it fall
// back to IMDSv1 reaches slog.Default() at Debug level, classified WARN, and
// nothing is written to stderr. The instance role found nothing either, so
// the read fails with ErrNoCredentials and the service's answer.
func TestSDKWarningsGoToSlog(t *testing.T) {
	s3test.WithoutCredentials(t)
	var asked atomic.Int32
	metadata := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.NotFound(w, r)
	}))
	defer metadata.Close()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata.URL)
	logged, stderr := captureLogs(t)

	fake := s3test.Serve(t, nil, s3test.Reply{Status: 200, ETag: `"e1"`})
	_, _, err := openOn(t, fake).Read(context.Background(), "k")
	if want := "; container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, AWS_CONTAINER_CREDENTIALS_FULL_URI); EC2 instance role: "; !errors.Is(err, driver.ErrNoCredentials) || !strings.Contains(err.Error(), want) {
		t.Errorf("err = %v, want ErrNoCredentials containing %q", err, want)
	}
	if asked.Load() == 0 {
		t.Fatal("the fake metadata service was not asked")
	}
	checkLogged(t, logged, stderr, "falling back to IMDSv1", "WARN")
}

// TestSDKDebugMessagesGoToSlog: the message of the SDK's that a response
// had no checksum to validate (classified DEBUG by this SDK, WARN by older
// ones), which it writes whatever the log mode, reaches slog.Default()
// rather than stderr.
func TestSDKDebugMessagesGoToSlog(t *testing.T) {
	logged, stderr := captureLogs(t)
	fake := s3test.Serve(t, nil, s3test.Reply{Status: 200, ETag: `"e1"`, Body: "content"})
	st := openOn(t, fake)
	out, err := st.(*store).client.api.GetObject(context.Background(), &s3.GetObjectInput{
		Bucket: aws.String("b"), Key: aws.String("k"), ChecksumMode: types.ChecksumModeEnabled,
	})
	if err != nil {
		t.Fatal(err)
	}
	out.Body.Close()
	checkLogged(t, logged, stderr, "no supported checksum", "DEBUG")
}
