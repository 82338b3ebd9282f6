//go:build unix

package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/objsync/objsync"
)

// printer writes all of objsync's output, so that the password of a DSN
// (minio://ACCESS:SECRET@HOST/..., or an endpoint=http://U:SECRET@HOST in
// its query) never reaches a screen or a log, whatever a driver or a
// location puts into a message, quoted or escaped.
type printer struct {
	// inURL are the forms of the passwords (as written, decoded, quoted
	// by Go, JSON or a shell, escaped by net/url) masked where they stand
	// as a URL's password: after ":" and before "@", or their
	// percent-encodings.
	inURL []string
	// bare are those of the forms at least minBare bytes long, masked
	// wherever they appear.
	bare []string
}

// minBare is the length from which a password is masked wherever it
// appears, not only in a URL's user info: shorter ones, "1" or "true", are
// too likely to turn up in other output, which masking them would corrupt
// (status --json's "true").
const minBare = 8

// mask replaces a password.
const mask = "xxxxx"

var out printer

// hideSecretsOf records the passwords in the user information of the URLs
// in arg (a DSN, and an endpoint in its query, percent-encoded or not), to
// be masked in everything printed from now on.
func (p *printer) hideSecretsOf(arg string) {
	texts := []string{arg}
	if plain, err := url.QueryUnescape(arg); err == nil && plain != arg {
		texts = append(texts, plain)
	}
	for _, text := range texts {
		for {
			_, after, ok := strings.Cut(text, "://")
			if !ok {
				break
			}
			written, parsed := userInfo(after)
			for _, info := range []string{written, parsed} {
				if _, password, ok := strings.Cut(info, ":"); ok && password != "" {
					p.addPassword(password)
				}
			}
			text = after
		}
	}
	// Longest first, so that no form is masked in part for being
	// another's.
	for _, forms := range []*[]string{&p.inURL, &p.bare} {
		slices.SortFunc(*forms, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
		*forms = slices.Compact(*forms)
	}
}

// userInfo returns the user information of the URL whose text follows
// "://" in rest (up to the next "://", that of a URL in its query): as
// written, up to the last "@", for a password may hold a /, ? or # that is
// not percent-encoded; and as url.Parse reads it, up to the last "@"
// before the first /, ? or #. They differ when a password holds those, or
// the path an "@".
func userInfo(rest string) (written, parsed string) {
	if end := strings.Index(rest, "://"); end >= 0 {
		rest = rest[:end]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		written = rest[:at]
	}
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		rest = rest[:end]
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		parsed = rest[:at]
	}
	return written, parsed
}

// addPassword records the forms of password that output may show.
func (p *printer) addPassword(password string) {
	plains := []string{password}
	if plain, err := url.PathUnescape(password); err == nil && plain != password {
		plains = append(plains, plain)
	}
	for _, plain := range plains {
		quoted := strconv.Quote(plain)
		asJSON, _ := json.Marshal(plain)
		forms := []string{
			plain,
			quoted[1 : len(quoted)-1],
			string(asJSON[1 : len(asJSON)-1]),
			strings.ReplaceAll(plain, "'", `'\''`), // shellQuote's
			strings.TrimPrefix(url.UserPassword("", plain).String(), ":"), // url.URL's
			url.QueryEscape(plain),
		}
		p.inURL = append(p.inURL, forms...)
		if len(plain) >= minBare {
			p.bare = append(p.bare, forms...)
		}
	}
}

func (p *printer) print(w io.Writer, s string) {
	for _, secret := range p.inURL {
		for _, around := range [][2]string{{":", "@"}, {"%3A", "%40"}, {"%3a", "%40"}} {
			s = strings.ReplaceAll(s, around[0]+secret+around[1], around[0]+mask+around[1])
		}
	}
	for _, secret := range p.bare {
		s = strings.ReplaceAll(s, secret, mask)
	}
	io.WriteString(w, s)
}

func (p *printer) printf(format string, args ...any) {
	p.print(os.Stdout, fmt.Sprintf(format, args...))
}

// errorf prints one line on stderr, prefixed "objsync: ".
func (p *printer) errorf(format string, args ...any) {
	msg := withoutPrefix(fmt.Sprintf(format, args...))
	p.print(os.Stderr, "objsync: "+strings.ReplaceAll(msg, "\n", "; ")+"\n")
}

// message returns err's text without the "objsync: " that errors of
// package objsync start with, for messages that have their own.
func message(err error) string { return withoutPrefix(err.Error()) }

// withoutPrefix drops the "objsync: " that starts msg or any part of it
// (after ": ", or a line of errors joined), which errors of package
// objsync carry when they wrap others or are wrapped: objsync's messages
// say it once, first.
func withoutPrefix(msg string) string {
	for _, from := range []string{": objsync: ", "\nobjsync: "} {
		for strings.Contains(msg, from) {
			msg = strings.ReplaceAll(msg, from, from[:len(from)-len("objsync: ")])
		}
	}
	for {
		trimmed, ok := strings.CutPrefix(msg, "objsync: ")
		if !ok {
			return msg
		}
		msg = trimmed
	}
}

// describe says in a few words who holds the lock in st.
func describe(st objsync.State) string {
	switch {
	case !st.Exists:
		return "free (never acquired)"
	case !st.Held:
		return fmt.Sprintf("free (last fence %d)", st.Fence)
	}
	holder := fmt.Sprintf("host %s, pid %d", printable(st.Host), st.PID)
	if st.Value != "" {
		holder = fmt.Sprintf("%q on %s", st.Value, holder)
	}
	return fmt.Sprintf("held by %s, fence %d, since %s (holder's clock)", holder, st.Fence, wallTime(st.AcquiredAt))
}

// printable returns s, or s quoted if it holds characters that could play
// tricks on a terminal. Host names come from the lock object, which anyone
// who may write the store can fill.
func printable(s string) string {
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsGraphic(r) || unicode.IsSpace(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func wallTime(t time.Time) string { return t.Local().Format("2006-01-02 15:04:05 MST") }

// short formats d for people, to about three significant digits.
func short(d time.Duration) string { return d.Round(shortUnit(d)).String() }

// shortFloor is short rounded down, for lower bounds: "at least 1m34s"
// must not say 1m35s of 1m34.6s.
func shortFloor(d time.Duration) string { return d.Truncate(shortUnit(d)).String() }

// shortUnit is what short rounds d to.
func shortUnit(d time.Duration) time.Duration {
	switch {
	case d >= time.Minute:
		return time.Second
	case d >= time.Second:
		return 10 * time.Millisecond
	case d >= time.Millisecond:
		return 10 * time.Microsecond
	}
	return time.Microsecond
}
