//go:build unix

package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"golang.org/x/sys/unix"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
)

const lockHelp = `Usage: objsync lock [flags] DSN -- COMMAND [ARGS...]
       objsync lock [flags] DSN -c 'COMMAND STRING'

Acquire the lock, run COMMAND while holding it, release the lock when COMMAND
exits, and exit with COMMAND's status. The lease renews itself while COMMAND
runs: --ttl is how long others wait if objsync dies, not a limit on COMMAND.
As with flock(1): -n is --try, -w is --timeout (0, the default, waits for
ever: unlike flock -w 0, it is not -n), -E sets the exit code when the lock
is not acquired (124; 0 makes that look like success, for a job that should
skip, and --quiet then skips silently), and -c runs COMMAND STRING with
sh -c. Durations are Go durations (90s, 1m30s) or numbers of seconds (5,
0.5).

COMMAND finds the fencing token in OBJSYNC_FENCE (pass it with every write the
lock protects) and the lock's location in OBJSYNC_LOCK. It runs in a process
group of its own. If the lease cannot be renewed, that group gets SIGTERM
--grace before the lease ends and SIGKILL (its cgroup too) when it ends, so
that COMMAND is dead before anyone else can take the lock; objsync then
exits 123. (If the lock is broken or taken over, SIGTERM comes at once.)
SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGABRT, SIGALRM and
SIGWINCH sent to objsync (and SIGTRAP, SIGSYS, SIGILL, SIGBUS, SIGFPE and
SIGSEGV sent by kill) are passed on to the group, and the lock is released
once COMMAND has exited. While objsync waits for the lock, all but SIGWINCH
end the wait with 128 plus the signal's number, without a dump of Go's stacks.

While it waits, objsync says on stderr who holds the lock. A holder that
died on this machine (Linux) is taken over at once, --try included, if it ran
its command in a cgroup of its own (as root, or in a delegated subtree), once
nothing of that command runs: objsync runs COMMAND in a cgroup of its own, and
a guardian process kills all of it if objsync dies. Work that COMMAND hands to
a daemon (docker run, tmux, systemd-run, ssh, at) runs outside it, as it does
outside a flock(1) lock: use --no-cgroup for such commands. Otherwise (another
machine or container, --no-cgroup, no cgroup v2 that objsync may write to),
only a waiting objsync takes over a lock whose holder stopped renewing it,
after watching it unchanged for its ttl: --try fails.

With --store-clock (s3:// and minio://), the store's clock counts too: the
lock is taken over, --try included, once the store's Date and Last-Modified
say it has been unchanged for its ttl and 1% (and two seconds for their
resolution). Use it only with a store whose clocks agree within 4% of the ttl
(1.2s for 30s): one server, AWS S3, R2; not behind a proxy that sets its own
Date. 'objsync check' warns of clocks that disagree by more than 2s.

Example:
  objsync lock --ttl 1m --timeout 10m --value "deploy by $USER" \
      s3://ops/locks/deploy -- ./deploy.sh production
  objsync lock -n -E 0 --quiet /var/lock/backup -c 'backup --all >> backup.log'
`

// terminating are the signals a shell user may send to objsync whose
// default action ends a process: those of everyday use; SIGABRT, which
// systemd's watchdog sends too, and SIGTRAP, SIGSYS, SIGILL, SIGBUS,
// SIGFPE and SIGSEGV sent by kill, which would end objsync with Go's stack
// dump and exit 2 (the faults of objsync's own still crash it: Go sends
// only the signals sent by a process to signal.Notify); and SIGALRM, which
// Go ignores. Not SIGPIPE, which Go reserves for a write to a closed
// stdout or stderr, nor SIGPROF and SIGURG, which its runtime uses.
var terminating = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2,
	syscall.SIGABRT, syscall.SIGALRM, syscall.SIGTRAP, syscall.SIGSYS, syscall.SIGILL, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGSEGV}

// defaultGrace is --grace unless the ttl leaves less room.
const defaultGrace = 10 * time.Second

type lockOptions struct {
	ttl, timeout, grace time.Duration
	try, quiet          bool
	// conflictExit is the exit code when the lock is not acquired.
	conflictExit         int
	value, driver        string
	queue                queueKind
	noCgroup, storeClock bool
	// suggestStoreClock says that --store-clock, not given, would count
	// the store's clock.
	suggestStoreClock bool
}

func lockCommand() *cobra.Command {
	return holdingCommand("lock", "run a command while holding the lock", lockHelp, 30*time.Second)
}

