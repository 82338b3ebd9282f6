//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
)

const statusHelp = `Usage: objsync status [--json] [--for DURATION] DSN

Show the lock as stored: whether it is held; the holder's value, host, pid
and id; the fence; the ttl; when the hold began and was last renewed, by the
holder's clock, which may differ from this one; and how many waiters are
in the lock's queue. It exits 0 if the lock is held, 1 if it is free
(released), 3 if there is no lock object (never acquired), and as every
command for errors (2 usage, 125 failure).

"unchanged" is how long this objsync saw the holder's state stay the same: 0
after the single read status makes, unless --for has it watch the lock for
a while. A held lock unchanged for longer than its ttl has a holder that
stopped renewing it; a waiting 'objsync lock' would take it over. The
signals that end objsync lock's wait end this one too, with 128 plus the
signal's number.

"stale" (shown for a held lock) is true when this objsync judges the lease
to have run out: the holder's process is gone from this machine (holder_gone),
or it saw the lock unchanged for longer than its ttl, which takes --for
longer than the ttl. The store's clock (store age) does not count: trusting
it is --store-clock's choice.

With --json it prints one JSON object with these fields:
  lock          the lock's location (never with a secret)
  exists        false if the lock was never acquired
  held          whether the lock object says it is held
  value         the holder's --value ("" if none); when free, the last holder's
  holder        the holder's id, drawn anew for every acquisition; when free,
                that of the write that freed it: the last holder's, or a new
                one after unlock --force
  host, pid     where the holder runs
  fence         the fencing token of the current or last hold (0 if never acquired)
  ttl_ms        the holder's lease, in milliseconds
  acquired_at   when the hold began, RFC 3339, holder's clock (null if never acquired)
  renewed_at    when the holder last wrote the lock, RFC 3339, holder's clock (null too);
                when free, when it was freed, by the clock of whoever freed it
  unchanged_ms  how long this objsync saw the lock unchanged
  watched_ms    how long it watched (--for)
  waiters       how many waiters are in the lock's queue
  holder_gone   true if the holder ran on this machine, its process is gone
                and its cgroup empty: a Lock takes it over at once
  holder_running true if the holder recorded its process (objsync lock with a
                cgroup, the library) and it runs on this machine
  stale         true if the lock is held and holder_gone, or unchanged_ms
                exceeds ttl_ms (see "stale" above)
  store_age_ms  how long the lock has at least been unchanged by the store's
                clock (s3:// and minio://); null elsewhere, and for the first
                two or three seconds after each write

Example:
  objsync status --for 40s --json gs://ops-locks/nightly
`

// statusJSON is what status --json prints. Its fields are documented in
// statusHelp and the package documentation; keep them stable.
type statusJSON struct {
	Lock            string     `json:"lock"`
	Exists          bool       `json:"exists"`
	Held            bool       `json:"held"`
	Value           string     `json:"value"`
	Holder          string     `json:"holder"`
	Host            string     `json:"host"`
	PID             int        `json:"pid"`
	Fence           int64      `json:"fence"`
	TTLMillis       int64      `json:"ttl_ms"`
	AcquiredAt      *time.Time `json:"acquired_at"`
	RenewedAt       *time.Time `json:"renewed_at"`
	UnchangedMillis int64      `json:"unchanged_ms"`
	WatchedMillis   int64      `json:"watched_ms"`
	Waiters         int        `json:"waiters"`
	HolderGone      bool       `json:"holder_gone"`
	HolderRunning   bool       `json:"holder_running"`
	Stale           bool       `json:"stale"`
	StoreAgeMillis  *int64     `json:"store_age_ms"`
}

func statusCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "status [--json] [--for DURATION] DSN", Short: "show who holds the lock", Long: statusHelp}
	fs := cmd.Flags()
	asJSON := fs.Bool("json", false, "print a JSON object (see above)")
	queue := queueFlag(fs)
	var watch time.Duration
	durationFlag(fs, &watch, "for", "", 0, "watch the lock this long before reporting")
	driverName := driverFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		dsn, _, err := operands(cmd, args, false)
		if err != nil {
			return err
		}
		return failed(runStatus(dsn, *driverName, queue, watch, *asJSON))
	}
	return cmd
}

