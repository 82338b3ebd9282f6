package gcs

import (
	"testing"

	"github.com/objsync/objsync/driver/drivertest"
)

// FuzzDSN: no DSN panics the parser, and no error shows a password.
func FuzzDSN(f *testing.F) {
	drivertest.FuzzDSN(f, func(dsn string) error { _, _, err := parseDSN(dsn); return err },
		"gs://bucket/key", "gs://AK:s3cr3tpw@bucket/key", "gs://b/k?project=p")
}
