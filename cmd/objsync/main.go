//go:build unix

package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"runtime/debug"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	_ "github.com/objsync/objsync/azblob"
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
	exitNotAcquired = 124 // lock's default; --conflict-exit-code changes it
	exitFailed      = 125
	exitCannotRun   = 126
	exitNotFound    = 127
	exitSignal      = 128 // plus the signal's number
)

// status's exit codes, which say what it found: 0 like test(1) for the
// question "is it held?", and codes clear of the usage error's 2.
const (
	exitStatusHeld   = 0
	exitStatusFree   = 1
	exitStatusAbsent = 3
)

const usage = `objsync: distributed locks on object storage (S3, MinIO, GCS or a directory)

Usage:
  objsync lock [flags] DSN -- COMMAND [ARGS...]    run COMMAND while holding the lock
  objsync lock [flags] DSN -c 'COMMAND STRING'     the same, COMMAND run by sh -c
  objsync status [--json] [--for DURATION] DSN     show who holds the lock
  objsync unlock --force DSN                       break a stuck lock
  objsync check [--json] [--write-rate] DSN        test that the store is safe for objsync
  objsync elect [flags] --value V DSN -- COMMAND   run COMMAND while leading an election
  objsync leader [--json] [--watch|--confirm] DSN  show the leader of an election
  objsync bench [flags] DSN                        measure a lock's speed and cost on its store
  objsync completion bash|zsh|fish|powershell      print a shell completion script
  objsync help [COMMAND], objsync --version

Run 'objsync COMMAND --help' for a command's flags and an example. Flags
may come before or after the DSN; everything after -- is the command.
Durations are Go durations (90s, 1m30s) or numbers of seconds (5, 0.5).
lock and elect take flock(1)'s -n (--try), -w (--timeout), -E
(--conflict-exit-code) and -c. The global -v (--verbose) logs on stderr,
as text or with --log-format json.

DSNs (the scheme picks the driver; --driver NAME is for a DSN without one):
  s3://BUCKET/KEY?region=R&endpoint=URL            Amazon S3, R2, Ceph RGW...
  minio://[ACCESS:SECRET@]HOST:PORT/BUCKET/KEY?secure=false
  gs://BUCKET/KEY                                  Google Cloud Storage
  azblob://ACCOUNT/CONTAINER/KEY?endpoint=URL      Azure Blob Storage
  file:///ABS/PATH, or a plain path                a directory on this host

Example:
  objsync lock --ttl 1m --value "nightly report" s3://ops/locks/nightly -- ./nightly.sh
  objsync lock -n -E 0 --quiet /var/lock/backup -c 'backup --all'   # skip if running

Exit codes:
  0      success (lock: the command exited 0; status: the lock is held)
  N      lock: the command's own exit status, passed through
  1      status: the lock is free (released)
  2      usage error: bad flag, bad DSN, unknown scheme or driver
  3      status: no lock object (never acquired)
  122    check: a required behaviour failed: the store is unsafe for objsync;
         bench: it saw two holders at once, or fences out of order
  123    lock: the lock was lost while the command ran; the command was stopped
  124    lock: not acquired (held and --try, or --timeout elapsed; -E changes
         it); leader: none
  125    objsync failed: store unreachable, access denied, not a lock...;
         bench: the lock is held
  126    lock: the command was found but could not be run
  127    lock: the command was not found
  128+N  lock: the command died of signal N, or objsync got it while waiting;
         status, leader, unlock, bench: objsync got signal N
`

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
	root := newRootCommand()
	line := respell(root, args)
	switch {
	case line.dashFirst:
		return usageErrorf("-- before the command: write the command first, as in 'objsync lock [flags] DSN -- COMMAND' (see 'objsync --help')")
	case (line.cmd.Name() == "lock" || line.cmd.Name() == "elect") && !line.dashes && !line.shell && len(line.operands) > 2:
		// Before cobra, which would take a -h or --help among the
		// command's words for objsync's, and show help instead.
		return usageOf(line.cmd, "missing -- before the command: %s", withDashes(args, line.operands[2]))
	}
	root.SetArgs(line.args)
	_, err := root.ExecuteC()
	var e *exitError
	if err != nil && !errors.As(err, &e) {
		// Only cobra's own errors are bare: the commands' go through
		// failed, below.
		return usageErrorf("%s (see 'objsync --help')", err)
	}
	return err
}