// holdingCommand returns the command that runs a command while holding a
// lock: objsync lock, and objsync elect, for which the holder is the
// leader and needs a --value.
func holdingCommand(name, short, help string, defaultTTL time.Duration) *cobra.Command {
	cmd := &cobra.Command{Use: name + " [flags] DSN -- COMMAND [ARGS...]", Short: short, Long: help}
	fs := cmd.Flags()
	var o lockOptions
	durationFlag(fs, &o.ttl, "ttl", "", defaultTTL, "the lease: how long others wait for the lock if objsync dies")
	durationFlag(fs, &o.timeout, "timeout", "w", 0, "give up (exit 124, or -E) after waiting this long; 0 waits for ever")
	fs.BoolVarP(&o.try, "try", "n", false, "give up at once (exit 124, or -E) if the lock is held")
	decimalFlag(fs, &o.conflictExit, "conflict-exit-code", "E", exitNotAcquired, "the exit `code` when the lock is not acquired (--try, --timeout): 0 to 255; 0 makes it look like success, for a job that should skip quietly")
	shellCommand := fs.StringP("command", "c", "", "run this `command string` with sh -c --, instead of -- COMMAND [ARGS...]")
	fs.StringVar(&o.value, "value", "", "`text` saying who holds the lock, shown by status: a job, a host (no secrets)")
	durationFlag(fs, &o.grace, "grace", "", defaultGrace, "if the lock is lost, how long the command has between SIGTERM and SIGKILL; at most half the ttl, which is the default when it is less than 10s")
	fs.BoolVar(&o.quiet, "quiet", false, "say nothing of a held lock: neither who holds it while waiting nor why it was not acquired (the exit code says so)")
	o.queue = queueKind{new(bool)}
	if name == "lock" {
		fs.BoolVar(o.queue.on, "queue", false, "a queue lock: waiters served in turn, many hand-offs a second on stores that allow one write per second to an object; a lock name is of one kind for good")
	}
	fs.BoolVar(&o.noCgroup, "no-cgroup", false, "do not run the command in a cgroup of its own: the lock records no process, and only its ttl frees it if objsync dies (for commands that hand their work to a daemon: docker, tmux, systemd-run, ssh)")
	fs.BoolVar(&o.storeClock, "store-clock", false, "also take over a dead holder's lock once the store's clock says it has been unchanged for its ttl and 1% (s3 and minio drivers; trusts that the store's clocks agree: see --help)")
	fs.StringVar(&o.driver, "driver", "", driverUsage)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		viaShell := fs.Changed("command")
		if viaShell && cmd.ArgsLenAtDash() >= 0 {
			return usageOf(cmd, "-c and -- COMMAND exclude each other: give the command one way")
		}
		dsn, argv, err := operands(cmd, args, !viaShell)
		if err != nil {
			return err
		}
		if viaShell {
			// "--" so that a string that starts with - or + is not read
			// as sh's options; $0 is still sh.
			argv = []string{"sh", "-c", "--", *shellCommand}
		}
		return failed(runHolding(cmd, o, dsn, argv))
	}
	return cmd
}

