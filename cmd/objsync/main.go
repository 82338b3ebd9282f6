//go:build unix

package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/objsync/objsync/driver"
	_ "github.com/objsync/objsync/file"
	_ "github.com/objsync/objsync/gcs"
	_ "github.com/objsync/objsync/minio"
	_ "github.com/objsync/objsync/s3"
)

// Exit codes. objsync's own outcomes sit just below 128, where timeout(1),
// env(1) and docker run put theirs, so that lock can pass its command's
// status through with little ambiguity; see the package documentation.
const (
	exitUsage       = 2
	exitUnsafe      = 122
	exitLost        = 123
	exitNotAcquired = 124
	exitFailed      = 125
	exitCannotRun   = 126
	exitNotFound    = 127
	exitSignal      = 128 // plus the signal's number
)

const usage = `objsync: distributed locks on object storage (S3, MinIO, GCS or a directory)

Usage:
  objsync lock [flags] DSN -- COMMAND [ARGS...]    run COMMAND while holding the lock
  objsync status [--json] [--for DURATION] DSN     show who holds the lock
  objsync unlock --force DSN                       break a stuck lock
  objsync check DSN                                test that the store is safe for objsync
  objsync elect [flags] --value V DSN -- COMMAND   run COMMAND while leading an election
  objsync leader [--json] [--watch|--confirm] DSN  show the leader of an election
  objsync bench [flags] DSN                        measure a lock's speed and cost on its store

Run 'objsync COMMAND --help' for a command's flags and an example.

DSNs (the scheme picks the driver; --driver NAME is for a DSN without one):
  s3://BUCKET/KEY?region=R&endpoint=URL            Amazon S3, R2, Ceph RGW...
  minio://[ACCESS:SECRET@]HOST:PORT/BUCKET/KEY?secure=false
  gs://BUCKET/KEY                                  Google Cloud Storage
  file:///ABS/PATH, or a plain path                a directory on this host

Example:
  objsync lock --ttl 1m --value "nightly report" s3://ops/locks/nightly -- ./nightly.sh

Exit codes:
  0      success (lock: the command exited 0)
  N      lock: the command's own exit status, passed through
  2      usage error: bad flag, bad DSN, unknown scheme or driver
  122    check: the store ignores conditional writes; unsafe for objsync;
         bench: it saw two holders at once, or fences out of order
  123    lock: the lock was lost while the command ran; the command was stopped
  124    lock: not acquired (held and --try, or --timeout elapsed); leader: none
  125    objsync failed: store unreachable, access denied, not a lock...;
         bench: the lock is held
  126    lock: the command was found but could not be run
  127    lock: the command was not found
  128+N  lock: the command died of signal N, or objsync got it while waiting;
         leader --watch or --confirm, bench: objsync got signal N
`

var commands = map[string]func(args []string) error{
	"lock":   runLock,
	"status": runStatus,
	"unlock": runUnlock,
	"check":  runCheck,
	"elect":  runElect,
	"leader": runLeader,
	"bench":  runBench,
}

// guardianArg0 is the argv[0] that makes objsync a guardian (see
// runGuardian): not a name a user would give the binary.
const guardianArg0 = "objsync (guardian)"

func main() {
	if len(os.Args) == 1 && os.Args[0] == guardianArg0 {
		os.Exit(runGuardian())
	}
	os.Exit(exitCode(run(os.Args[1:])))
}

func run(args []string) error {
	// Mask passwords wherever a DSN turns up, even as a misplaced flag's
	// value in a usage error.
	for _, arg := range args {
		out.hideSecretsOf(arg)
	}
	if len(args) == 0 {
		return usageErrorf("missing command (lock, status, unlock, check, elect, leader or bench; see 'objsync --help')")
	}
	switch name := args[0]; name {
	case "-h", "-help", "--help", "help":
		if name == "help" && len(args) > 1 && commands[args[1]] != nil {
			return commands[args[1]]([]string{"--help"})
		}
		out.print(os.Stdout, usage)
		return nil
	default:
		cmd := commands[name]
		if cmd == nil {
			return usageErrorf("unknown command %q (lock, status, unlock, check, elect, leader or bench; see 'objsync --help')", name)
		}
		return cmd(args[1:])
	}
}

// exitError ends objsync with an exit code, and a message unless err is
// nil.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func usageErrorf(format string, args ...any) error {
	return &exitError{exitUsage, fmt.Errorf(format, args...)}
}

// exitCode prints err, if any, as one line on stderr and returns the exit
// code it calls for. An error that is not an exitError is objsync's own
// failure.
func exitCode(err error) int {
	if err == nil {
		return 0
	}
	var e *exitError
	if !errors.As(err, &e) {
		e = &exitError{exitFailed, err}
	}
	if e.err != nil {
		out.errorf("%v", e.err)
	}
	return e.code
}

