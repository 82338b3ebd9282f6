package azblob

import (
	"testing"

	"github.com/objsync/objsync/driver/drivertest"
)

// FuzzDSN: no DSN panics the parser, and no error shows a password.
func FuzzDSN(f *testing.F) {
	drivertest.FuzzDSN(f, func(dsn string) error { _, _, _, err := parseDSN(dsn); return err },
		"azblob://acct/c/key", "azblob://acct:s3cr3tpw@acct/c/key",
		"azblob://devstoreaccount1/c/k?endpoint=http://127.0.0.1:10000/devstoreaccount1")
}
