//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/objsync/objsync"
)

const electHelp = `Usage: objsync elect [flags] --value VALUE DSN -- COMMAND [ARGS...]

Campaign to lead, run COMMAND while leading, resign when COMMAND exits, and
exit with COMMAND's status. It is 'objsync lock' with the leader's value
required: followers see it with 'objsync leader'. Everything else, the
environment, the signals, the exit codes, -n, -w, -E and -c, is as for
'objsync lock'; if leadership is lost, COMMAND is stopped and objsync
exits 123.

Run one 'objsync elect' per candidate: one leads, the others wait, and when
the leader exits or dies another takes over: after --ttl if it died, at once
if it died on the same machine and ran its command in a cgroup (see 'objsync
lock --help'), and with --store-clock once the store's clock says the ttl has
passed.

Example:
  objsync elect --value "$(hostname):8080" s3://ops/elections/scheduler -- ./scheduler
`

const leaderHelp = `Usage: objsync leader [--json] [--confirm | --watch] DSN

Print the leader of the election at DSN: its value, its term's fence, since
when it leads (by the leader's clock), its ttl, and how long this objsync has
seen the lock unchanged. Without a leader it says so on stderr and exits 124.

One read cannot tell a live leader from one that died less than its ttl ago:
both look the same, and the line says so. --confirm reads the lock every
second until it can tell: it prints the leader once it has seen it write the
lock (it renews about every 0.3 x ttl), so it is alive; or it exits 124 once
it has seen the lock unchanged for the ttl plus 1%, so the leader is dead and
a waiting candidate takes over. That takes at most about the ttl and a second.

--watch prints the leader, or "no leader", at once, and then every change,
reading the lock every second, until interrupted: a new term, a new value,
and "no leader" when the leader resigns, or when it has been seen unchanged
for its ttl plus 1% (it died). The first line comes from one read, so it may
show a leader that has just died: "no leader" then follows within about its
ttl and a second. Every later leader line is of a leader seen writing the
lock, so alive then.

SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGABRT and SIGALRM (and
the others that end objsync lock's wait) end leader, --confirm and --watch
included, with exit 128 plus the signal's number: 130 for SIGINT, 143 for
SIGTERM, 131 for SIGQUIT (without a dump of Go's stacks).

With --json each line is a JSON object with these fields:
  leader        false for "no leader" (--watch); the fields below are then empty
  value         the leader's --value
  fence         its term's fencing token
  since         when its term began, RFC 3339, by the leader's clock (null if none)
  host, pid     where it runs
  ttl_ms        its lease, in milliseconds
  unchanged_ms  how long this objsync saw the lock unchanged
  confirmed     true if this objsync saw the leader write the lock, so it was
                alive then (--confirm; every --watch line but the first);
                false after one read, which cannot tell

Example:
  objsync leader --confirm s3://ops/elections/scheduler
  objsync leader --watch --json s3://ops/elections/scheduler
`

func electCommand() *cobra.Command {
	return holdingCommand("elect", "run a command while leading an election", electHelp, objsync.DefaultElectionTTL)
}

// leaderJSON is what leader --json prints. Its fields are documented in
// leaderHelp and the package documentation; keep them stable.
type leaderJSON struct {
	Leader          bool       `json:"leader"`
	Value           string     `json:"value"`
	Fence           int64      `json:"fence"`
	Since           *time.Time `json:"since"`
	Host            string     `json:"host"`
	PID             int        `json:"pid"`
	TTLMillis       int64      `json:"ttl_ms"`
	UnchangedMillis int64      `json:"unchanged_ms"`
	Confirmed       bool       `json:"confirmed"`
}

func leaderCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "leader [--json] [--confirm | --watch] DSN", Short: "show the leader of an election", Long: leaderHelp}
	fs := cmd.Flags()
	asJSON := fs.Bool("json", false, "print JSON objects (see above)")
	confirm := fs.Bool("confirm", false, "watch the lock until it is known whether the leader is alive (at most about its ttl)")
	watch := fs.Bool("watch", false, "print the leader, then every change, \"no leader\" included, until interrupted")
	driverName := driverFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		dsn, _, err := operands(cmd, args, false)
		if err != nil {
			return err
		}
		if *confirm && *watch {
			return usageErrorf("leader: --confirm and --watch exclude each other")
		}
		return failed(runLeader(dsn, *driverName, *asJSON, *confirm, *watch))
	}
	return cmd
}