// newFlagSet returns a FlagSet that reports nothing itself: parseArgs
// prints errors as one line and help on stdout.
func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	return fs
}

// flagSet reports whether the flag called name was given.
func flagSet(fs *flag.FlagSet, name string) (set bool) {
	fs.Visit(func(f *flag.Flag) { set = set || f.Name == name })
	return set
}

// driverFlag defines --driver, which every command has.
func driverFlag(fs *flag.FlagSet) *string {
	return fs.String("driver", "", "open the DSN with the driver `name`d; for a DSN whose scheme names no driver (a path: file). A DSN whose scheme names another driver is refused")
}

// parseArgs parses fs's flags wherever they stand before "--" (the flag
// package stops at the first other argument, so parsing resumes after each
// one) and returns the other arguments and, if withCommand, the command
// after "--". help is printed, with the flags, for --help.
func parseArgs(fs *flag.FlagSet, help string, args []string, withCommand bool) (positional, command []string, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				out.print(os.Stdout, help+"\nFlags:\n")
				fs.SetOutput(os.Stdout)
				fs.PrintDefaults()
				return nil, nil, &exitError{code: 0}
			}
			return nil, nil, usageErrorf("%s: %v (see 'objsync %s --help')", fs.Name(), err, fs.Name())
		}
		parsed := len(args) - len(fs.Args())
		if parsed > 0 && args[parsed-1] == "--" {
			command = fs.Args()
			break
		}
		if args = fs.Args(); len(args) == 0 {
			break
		}
		positional = append(positional, args[0])
		args = args[1:]
	}
	switch {
	case len(positional) != 1:
		return nil, nil, usageErrorf("%s: want one DSN, got %d arguments (see 'objsync %s --help')", fs.Name(), len(positional), fs.Name())
	case withCommand && len(command) == 0:
		return nil, nil, usageErrorf("%s: missing -- COMMAND (see 'objsync %s --help')", fs.Name(), fs.Name())
	case !withCommand && command != nil:
		return nil, nil, usageErrorf("%s: unexpected arguments after -- (see 'objsync %s --help')", fs.Name(), fs.Name())
	}
	return positional, command, nil
}

// schemes maps the schemes of DSNs to the drivers that serve them.
var schemes = map[string]string{"s3": "s3", "minio": "minio", "gs": "gcs", "gcs": "gcs", "file": "file"}

// openStore opens the store and key that dsn names, with the driver its
// scheme names. A DSN without a scheme is a path, for the file driver.
// --driver (driverName) names the driver for a DSN whose scheme names none;
// it never reads one driver's DSN with another, which would misread it (a
// file driver taking s3://b/k for the path ./s3:/b/k).
func openStore(dsn, driverName string) (driver.Store, string, error) {
	byScheme := "file"
	scheme, hasScheme := schemeOf(dsn)
	if hasScheme {
		byScheme = schemes[strings.ToLower(scheme)]
	}
	if _, ok := driver.Lookup(driverName); driverName != "" && !ok {
		return nil, "", usageErrorf("unknown driver %q (known: %s)", driverName, strings.Join(driver.Drivers(), ", "))
	}
	switch {
	case driverName == "" && byScheme == "":
		return nil, "", usageErrorf("unknown scheme %q in the DSN; known: s3://, minio://, gs://, file:// or a plain path (or choose a driver with --driver)", scheme)
	case driverName == "":
		driverName = byScheme
	case byScheme != "" && byScheme != driverName:
		what := "a plain path, which is the file driver's"
		if hasScheme {
			what = fmt.Sprintf("a %s: DSN, which is the %s driver's", strings.ToLower(scheme), byScheme)
		}
		return nil, "", usageErrorf("--driver %s cannot open %s; drop --driver, or write the DSN for %s", driverName, what, driverName)
	}
	d, _ := driver.Lookup(driverName)
	store, key, err := d.Open(dsn)
	if err != nil {
		return nil, "", &exitError{exitUsage, err}
	}
	return store, key, nil
}

// schemeOf returns the scheme of a DSN written as a URL: a name followed by
// "://", or "file:". Anything else, "c:x" included, is a path.
func schemeOf(dsn string) (string, bool) {
	scheme, rest, ok := strings.Cut(dsn, ":")
	if !ok || scheme == "" || strings.TrimLeft(strings.ToLower(scheme), "abcdefghijklmnopqrstuvwxyz0123456789+-.") != "" ||
		(!strings.HasPrefix(rest, "//") && !strings.EqualFold(scheme, "file")) {
		return "", false
	}
	return scheme, true
}
