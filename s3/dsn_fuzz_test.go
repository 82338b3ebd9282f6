package s3

import (
	"testing"

	"github.com/objsync/objsync/driver/drivertest"
)

// FuzzDSN: no DSN panics the parser, and no error shows a password.
func FuzzDSN(f *testing.F) {
	drivertest.FuzzDSN(f, func(dsn string) error { _, _, _, err := parseDSN(dsn); return err },
		"s3://b/k?region=us-east-1&endpoint=http://127.0.0.1:9000", "s3://AK:s3cr3tpw@b/k", "s3://b/k?endpoint=http://AK:s3cr3tpw@host")
}
