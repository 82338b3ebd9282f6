package minio

import (
	"testing"

	"github.com/objsync/objsync/driver/drivertest"
)

// FuzzDSN: no DSN panics the parser, and no error shows a password.
func FuzzDSN(f *testing.F) {
	drivertest.FuzzDSN(f, func(dsn string) error { _, _, _, err := parseDSN(dsn); return err },
		"minio://AK:s3cr3tpw@127.0.0.1:9000/bkt/k?secure=false&region=us-east-1", "minio://AK:s3cr3tpw@h/bkt/", "minio://AK:s3cr3tpw@h:bad/b/k")
}
