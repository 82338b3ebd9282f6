//go:build unix

package main

import (
	"fmt"
	"io"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/objsync/objsync"
)

// printer writes all of objsync's output, so that the password of a DSN
// (minio://ACCESS:SECRET@HOST/...) never reaches a screen or a log,
// whatever a driver or a location puts into a message.
type printer struct {
	secrets []string
}

var out printer

// hideSecretsOf records the password in dsn's user information, as written
// and decoded, to be masked in everything printed from now on.
func (p *printer) hideSecretsOf(dsn string) {
	_, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return
	}
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		rest = rest[:end]
	}
	at := strings.LastIndex(rest, "@")
	if at < 0 {
		return
	}
	_, password, ok := strings.Cut(rest[:at], ":")
	if !ok || password == "" {
		return
	}
	p.secrets = append(p.secrets, password)
	if plain, err := url.PathUnescape(password); err == nil && plain != password {
		p.secrets = append(p.secrets, plain)
	}
}

func (p *printer) print(w io.Writer, s string) {
	for _, secret := range p.secrets {
		s = strings.ReplaceAll(s, secret, "xxxxx")
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
func short(d time.Duration) string {
	switch {
	case d >= time.Minute:
		return d.Round(time.Second).String()
	case d >= time.Second:
		return d.Round(10 * time.Millisecond).String()
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond).String()
	}
	return d.Round(time.Microsecond).String()
}