func runLeader(dsn, driverName string, asJSON, confirm, watch bool) error {
	store, key, err := openStore(dsn, driverName)
	if err != nil {
		return err
	}
	m := newMutex(store, key)
	defer m.Close()
	e := objsync.NewElection(m)
	show := func(l objsync.Leader, confirmed bool) error {
		return showLeader(m, l, confirmed, asJSON)
	}
	ctx, stop := interruptible()
	defer stop()
	switch {
	case watch:
		changes := e.Watch(ctx)
		for first := true; ; first = false {
			l, ok := <-changes
			if !ok {
				return context.Cause(ctx) // closed only when a signal came
			}
			// Watch's later leaders wrote the lock while it watched.
			if err := show(l, !first && l.Fence != 0); err != nil {
				return err
			}
		}
	case confirm:
		return confirmLeader(ctx, m, e, show)
	}
	rctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	l, err := e.Leader(rctx)
	if ctx.Err() != nil {
		return context.Cause(ctx)
	}
	if errors.Is(err, objsync.ErrNoLeader) {
		return noLeader(m)
	}
	if err != nil {
		return err
	}
	return show(l, false)
}

// noLeader is the outcome of a leader that finds none: exit 124.
func noLeader(m *objsync.Mutex) error {
	return &exitError{exitNotAcquired, fmt.Errorf("%s has no leader", m)}
}

// confirmLeader reads the lock every second until it knows whether there is
// a live leader: one it has seen write the lock, which it shows, or none.
func confirmLeader(ctx context.Context, m *objsync.Mutex, e *objsync.Election, show func(objsync.Leader, bool) error) error {
	var first time.Time // just after the first read returned
	var seen objsync.Leader
	for {
		// Measured before the read: if the lock has not changed since
		// the first read, Unchanged, counted from that read's return and
		// measured later, is longer than watched.
		var watched time.Duration
		if !first.IsZero() {
			watched = time.Since(first)
		}
		rctx, cancel := context.WithTimeout(ctx, storeTimeout)
		l, err := e.Leader(rctx)
		cancel()
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if first.IsZero() {
			first = time.Now()
		}
		switch {
		case errors.Is(err, objsync.ErrNoLeader) && seen.Fence != 0:
			return &exitError{exitNotAcquired, fmt.Errorf("%s has no leader: %q (fence %d) resigned, or stopped renewing for its ttl of %v", m, seen.Value, seen.Fence, seen.TTL)}
		case errors.Is(err, objsync.ErrNoLeader):
			return noLeader(m)
		case err != nil:
			return err
		case l.Unchanged < watched && !l.Handed:
			return show(l, true) // it wrote the lock since the first read
		}
		seen = l
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(time.Second):
		}
	}
}

// interruptible returns a context that the terminating signals cancel,
// with as its cause the exit status 128+N that objsync lock gives while it
// waits (and no stack dump for SIGQUIT); stop ends the diversion of those
// signals.
func interruptible() (ctx context.Context, stop func()) {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, terminating...)
	ctx, cancel := context.WithCancelCause(context.Background())
	go func() {
		if sig, ok := <-sigs; ok {
			cancel(&exitError{code: exitSignal + int(sig.(syscall.Signal))})
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(sigs)
		cancel(nil)
	}
}

// showLeader prints l, or "no leader" for the zero Leader; confirmed says
// whether l was seen writing the lock, so alive then.
func showLeader(m *objsync.Mutex, l objsync.Leader, confirmed, asJSON bool) error {
	if asJSON {
		j := leaderJSON{
			Leader: l.Fence != 0, Value: l.Value, Fence: l.Fence, Host: l.Host, PID: l.PID,
			TTLMillis: l.TTL.Milliseconds(), UnchangedMillis: l.Unchanged.Milliseconds(), Confirmed: confirmed,
		}
		if j.Leader {
			since := l.Since.UTC()
			j.Since = &since
		}
		data, err := json.Marshal(j)
		if err != nil {
			return err
		}
		out.printf("%s\n", data)
		return nil
	}
	if l.Fence == 0 {
		out.printf("%s: no leader\n", m)
		return nil
	}
	alive := "one read cannot tell whether it is alive"
	if confirmed {
		alive = "alive, seen writing the lock"
	}
	out.printf("%s: leader %q, fence %d, since %s, on %s (pid %d); ttl %v, unchanged %s: %s\n",
		m, l.Value, l.Fence, wallTime(l.Since), printable(l.Host), l.PID, l.TTL, short(l.Unchanged.Truncate(time.Millisecond)), alive)
	return nil
}
