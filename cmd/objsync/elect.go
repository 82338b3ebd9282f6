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

	"github.com/objsync/objsync"
)

const electHelp = `Usage: objsync elect [flags] --value VALUE DSN -- COMMAND [ARGS...]

Campaign to lead, run COMMAND while leading, resign when COMMAND exits, and
exit with COMMAND's status. It is 'objsync lock' with the leader's value
required: followers see it with 'objsync leader'. Everything else, the
environment, the signals, the exit codes, is as for 'objsync lock'; if
leadership is lost, COMMAND is stopped and objsync exits 123.

Run one 'objsync elect' per candidate: one leads, the others wait, and when
the leader exits or dies another takes over, after --ttl if it died.

Example:
  objsync elect --value "$(hostname):8080" s3://ops/elections/scheduler -- ./scheduler
`

const leaderHelp = `Usage: objsync leader [--json] [--watch] DSN

Print the current leader of the election at DSN: its value, its term's fence,
and since when it leads (by the leader's clock). Without a leader it says so
and exits 124. With --watch it prints every change of leader, in order, until
interrupted. With --json each line is a JSON object with the fields value,
fence, since (RFC 3339), host and pid.

Example:
  objsync leader --watch s3://ops/elections/scheduler
`

func runElect(args []string) error {
	return runHolding("elect", electHelp, objsync.DefaultElectionTTL, args)
}

// leaderJSON is what leader --json prints: keep its fields stable.
type leaderJSON struct {
	Value string    `json:"value"`
	Fence int64     `json:"fence"`
	Since time.Time `json:"since"`
	Host  string    `json:"host"`
	PID   int       `json:"pid"`
}

func runLeader(args []string) error {
	fs := newFlagSet("leader")
	asJSON := fs.Bool("json", false, "print JSON objects (see above)")
	watch := fs.Bool("watch", false, "print every change of leader until interrupted")
	driverName := driverFlag(fs)
	pos, _, err := parseArgs(fs, leaderHelp, args, false)
	if err != nil {
		return err
	}
	store, key, err := openStore(pos[0], *driverName)
	if err != nil {
		return err
	}
	m := objsync.NewMutex(store, key)
	defer m.Close()
	e := objsync.NewElection(m)
	show := func(l objsync.Leader) error {
		if *asJSON {
			return json.NewEncoder(os.Stdout).Encode(leaderJSON{l.Value, l.Fence, l.Since, l.Host, l.PID})
		}
		out.printf("%s: leader %q, fence %d, since %s, on %s (pid %d)\n", m, printable(l.Value), l.Fence, wallTime(l.Since), printable(l.Host), l.PID)
		return nil
	}
	if *watch {
		ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
		defer stop()
		for l := range e.Observe(ctx) {
			if err := show(l); err != nil {
				return err
			}
		}
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	l, err := e.Leader(ctx)
	if errors.Is(err, objsync.ErrNoLeader) {
		return &exitError{exitNotAcquired, fmt.Errorf("%s has no leader", m)}
	}
	if err != nil {
		return err
	}
	return show(l)
}
