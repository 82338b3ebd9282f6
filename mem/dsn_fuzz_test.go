package mem

import (
	"testing"

	"github.com/objsync/objsync/driver/drivertest"
)

// FuzzDSN: no DSN panics the parser, and no error shows a password.
func FuzzDSN(f *testing.F) {
	drivertest.FuzzDSN(f, func(dsn string) error { _, _, err := (memDriver{}).Open(dsn); return err },
		"mem://ns/key", "mem://AK:s3cr3tpw@ns/k", "mem://ns/k?a=1;b=2")
}