func runStatus(dsn, driverName string, queue queueKind, watch time.Duration, asJSON bool) error {
	store, key, err := openStore(dsn, driverName)
	if err != nil {
		return err
	}
	opts := queue.options()
	if _, ok := store.(driver.AgeReader); ok && !*queue.on {
		opts = append(opts, objsync.WithStoreClock()) // to show the store's age
	}
	m := newMutex(store, key, opts...)
	defer m.Close()
	ctx, stop := interruptible()
	defer stop()
	st, watched, err := observe(ctx, m, watch)
	if err != nil {
		return err
	}
	if asJSON {
		err = printJSON(m, st, watched)
	} else {
		printStatus(m, st, watched)
	}
	if err != nil {
		return err
	}
	switch {
	case !st.Exists:
		return &exitError{code: exitStatusAbsent}
	case !st.Held:
		return &exitError{code: exitStatusFree}
	}
	return nil // exitStatusHeld
}

// stale reports whether this objsync judges a held lock's lease to have
// run out: its holder's process is gone (on this machine), or it saw the
// lock unchanged for longer than its ttl. A waiting Lock takes such a lock
// over, at once or after the ttl and 1%.
func stale(st objsync.State) bool {
	return st.Held && (st.HolderGone || st.Unchanged > st.TTL)
}

// observe reads the lock, and again every second for d, so that
// State.Unchanged covers that span. It returns the last state and how long
// it watched, both to the millisecond. A signal that ends ctx ends it with
// ctx's cause.
func observe(ctx context.Context, m *objsync.Mutex, d time.Duration) (objsync.State, time.Duration, error) {
	var first time.Time
	for {
		rctx, cancel := context.WithTimeout(ctx, storeTimeout)
		st, err := m.Inspect(rctx)
		cancel()
		if ctx.Err() != nil {
			return objsync.State{}, 0, context.Cause(ctx)
		}
		if first.IsZero() {
			first = time.Now()
		}
		watched := time.Since(first).Truncate(time.Millisecond)
		if err != nil || watched >= d {
			st.Unchanged = st.Unchanged.Truncate(time.Millisecond)
			return st, watched, err
		}
		select {
		case <-ctx.Done():
			return objsync.State{}, 0, context.Cause(ctx)
		case <-time.After(min(d-watched, time.Second)):
		}
	}
}

func printStatus(m *objsync.Mutex, st objsync.State, watched time.Duration) {
	row := func(name, format string, args ...any) {
		out.printf("%-10s %s\n", name, fmt.Sprintf(format, args...))
	}
	row("lock", "%s", m)
	switch {
	case !st.Exists:
		row("state", "free (never acquired)")
		return
	case st.Held && st.HolderGone:
		row("state", "held, but the holder's process is gone (this machine): a Lock takes it over at once")
	case st.Held && st.HolderRunning:
		row("state", "held, by a process that runs on this machine")
	case st.Held:
		row("state", "held")
	default:
		row("state", "free (holder and renewed are of the write that freed it, the rest the last holder's)")
	}
	row("value", "%q", st.Value)
	row("host", "%s", printable(st.Host))
	row("pid", "%d", st.PID)
	row("fence", "%d", st.Fence)
	row("ttl", "%v", st.TTL)
	row("holder", "%s", st.Holder)
	row("acquired", "%s (holder's clock)", wallTime(st.AcquiredAt))
	row("renewed", "%s (holder's clock)", wallTime(st.RenewedAt))
	if st.Held {
		row("waiters", "%d in the queue (a release hands the lock to the first)", st.Waiters)
	}
	if watched == 0 {
		row("unchanged", "%s (a single read; --for watches the lock)", short(st.Unchanged))
	} else {
		row("unchanged", "%s, watched for %s", short(st.Unchanged), short(watched))
	}
	if st.StoreAge > 0 {
		row("store age", "%s (by the store's clock: Date less Last-Modified)", short(st.StoreAge.Truncate(time.Millisecond)))
	}
	if st.Held {
		row("stale", "%t", stale(st))
	}
	if st.Held && st.Unchanged > st.TTL {
		out.printf("\nUnchanged for longer than its ttl: the holder stopped renewing it, and a\nwaiting 'objsync lock' takes it over ('objsync unlock --force' breaks it).\n")
	}
}