func newRootCommand() *cobra.Command {
	var showVersion bool
	root := &cobra.Command{
		Use:   "objsync",
		Short: "distributed locks on object storage",
		Long:  usage,
		Args:  cobra.ArbitraryArgs,
		// objsync prints errors itself (exitCode), as one line.
		SilenceErrors:     true,
		SilenceUsage:      true,
		PersistentPreRunE: startLogging,
		RunE: func(cmd *cobra.Command, args []string) error {
			if showVersion {
				// Handled here, not by cobra, which ignores arguments.
				if len(args) > 0 {
					return usageErrorf("--version takes no arguments, got %q (see 'objsync --help')", args[0])
				}
				out.printf("objsync %s\n", version())
				return nil
			}
			known := "lock, status, unlock, check, elect, leader, bench or completion; see 'objsync --help'"
			if len(args) == 0 {
				return usageErrorf("missing command (%s)", known)
			}
			if args[0] == "version" {
				known = "did you mean --version? see 'objsync --help'"
			} else if guesses := cmd.SuggestionsFor(args[0]); len(guesses) > 0 {
				known = "did you mean " + strings.Join(guesses, " or ") + "? see 'objsync --help'"
			}
			return usageErrorf("unknown command %q (%s)", args[0], known)
		},
	}
	root.SuggestionsMinimumDistance = 2
	root.SetHelpFunc(func(cmd *cobra.Command, _ []string) { printHelp(cmd) })
	root.SetFlagErrorFunc(func(cmd *cobra.Command, err error) error { return usageOf(cmd, "%v", err) })
	logFlags(root.PersistentFlags())
	root.SetHelpCommand(&cobra.Command{
		Use:   "help [COMMAND]",
		Short: "show a command's usage, flags and example",
		Long:  "Show COMMAND's usage, an example and its flags, as 'objsync COMMAND --help'\ndoes; without COMMAND, objsync's usage, DSNs and exit codes.\n\nExample:\n  objsync help lock",
		ValidArgsFunction: func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
			var names []string
			for _, c := range root.Commands() {
				if c.IsAvailableCommand() {
					names = append(names, c.Name())
				}
			}
			return names, cobra.ShellCompDirectiveNoFileComp
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			target, rest, err := root.Find(args)
			if err != nil || len(rest) > 0 {
				return usageErrorf("help: unknown command %q (see 'objsync --help')", strings.Join(args, " "))
			}
			printHelp(target)
			return nil
		},
	})
	root.AddCommand(lockCommand(), statusCommand(), unlockCommand(), checkCommand(),
		electCommand(), leaderCommand(), benchCommand())
	root.InitDefaultHelpFlag()
	root.Flags().BoolVar(&showVersion, "version", false, "print objsync's version, its commit and its Go version")
	root.InitDefaultCompletionCmd()
	for _, c := range root.Commands() {
		c.Args = cobra.ArbitraryArgs // checked by operands, with objsync's messages
		c.InitDefaultHelpFlag()
		if c.Name() == "completion" {
			completion(c)
		}
	}
	return root
}

// shells are those whose completion scripts cobra writes.
const shells = "bash, zsh, fish or powershell"

// completion makes cobra's completion command, which shows its help and
// exits 0 for an unknown shell or none, refuse them.
func completion(cmd *cobra.Command) {
	cmd.Use = "completion bash|zsh|fish|powershell"
	cmd.Long = "Print the script that completes objsync's commands and flags in a shell:\n" + shells + ". " +
		"'objsync completion SHELL --help' says\nhow to load it.\n\n" +
		"Example:\n  source <(objsync completion bash)"
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) == 0 {
			return usageOf(cmd, "missing shell: want %s", shells)
		}
		return usageOf(cmd, "unknown shell %q: want %s", args[0], shells)
	}
}

