package gcs

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"cloud.google.com/go/storage"

	"github.com/objsync/objsync/driver"
)

// credentialsEnv names the file of credentials that comes first among
// Application Default Credentials, and is then the only one tried.
const credentialsEnv = "GOOGLE_APPLICATION_CREDENTIALS"

// noCredentials returns the error for op on key when err says that
// Application Default Credentials found none, and nil otherwise. The client
// library has no sentinel for it: its messages and the files it looks for
// tell. In its order it tries the file named by GOOGLE_APPLICATION_CREDENTIALS
// (and only that one when the variable is set), gcloud's file, and the
// metadata server, which it asks only on Google Cloud or when
// GCE_METADATA_HOST says where it is.
func (s *store) noCredentials(op, key string, err error) error {
	loc := s.Location(key)
	if named := os.Getenv(credentialsEnv); named != "" {
		if _, statErr := os.Stat(named); errors.Is(err, fs.ErrNotExist) && errors.Is(statErr, fs.ErrNotExist) {
			return driver.NoCredentials(op, loc, []string{fmt.Sprintf("%s (%s, which does not exist)", credentialsEnv, named)}, nil)
		}
		return nil
	}
	if _, statErr := os.Stat(gcloudFile()); !errors.Is(statErr, fs.ErrNotExist) {
		return nil
	}
	tried := []string{credentialsEnv + " (not set)", "gcloud's application default credentials (" + gcloudFile() + ")"}
	switch {
	case strings.Contains(err.Error(), "could not find default credentials"):
		return driver.NoCredentials(op, loc, append(tried, "GCE metadata server (not on Google Cloud)"), nil)
	case strings.Contains(err.Error(), "credentials: cannot fetch token: "):
		server := "GCE metadata server"
		if host := os.Getenv("GCE_METADATA_HOST"); host != "" {
			server += " at " + host
		}
		err = driver.NoCredentials(op, loc, append(tried, server), err)
		if storage.ShouldRetry(err) { // a metadata server that may answer again
			return driver.Retryable(err)
		}
		return err
	}
	return nil
}

// gcloudFile is where gcloud keeps application default credentials, and
// where the client library looks for them.
func gcloudFile() string {
	if runtime.GOOS == "windows" {
		return filepath.Join(os.Getenv("APPDATA"), "gcloud", "application_default_credentials.json")
	}
	home, _ := os.UserHomeDir()
	return filepath.Join(home, ".config", "gcloud", "application_default_credentials.json")
}