func printJSON(m *objsync.Mutex, st objsync.State, watched time.Duration) error {
	j := statusJSON{
		Lock: m.String(), Exists: st.Exists, Held: st.Held, Value: st.Value, Holder: st.Holder,
		Host: st.Host, PID: st.PID, Fence: st.Fence, TTLMillis: st.TTL.Milliseconds(),
		UnchangedMillis: st.Unchanged.Milliseconds(), WatchedMillis: watched.Milliseconds(), Waiters: st.Waiters,
		HolderGone: st.HolderGone, HolderRunning: st.HolderRunning, Stale: stale(st),
	}
	if st.StoreAge > 0 {
		age := st.StoreAge.Milliseconds()
		j.StoreAgeMillis = &age
	}
	if st.Exists {
		acquired, renewed := st.AcquiredAt.UTC(), st.RenewedAt.UTC()
		j.AcquiredAt, j.RenewedAt = &acquired, &renewed
	}
	data, err := json.MarshalIndent(j, "", "  ")
	if err != nil {
		return err
	}
	out.printf("%s\n", data)
	return nil
}

const unlockHelp = `Usage: objsync unlock --force DSN

Break the lock, whoever holds it, for a holder that died or hangs: a write
conditional on the state just read frees it, and unlock says whom it was
taken from. The holder learns of it only at its next renewal, and its work
may go on until then ('objsync lock' then stops its command and exits 123):
fencing tokens are what protect the resource meanwhile. Hence --force.
A lock that is already free is left alone, and unlock says so and exits 0.

Example:
  objsync status --for 40s s3://ops/locks/deploy
  objsync unlock --force s3://ops/locks/deploy
`

// queueKind is the --queue flag of the commands that open a lock.
type queueKind struct{ on *bool }

func queueFlag(fs *pflag.FlagSet) queueKind {
	return queueKind{fs.Bool("queue", false, "the lock is a queue lock (objsync lock --queue)")}
}

// options returns the options that open the lock's kind.
func (q queueKind) options() []objsync.Option {
	if *q.on {
		return []objsync.Option{objsync.WithQueue()}
	}
	return nil
}

func unlockCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "unlock --force DSN", Short: "break a stuck lock", Long: unlockHelp}
	fs := cmd.Flags()
	force := fs.Bool("force", false, "break the lock whoever holds it (required)")
	queue := queueFlag(fs)
	driverName := driverFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		dsn, _, err := operands(cmd, args, false)
		if err != nil {
			return err
		}
		if !*force {
			return usageErrorf("unlock: refusing without --force: it breaks the lock whoever holds it, and the holder's work may go on until its next renewal (see 'objsync unlock --help')")
		}
		return failed(runUnlock(dsn, *driverName, queue))
	}
	return cmd
}

func runUnlock(dsn, driverName string, queue queueKind) error {
	store, key, err := openStore(dsn, driverName)
	if err != nil {
		return err
	}
	m := newMutex(store, key, queue.options()...)
	defer m.Close()
	ictx, stop := interruptible()
	defer stop()
	ctx, cancel := context.WithTimeout(ictx, storeTimeout)
	defer cancel()
	st, err := m.Break(ctx)
	switch {
	case ictx.Err() != nil:
		return context.Cause(ictx)
	case errors.Is(err, objsync.ErrNotHeld):
		out.printf("%s is %s: nothing to break\n", m, describe(st))
		return nil
	case err != nil:
		return err
	}
	out.printf("broke %s: it was %s\n", m, describe(st))
	return nil
}