// printHelp prints a command's help text, which shows its usage and an
// example, and its flags.
func printHelp(cmd *cobra.Command) {
	text := cmd.Long
	if !strings.HasPrefix(text, "Usage: ") && cmd.HasParent() {
		text = "Usage: " + cmd.UseLine() + "\n\n" + text + "\n"
	}
	text += "\nFlags:\n" + cmd.LocalFlags().FlagUsages()
	if cmd.HasInheritedFlags() {
		text += "\nGlobal flags:\n" + cmd.InheritedFlags().FlagUsages()
	}
	out.print(os.Stdout, text)
}

// version says which objsync this is, from what the build recorded.
func version() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "(devel)"
	}
	return versionOf(info)
}

// versionOf says which objsync info describes: the main module's version
// ("(devel)" when built from a work tree without one), the commit it was
// built from when the build recorded one, "modified" if the work tree had
// local changes, and the Go version. Go stamps a version built from
// such a tree "+dirty", which "modified" says once.
func versionOf(info *debug.BuildInfo) string {
	v, dirty := strings.CutSuffix(cmp.Or(info.Main.Version, "(devel)"), "+dirty")
	words := []string{v}
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision":
			words = append(words, "commit "+s.Value)
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = true
		}
	}
	if dirty {
		words = append(words, "modified")
	}
	return strings.Join(append(words, info.GoVersion), ", ")
}

// commandLine is a command line read as pflag and cobra will read it.
type commandLine struct {
	// args is the command line with the spellings of Go's flag package
	// that objsync took before it used pflag, -ttl 5s, -try, -timeout=3s,
	// written with two dashes: only for the long flags of its command, and
	// only before "--".
	args []string
	// operands are the indices in args of the words before "--" that are
	// not flags or their values: the command's name, then its operands.
	operands []int
	cmd      *cobra.Command // root if none is named
	// dashes says that "--" ends the command's flags and operands; shell
	// that it has -c (--command); dashFirst that "--" comes before any
	// command's name.
	dashes, shell, dashFirst bool
}

