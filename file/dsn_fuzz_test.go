//go:build unix

package file

import (
	"testing"

	"github.com/objsync/objsync/driver/drivertest"
)

// FuzzDSN: no DSN panics the parser, and no error shows a password.
func FuzzDSN(f *testing.F) {
	drivertest.FuzzDSN(f, func(dsn string) error { _, _, err := (fileDriver{}).Open(dsn); return err },
		"file:///var/locks/a", "relative/lock", "file://AK:s3cr3tpw@host/x", "file:///x/y?sync=%zz")
}
