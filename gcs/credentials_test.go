package gcs

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/objsync/objsync/driver"
)

// withoutCredentials leaves Application Default Credentials nothing to
// find: GOOGLE_APPLICATION_CREDENTIALS names a missing file, HOME (where
// gcloud's file would be) is the test's own directory, and the metadata
// server, should anything ask it, is a closed port on loopback. It returns
// a store with a client of its own, built at its first request from this
// environment, without an emulator.
func withoutCredentials(t *testing.T) *store {
	t.Setenv("STORAGE_EMULATOR_HOST", "")
	os.Unsetenv("STORAGE_EMULATOR_HOST")
	dir := t.TempDir()
	t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", filepath.Join(dir, "missing.json"))
	t.Setenv("HOME", dir)
	t.Setenv("GCE_METADATA_HOST", "127.0.0.1:1")
	t.Setenv("GCE_METADATA_IP", "127.0.0.1:1")
	return &store{client: &lazyClient{}, bucket: "b"}
}

// checkNoCredentials checks that err wraps ErrNoCredentials, is not
// retryable, and contains each of want.
func checkNoCredentials(t *testing.T, err error, retryable bool, want ...string) {
	t.Helper()
	if !errors.Is(err, driver.ErrNoCredentials) {
		t.Errorf("err = %v, want ErrNoCredentials", err)
		return
	}
	if driver.IsRetryable(err) != retryable {
		t.Errorf("err = %v: retryable %v, want %v", err, !retryable, retryable)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("err = %v\nwant it to contain %q", err, w)
		}
	}
}

// TestNoCredentialsFileMissing: GOOGLE_APPLICATION_CREDENTIALS naming a
// file that does not exist is the only source tried, and says so.
func TestNoCredentialsFileMissing(t *testing.T) {
	st := withoutCredentials(t)
	named := os.Getenv("GOOGLE_APPLICATION_CREDENTIALS")
	_, _, readErr := st.Read(context.Background(), "k")
	_, writeErr := st.Write(context.Background(), "k", []byte("v"), "")
	deleteErr := st.Delete(context.Background(), "k")
	for _, err := range []error{readErr, writeErr, deleteErr} {
		checkNoCredentials(t, err, false,
			"gs://b/k: no credentials found; tried, in order: GOOGLE_APPLICATION_CREDENTIALS ("+named+", which does not exist)")
	}
}

// TestNoCredentialsFromMetadataServer: with neither file, the metadata
// server (a fake on loopback, for a machine without a service account:
// 404) is asked for a token; its refusal is missing credentials, naming the
// three sources, and no request is sent to the store without one.
func TestNoCredentialsFromMetadataServer(t *testing.T) {
	st := withoutCredentials(t)
	os.Unsetenv("GOOGLE_APPLICATION_CREDENTIALS")
	var asked atomic.Int32
	metadata := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		asked.Add(1)
		http.NotFound(w, r)
	}))
	defer metadata.Close()
	host := strings.TrimPrefix(metadata.URL, "http://")
	t.Setenv("GCE_METADATA_HOST", host)
	t.Setenv("GCE_METADATA_IP", host)

	_, _, err := st.Read(context.Background(), "k")
	checkNoCredentials(t, err, false,
		"read gs://b/k: no credentials found; tried, in order: GOOGLE_APPLICATION_CREDENTIALS (not set); "+
			"gcloud's application default credentials ("+filepath.Join(os.Getenv("HOME"), ".config", "gcloud", "application_default_credentials.json")+"); "+
			"GCE metadata server at "+host+": ")
	if asked.Load() == 0 {
		t.Error("the fake metadata server was not asked")
	}
}

// TestNoCredentialsNotOnGoogleCloud: the client library's error when it
// found no file and is not on Google Cloud (which it finds out by asking
// the metadata server's address, so no test makes it) names the sources.
func TestNoCredentialsNotOnGoogleCloud(t *testing.T) {
	st := withoutCredentials(t)
	os.Unsetenv("GOOGLE_APPLICATION_CREDENTIALS")
	libraryErr := errors.New("dialing: credentials: could not find default credentials. See https://cloud.google.com/docs/authentication/external/set-up-adc for more information")
	checkNoCredentials(t, st.clientError("read", "k", libraryErr), false,
		"read gs://b/k: no credentials found; tried, in order: GOOGLE_APPLICATION_CREDENTIALS (not set); gcloud's application default credentials (",
		"); GCE metadata server (not on Google Cloud)")
}

// TestEmulatorErrorsAreNotMissingCredentials: against an emulator, which
// takes no credentials, a missing GOOGLE_APPLICATION_CREDENTIALS file
// changes nothing: the store's errors are its own.
func TestEmulatorErrorsAreNotMissingCredentials(t *testing.T) {
	withoutCredentials(t)
	_, st := newFake(t, reply{status: 403, reason: "forbidden"})
	_, _, err := st.Read(context.Background(), "k")
	if err == nil || errors.Is(err, driver.ErrNoCredentials) || !strings.Contains(err.Error(), "access denied") {
		t.Errorf("err = %v, want access denied", err)
	}
}