// respell reads args as pflag will, to tell which words are flags, flag
// values and operands, and as cobra will, to tell the command: before it,
// a flag that is not the root's is taken to have a value, "--x v" and
// "-x v", as cobra's stripFlags does.
func respell(root *cobra.Command, args []string) commandLine {
	line := commandLine{args: append([]string(nil), args...), cmd: root}
	cmd := root
	lookup := func(name string) *pflag.Flag {
		if f := cmd.Flags().Lookup(name); f != nil {
			return f
		}
		return cmd.InheritedFlags().Lookup(name)
	}
	shorthand := func(c byte) *pflag.Flag {
		if f := cmd.Flags().ShorthandLookup(string(c)); f != nil {
			return f
		}
		return cmd.InheritedFlags().ShorthandLookup(string(c))
	}
	for i := 0; i < len(line.args); i++ {
		arg := line.args[i]
		if arg == "--" {
			line.dashes = true
			line.dashFirst = cmd == root
			break
		}
		if len(arg) < 2 || arg[0] != '-' {
			line.operands = append(line.operands, i)
			if len(line.operands) == 1 {
				for _, c := range root.Commands() {
					if c.Name() == arg {
						cmd = c
					}
				}
			}
			continue
		}
		name, _, withValue := strings.Cut(strings.TrimPrefix(arg[1:], "-"), "=")
		var f *pflag.Flag
		switch {
		case strings.HasPrefix(arg, "--"):
			f = lookup(name)
		case len(name) > 1 && lookup(name) != nil:
			line.args[i] = "-" + arg
			f = lookup(name)
		default: // shorthands, perhaps several: -nw 5, -w5
			for j := 1; j < len(arg); j++ {
				f = shorthand(arg[j])
				if f == nil || f.NoOptDefVal == "" {
					withValue = j+1 < len(arg)
					break
				}
			}
		}
		switch {
		case f != nil && f.NoOptDefVal == "" && !withValue:
			i++ // the flag's value
		case f == nil && cmd == root && !withValue && (strings.HasPrefix(arg, "--") || len(arg) == 2):
			i++ // a value, cobra assumes
		}
		if f != nil && f.Name == "command" && cmd != root {
			line.shell = true
		}
	}
	line.cmd = cmd
	return line
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

// usageOf returns a usage error of cmd, which names it and points to its
// --help.
func usageOf(cmd *cobra.Command, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if cmd.HasParent() {
		msg = cmd.Name() + ": " + msg
	}
	return usageErrorf("%s (see '%s --help')", msg, cmd.CommandPath())
}

// failed makes err, returned by a command, an exitError: objsync's own
// failure unless it is one already.
func failed(err error) error {
	var e *exitError
	if err != nil && !errors.As(err, &e) {
		return &exitError{exitFailed, err}
	}
	return err
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

// driverFlag defines --driver, which every command has.
func driverFlag(fs *pflag.FlagSet) *string { return fs.String("driver", "", driverUsage) }

const driverUsage = "open the DSN with the driver `name`d; for a DSN whose scheme names no driver (a path: file). A DSN whose scheme names another driver is refused"

// operands returns the DSN, and, if withCommand, the command after "--"
// of a command's arguments. (A command's words without "--" are refused
// by run, before cobra.)
func operands(cmd *cobra.Command, args []string, withCommand bool) (dsn string, command []string, err error) {
	positional := args
	if at := cmd.ArgsLenAtDash(); at >= 0 {
		positional, command = args[:at], args[at:]
	}
	switch {
	case len(positional) == 0 && len(command) > 0 && withCommand:
		return "", nil, usageOf(cmd, "missing DSN: it comes before --, the command after it")
	case len(positional) == 0 && len(command) > 0:
		return "", nil, usageOf(cmd, "missing DSN: it comes before --, and nothing after it")
	case len(positional) != 1:
		return "", nil, usageOf(cmd, "want one DSN, got %d arguments", len(positional))
	case withCommand && len(command) == 0:
		return "", nil, usageOf(cmd, "missing -- COMMAND (or -c 'COMMAND STRING')")
	case !withCommand && command != nil:
		return "", nil, usageOf(cmd, "unexpected arguments after --")
	}
	return positional[0], command, nil
}

// withDashes returns the command line args with "--" inserted at index
// at, quoted for a shell.
func withDashes(args []string, at int) string {
	words := []string{"objsync"}
	for i, arg := range args {
		if i == at {
			words = append(words, "--")
		}
		words = append(words, shellQuote(arg))
	}
	return strings.Join(words, " ")
}

// shellQuote quotes s for a POSIX shell, if it needs it.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./:=@,+%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// schemes maps the schemes of DSNs to the drivers that serve them.
var schemes = map[string]string{"s3": "s3", "minio": "minio", "gs": "gcs", "gcs": "gcs", "azblob": "azblob", "file": "file"}

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
		return nil, "", unknownDriver(driverName, driver.Drivers())
	}
	switch {
	case driverName == "" && byScheme == "":
		return nil, "", usageErrorf("unknown scheme %q in the DSN; known: s3://, minio://, gs://, azblob://, file:// or a plain path (or choose a driver with --driver)", scheme)
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
		_, rest, _ := strings.Cut(dsn, "://")
		if written, parsed := userInfo(rest); written != parsed && strings.Contains(written, ":") {
			// url.Parse cut the user information short, and its error
			// may quote a piece of the password, which no mask knows.
			return nil, "", usageErrorf("%s: invalid DSN: a / ? or # in its password must be percent-encoded (%%2F, %%3F, %%23), an @ in its path too (%%40)", driverName)
		}
		return nil, "", &exitError{exitUsage, err}
	}
	return store, key, nil
}

// unknownDriver is the usage error of a --driver that names none of
// known, the drivers built in; it lists them, if there are any.
func unknownDriver(name string, known []string) error {
	if len(known) == 0 {
		return usageErrorf("unknown driver %q: this objsync has no drivers built in", name)
	}
	return usageErrorf("unknown driver %q (known: %s)", name, strings.Join(known, ", "))
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
