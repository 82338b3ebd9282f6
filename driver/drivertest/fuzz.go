package drivertest

import (
	"net/url"
	"strings"
	"testing"

	"github.com/objsync/objsync/driver"
)

// FuzzDSN fuzzes a driver's DSN parser, parse, from the seeds given: no
// DSN may panic it, and no error may show the password of a DSN's user
// information. parse is Driver.Open, or the function of the driver that
// Open calls without building a client (so that fuzzing does not build a
// client per input).
func FuzzDSN(f *testing.F, parse func(dsn string) error, seeds ...string) {
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, dsn string) {
		err := parse(dsn)
		if err == nil {
			return
		}
		u, uerr := url.Parse(dsn)
		if uerr != nil || u.User == nil {
			return
		}
		// Only a password that stands once in the DSN, and is long enough
		// to be told apart, can be looked for in a message; and not one
		// that the DSN, redacted, shows anyway (re-encoded, the byte 0x80
		// and "00000" read "%8000000", which holds the password 000000).
		if pw, ok := u.User.Password(); ok && len(pw) >= 6 && strings.Count(dsn, pw) == 1 &&
			!strings.Contains(driver.Redact(dsn), pw) && strings.Contains(err.Error(), pw) {
			t.Fatalf("the error shows the DSN's password %q: %v", pw, err)
		}
	})
}