func runHolding(cmd *cobra.Command, o lockOptions, dsn string, argv []string) error {
	name, fs := cmd.Name(), cmd.Flags()
	if err := objsync.CheckTTL(o.ttl); err != nil {
		return usageErrorf("%s: --ttl: %s", name, message(err))
	}
	if !fs.Changed("grace") {
		o.grace = min(defaultGrace, objsync.MaxLossNotice(o.ttl))
	}
	switch {
	case o.grace > objsync.MaxLossNotice(o.ttl):
		return usageErrorf("%s: --grace %v does not fit --ttl %v: the command must be dead before the lease ends, and renewals need the rest; at most %v", name, o.grace, o.ttl, objsync.MaxLossNotice(o.ttl))
	case o.try && o.timeout > 0:
		return usageErrorf("%s: --try and --timeout exclude each other", name)
	case o.conflictExit < 0 || o.conflictExit > 255:
		return usageOf(cmd, "--conflict-exit-code %d: an exit code is 0 to 255", o.conflictExit)
	case name == "elect" && o.value == "":
		return usageErrorf("elect: --value is required: it is what the leader tells followers (see 'objsync elect --help')")
	}
	// Find the command now rather than after a long wait for the lock.
	path, err := exec.LookPath(argv[0])
	if err != nil {
		return cannotRun(err)
	}
	store, key, err := openStore(dsn, o.driver)
	if err != nil {
		return err
	}
	_, ages := store.(driver.AgeReader)
	switch {
	case o.storeClock && *o.queue.on:
		return usageErrorf("%s: --store-clock is for plain locks, not --queue: a queue lock's turn does not begin with a write of its object", name)
	case o.storeClock && !ages:
		return usageErrorf("%s: --store-clock: %s cannot tell an object's age by the store's clock (s3:// and minio:// can)", name, store.Location(key))
	}
	o.suggestStoreClock = ages && !*o.queue.on && !o.storeClock
	// The command runs in a cgroup of its own, killed if objsync dies, so
	// that a contender on this machine may take the lock over as soon as
	// objsync and the command have ended. Where there is none, the command
	// may outlive a killed objsync: only the TTL frees the lock then.
	var cg *workCgroup
	if !o.noCgroup {
		var err error
		if cg, err = newWorkCgroup(); err != nil {
			slog.Debug("running the command without a cgroup of its own: only the ttl frees the lock if objsync dies", "reason", err)
		}
	}
	defer cg.release() // after the lock is released
	// A hold that cannot be renewed ends --grace before its lease does:
	// SIGTERM then, SIGKILL when the lease ends (see supervise).
	opts := append(o.queue.options(), objsync.WithValue(o.value), objsync.WithLossNotice(o.grace))
	if o.storeClock {
		opts = append(opts, objsync.WithStoreClock())
	}
	m := newMutex(store, key, append(opts, cg.options()...)...)
	defer m.Close() // releases the lock on the paths that do not Unlock
	defer func() {
		// Should objsync panic, what runs in the command's cgroup gets
		// SIGKILL before m.Close releases the lock.
		if r := recover(); r != nil {
			cg.kill()
			panic(r)
		}
	}()

	// Until the command runs the signals that end a process by default end
	// the wait, as they would (without Go's stack dump for SIGQUIT); then
	// they are passed on to it.
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, terminating...)
	fence, err := acquire(m, o, sigs)
	if err != nil {
		return err
	}
	// From now on objsync follows the command's job-control stops, and
	// passes a terminal's new size on.
	signal.Notify(sigs, syscall.SIGTSTP, syscall.SIGCONT, syscall.SIGWINCH)
	env := append(os.Environ(), "OBJSYNC_FENCE="+strconv.FormatInt(fence, 10), "OBJSYNC_LOCK="+m.String())
	c, err := startChild(path, argv, env, cg)
	if err != nil {
		return cannotRun(cg.startError(err))
	}
	status, lost := c.supervise(m, o.grace, sigs)
	if lost {
		return &exitError{code: exitLost} // said when it happened
	}
	ctx, cancel := context.WithTimeout(context.Background(), o.ttl)
	defer cancel()
	err = m.Unlock(ctx)
	switch {
	case errors.Is(err, objsync.ErrLockLost):
		return &exitError{exitLost, fmt.Errorf("%w; the command may have run without it", err)}
	case errors.Is(err, objsync.ErrOutcomeUnknown):
		// The hold was in force until the command exited.
		out.errorf("%v", err)
	case err != nil:
		// The command's outcome matters more: report, and pass it on.
		out.errorf("could not release %s, which others get %v after its last renewal: %v", m, o.ttl, err)
	}
	return &exitError{code: status}
}

// cannotRun reports a command that could not be started, with the codes
// shells use.
func cannotRun(err error) error {
	if errors.Is(err, exec.ErrNotFound) || errors.Is(err, fs.ErrNotExist) {
		return &exitError{exitNotFound, err}
	}
	return &exitError{exitCannotRun, err}
}

// acquire takes the lock. While it waits, it says who holds the lock, and
// it gives up when --timeout elapses or a signal comes.
func acquire(m *objsync.Mutex, o lockOptions, sigs <-chan os.Signal) (int64, error) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if o.timeout > 0 {
		var stop context.CancelFunc
		ctx, stop = context.WithTimeout(ctx, o.timeout)
		defer stop()
	}
	timedOut := func() error { return notAcquired(m, o, fmt.Sprintf("gave up after %v (--timeout)", o.timeout)) }

	// A first try, so that nothing is said when the lock is free.
	ok, fence, err := m.TryLock(ctx, o.ttl)
	switch {
	case ok:
		return fence, nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return 0, timedOut()
	case err != nil && (o.try || !driver.IsRetryable(err)):
		return 0, err
	case o.try:
		return 0, notAcquired(m, o, "not waiting (--try)")
	}

	type result struct {
		fence int64
		err   error
	}
	locked := make(chan result, 1)
	go func() {
		fence, err := m.Lock(ctx, o.ttl)
		locked <- result{fence, err}
	}()
	line := newStatusLine(ctx, m, o.quiet)
	start := time.Now()
	for {
		select {
		case r := <-locked:
			if r.err == nil {
				line.finish(fmt.Sprintf("acquired %s, fence %d, after waiting %s", m, r.fence, short(time.Since(start))))
				return r.fence, nil
			}
			line.clear()
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return 0, timedOut()
			}
			return 0, r.err
		case s := <-line.sightings:
			if ctx.Err() == nil { // else the answer to a cancelled read
				line.show(s)
			}
		case sig := <-sigs:
			cancel()
			<-locked // if it won the lock after all, m.Close releases it
			line.clear()
			return 0, &exitError{code: exitSignal + int(sig.(syscall.Signal))}
		}
	}
}

