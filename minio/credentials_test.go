package minio

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/s3compat/s3test"
)

// openOn opens a store on fake with a region of the test's own, so that
// its client is built now, not shared with the other tests.
func openOn(t *testing.T, fake *s3test.Fake, userinfo string) driver.Store {
	t.Helper()
	host := strings.TrimPrefix(fake.URL, "http://")
	st, _, err := minioDriver{}.Open("minio://" + userinfo + host + "/bkt/k?secure=false&region=test-" + strings.ToLower(t.Name()))
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// TestNoCredentials: with no credentials anywhere the requests go without
// them, as before, and when the store refuses them the error wraps
// ErrNoCredentials and names the sources tried rather than "access denied".
func TestNoCredentials(t *testing.T) {
	s3test.WithoutCredentials(t)
	fake := s3test.Serve(t, nil, s3test.Reply{Status: 403, Code: "AccessDenied"})
	st := openOn(t, fake, "")
	_, _, readErr := st.Read(context.Background(), "k")
	_, writeErr := st.Write(context.Background(), "k", []byte("v"), "")
	for _, err := range []error{readErr, writeErr} {
		if !errors.Is(err, driver.ErrNoCredentials) {
			t.Errorf("err = %v, want ErrNoCredentials", err)
			continue
		}
		for _, want := range []string{
			st.Location("k") + ": no credentials found; tried, in order: the DSN's user information; environment (MINIO_ROOT_USER",
			`alias "s3" in ` + os.Getenv("MINIO_SHARED_CREDENTIALS_FILE"),
			`profile "default" in ` + os.Getenv("AWS_CONFIG_FILE"),
			"EC2 instance role (not asked: AWS_EC2_METADATA_DISABLED=true): the store refused the request sent without them: AccessDenied",
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v\nwant it to contain %q", err, want)
			}
		}
	}
	for _, r := range fake.Seen() {
		if auth := r.Header.Get("Authorization"); auth != "" {
			t.Errorf("%s %s was signed: %s", r.Method, r.Path, auth)
		}
	}
}

// TestAnonymousRequests: without credentials, a store that lets anonymous
// requests through (a public bucket) still serves them.
func TestAnonymousRequests(t *testing.T) {
	s3test.WithoutCredentials(t)
	fake := s3test.Serve(t, nil, s3test.Reply{Status: 200, ETag: `"e1"`, Body: "content"})
	if _, _, err := openOn(t, fake, "").Read(context.Background(), "k"); err != nil {
		t.Fatal(err)
	}
}

// TestRefusedCredentialsAreAccessDenied: keys that the store refuses, from
// the DSN or from the environment (TestMain's), are "access denied", not
// missing credentials.
func TestRefusedCredentialsAreAccessDenied(t *testing.T) {
	for _, userinfo := range []string{accessKey + ":" + secretKey + "@", ""} {
		fake := s3test.Serve(t, nil, s3test.Reply{Status: 403, Code: "AccessDenied"})
		_, _, err := openOn(t, fake, userinfo).Read(context.Background(), "k")
		if !strings.Contains(err.Error(), "access denied, check the credentials: AccessDenied") || errors.Is(err, driver.ErrNoCredentials) {
			t.Errorf("keys in the DSN %v: err = %v, want access denied", userinfo != "", err)
		}
	}
}

// TestMetadataDisabled: with AWS_EC2_METADATA_DISABLED=true the IAM source
// does not ask the instance metadata service (a fake on loopback here),
// like the AWS SDK; without it, it does.
func TestMetadataDisabled(t *testing.T) {
	s3test.WithoutCredentials(t)
	var asked atomic.Int32
	metadata := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.NotFound(w, r)
	}))
	defer metadata.Close()
	iam := &iamUnlessMetadataDisabled{IAM: credentials.IAM{Endpoint: metadata.URL}}
	if _, err := iam.Retrieve(); !errors.Is(err, errMetadataDisabled) || asked.Load() != 0 {
		t.Errorf("metadata disabled: err = %v, %d requests to the metadata service", err, asked.Load())
	}
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	if _, err := iam.Retrieve(); err == nil || asked.Load() == 0 {
		t.Errorf("metadata enabled: err = %v, %d requests to the metadata service", err, asked.Load())
	}
}