// storeTimeout bounds the store requests that objsync makes on its own
// account: reading a lock to report on it, breaking it, probing a store.
const storeTimeout = 30 * time.Second

// notAcquired reports that the lock was not taken after waiting
// --timeout (0 for --try), and who holds it if a read tells quickly: a
// user who gave up waiting is not kept waiting. After a wait shorter than
// the ttl it says how to get a lock whose holder died. With --quiet it
// says nothing: the exit code tells.
func notAcquired(m *objsync.Mutex, o lockOptions, why string) error {
	if o.quiet {
		return &exitError{code: o.conflictExit}
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout/10)
	defer cancel()
	st, err := m.Inspect(ctx)
	if err != nil {
		return &exitError{o.conflictExit, fmt.Errorf("%s not acquired: %s", m, why)}
	}
	msg := fmt.Sprintf("%s is %s; %s", m, describe(st), why)
	if st.Held && st.HolderRunning {
		msg += "; its holder's process runs on this machine"
	}
	if st.Held && !st.HolderRunning && st.Unchanged < st.TTL && o.timeout < st.TTL+st.TTL/100 {
		// One read, or a wait shorter than the ttl, cannot tell a holder
		// that died (on another machine, or without a cgroup) from a live
		// one.
		msg += fmt.Sprintf("; a holder that died frees it once unchanged for its ttl of %v: wait for it with --timeout %v",
			st.TTL, (st.TTL + st.TTL/100 + time.Second).Truncate(time.Second))
		if o.suggestStoreClock {
			msg += ", or count the store's clock too with --store-clock"
		}
		msg += ", or break it with 'objsync unlock --force'"
	}
	return &exitError{o.conflictExit, errors.New(msg)}
}

// statusLine is the line on stderr that says who holds the lock while lock
// waits: rewritten in place on a terminal, printed anew at most every ten
// seconds otherwise.
type statusLine struct {
	m         *objsync.Mutex
	tty       bool
	shown     bool
	sightings chan sighting // nil with --quiet
}

type sighting struct {
	st  objsync.State
	err error
}

func newStatusLine(ctx context.Context, m *objsync.Mutex, quiet bool) *statusLine {
	l := &statusLine{m: m}
	if quiet {
		return l
	}
	every := 10 * time.Second
	if _, l.tty = termWidth(); l.tty {
		every = time.Second
	}
	// Read in a goroutine of its own, so that a slow store never delays
	// the handling of a signal.
	l.sightings = make(chan sighting)
	go func() {
		for {
			st, err := m.Inspect(ctx)
			select {
			case l.sightings <- sighting{st, err}:
			case <-ctx.Done():
				return
			}
			select {
			case <-time.After(every):
			case <-ctx.Done():
				return
			}
		}
	}()
	return l
}

func (l *statusLine) show(s sighting) {
	text := fmt.Sprintf("objsync: waiting for %s: ", l.m)
	if l.tty {
		text = "objsync: waiting: " // the holder matters more in 80 columns
	}
	switch {
	case s.err != nil:
		text += "cannot read it: " + message(s.err)
	case s.st.Held:
		text += fmt.Sprintf("%s, unchanged for %s (ttl %v)", describe(s.st), short(s.st.Unchanged.Truncate(100*time.Millisecond)), s.st.TTL)
	default:
		text += describe(s.st)
	}
	if l.tty {
		width, _ := termWidth()
		text = "\r\x1b[K" + truncate(text, width-1)
	} else {
		text += "\n"
	}
	out.print(os.Stderr, text)
	l.shown = true
}

// finish replaces the line, if it was shown, with a last one.
func (l *statusLine) finish(text string) {
	if l.shown {
		l.clear()
		out.print(os.Stderr, "objsync: "+text+"\n")
	}
}

// clear erases the line on a terminal, before another message.
func (l *statusLine) clear() {
	if l.shown && l.tty {
		out.print(os.Stderr, "\r\x1b[K")
	}
}

// termWidth returns the width of the terminal on stderr, and false if
// stderr is not a terminal.
func termWidth() (int, bool) {
	ws, err := unix.IoctlGetWinsize(int(os.Stderr.Fd()), unix.TIOCGWINSZ)
	switch {
	case err != nil:
		return 0, false
	case ws.Col == 0: // a terminal whose size nobody set
		return 80, true
	}
	return int(ws.Col), true
}

// truncate cuts s to width characters, so that a carriage return can
// rewrite it: a line that wraps cannot be.
func truncate(s string, width int) string {
	if utf8.RuneCountInString(s) <= width {
		return s
	}
	r := []rune(s)
	return string(r[:max(width-1, 0)]) + "…"
}
