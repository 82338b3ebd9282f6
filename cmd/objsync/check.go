//go:build unix

package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/spf13/cobra"

	"github.com/objsync/objsync/driver"
)

const checkHelp = `Usage: objsync check DSN

Test that the store keeps the promises objsync's safety rests on, with
scratch objects next to the lock (its key plus ".objsync-check-" and random
hex); the lock itself is not touched. It checks that:

  - a create-only write on an absent key succeeds;
  - a create-only write on an existing key is refused;
  - a write conditional on the current version succeeds, with a new version;
  - a write conditional on a stale version is refused;
  - a read returns exactly the bytes and version last written;
  - of 8 concurrent create-only writes on a fresh key, exactly one succeeds.

On s3:// and minio:// it also reads the age of a fresh write by the store's
Date and Last-Modified, and warns if it is more than the time since the write
was sent: the store's clocks disagree, and --store-clock is unsafe there. (A
warning, not a failure: objsync counts the store's clock only when asked to.)

Then it reports the median round-trip times of reads and writes and removes
the scratch objects (or names them, if the driver cannot delete). A store
that fails a test is unsafe for objsync, and check exits 122: some accept
conditional requests and ignore the conditions.

Example:
  objsync check 'minio://127.0.0.1:9000/locks/deploy?secure=false'
`

func checkCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "check DSN", Short: "test that the store is safe for objsync", Long: checkHelp}
	driverName := driverFlag(cmd.Flags())
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		dsn, _, err := operands(cmd, args, false)
		if err != nil {
			return err
		}
		return failed(runCheck(dsn, *driverName))
	}
	return cmd
}

func runCheck(dsn, driverName string) error {
	store, key, err := openStore(dsn, driverName)
	if err != nil {
		return err
	}
	loc := store.Location(key)
	out.printf("checking the store of %s\n", loc)
	ctx, cancel := context.WithTimeout(context.Background(), 4*storeTimeout)
	defer cancel()
	err = checkStore(ctx, store, key, scrubbed{os.Stdout})
	switch {
	case errors.Is(err, errUnsafe):
		return &exitError{exitUnsafe, fmt.Errorf("%s: %w", loc, err)}
	case err != nil:
		return fmt.Errorf("%s: %w", loc, err)
	}
	out.printf("passed: the store keeps the conditions objsync relies on\n")
	return nil
}

// scrubbed writes through the printer.
type scrubbed struct{ w io.Writer }

func (s scrubbed) Write(p []byte) (int, error) {
	out.print(s.w, string(p))
	return len(p), nil
}

// errUnsafe marks a store that failed a probe of its contract.
var errUnsafe = errors.New("this store is unsafe for objsync")

const (
	concurrentWriters = 8
	timedReads        = 5
	// Transient errors are tried again probeTries times, waiting from
	// probeBackoff on, doubling: enough for a store that accepts one
	// write per second to an object (GCS).
	probeTries   = 5
	probeBackoff = 250 * time.Millisecond
)

// checker probes a store with scratch objects.
type checker struct {
	st      driver.Store
	w       io.Writer
	nonce   string
	suffix  func() string // of scratch keys: random hex
	written int           // contents made so far
	scratch []string      // keys of the scratch objects it wrote

	timed         bool // record round trips; not while writers contend
	reads, writes []time.Duration

	aged     string    // a scratch key last written by a request sent at agedSent
	agedSent time.Time // (see storeClock)
}

// checkStore probes st with scratch objects next to key, reporting on w,
// and removes them. It returns an error wrapping errUnsafe if the store
// broke its contract, another error if it could not be tested.
func checkStore(ctx context.Context, st driver.Store, key string, w io.Writer) error {
	c := &checker{st: st, w: w, nonce: randomHex(), suffix: randomHex, timed: true}
	return c.run(ctx, key)
}

func (c *checker) run(ctx context.Context, key string) error {
	err := c.probe(ctx, key)
	if err == nil {
		c.storeClock(ctx, c.aged, c.agedSent)
	}
	if len(c.reads) > 0 && len(c.writes) > 0 {
		fmt.Fprintf(c.w, "round trips: read %s, write %s (medians of %d and %d)\n",
			short(median(c.reads)), short(median(c.writes)), len(c.reads), len(c.writes))
	}
	c.cleanUp()
	return err
}

func (c *checker) probe(ctx context.Context, key string) error {
	k, v1, err := c.create(ctx, key)
	if err := c.expectWrite("a create-only write on an absent key succeeds", err, nil,
		"it refused a create-only write on an absent key"); err != nil {
		return err
	}
	_, err = c.write(ctx, k, c.content(), "")
	if err := c.expectWrite("a create-only write on an existing key is refused", err, driver.ErrPrecondition,
		"it accepted a create-only write on an existing key: it ignores create-only conditions, so two holders could take a lock at once"); err != nil {
		return err
	}
	last := c.content()
	sent := time.Now()
	v2, err := c.write(ctx, k, last, v1)
	const replace = "a write conditional on the current version succeeds, with a new version"
	if err == nil && v2 == v1 {
		return c.fail(replace, "it gave the same version to different contents")
	}
	if err := c.expectWrite(replace, err, nil,
		"it refused a write conditional on the current version: locks could not be renewed or released"); err != nil {
		return err
	}
	c.aged, c.agedSent = k, sent
	_, err = c.write(ctx, k, c.content(), v1)
	if err := c.expectWrite("a write conditional on a stale version is refused", err, driver.ErrPrecondition,
		"it accepted a write conditional on a stale version: it ignores version conditions, so two holders could take a lock at once"); err != nil {
		return err
	}
	const read = "a read returns exactly the bytes and version last written"
	for range timedReads {
		data, v, err := c.read(ctx, k)
		if err != nil {
			return fmt.Errorf("testing that %s: %w", read, err)
		}
		if !bytes.Equal(data, last) || v != v2 {
			return c.fail(read, "a read returned other bytes or another version than the last write: stale reads would let two holders take a lock at once")
		}
	}
	c.pass(read)
	return c.race(ctx, key)
}

// storeClock reports what --store-clock (objsync.WithStoreClock) would
// make of the store's clock, on drivers that tell ages: the object at key,
// written by a request sent at sent, must read as no older than the time
// since then. An older age means clocks of the store that disagree (the
// node that answers and the one that stamped the write), or a Date from
// elsewhere: --store-clock could then take a live holder's lock. This is
// advice, not a failure: objsync never counts the store's clock unless
// asked to.
func (c *checker) storeClock(ctx context.Context, key string, sent time.Time) {
	const what = "the store's clock (--store-clock)"
	ages, ok := c.st.(driver.AgeReader)
	if !ok {
		fmt.Fprintf(c.w, "--    %s: this driver tells no ages\n", what)
		return
	}
	_, _, age, err := ages.ReadAge(ctx, key)
	since := time.Since(sent)
	switch {
	case err != nil:
		fmt.Fprintf(c.w, "warn  %s: could not read the age of a fresh write: %v\n", what, err)
	case age > since+since/100:
		fmt.Fprintf(c.w, "warn  %s: a write sent %s ago reads as at least %s old by the store's Date and Last-Modified: its clocks disagree; do not use --store-clock here\n",
			what, short(since), short(age))
	default:
		fmt.Fprintf(c.w, "ok    %s: a write sent %s ago reads as at least %s old (a lower bound; this cannot show clocks that disagree by less than the two seconds taken off)\n",
			what, short(since), short(age))
	}
}

// race has concurrentWriters create one fresh key at the same time.
func (c *checker) race(ctx context.Context, key string) error {
	what := fmt.Sprintf("of %d concurrent create-only writes on a fresh key, exactly one succeeds", concurrentWriters)
	var k string
	var won [][]byte
	for try := 1; ; try++ {
		k = c.scratchKey(key)
		var err error
		if won, err = c.contend(ctx, k); err != nil {
			return fmt.Errorf("testing that %s: %w", what, err)
		}
		if len(won) > 0 {
			c.scratch = append(c.scratch, k)
		}
		if len(won) > 0 || try == probeTries || !c.foreign(ctx, k) {
			break
		}
	}
	if len(won) != 1 {
		return c.fail(what, fmt.Sprintf("%d of %d concurrent create-only writes on one key succeeded", len(won), concurrentWriters))
	}
	data, _, err := c.read(ctx, k)
	if err != nil {
		return fmt.Errorf("testing that %s: %w", what, err)
	}
	if !bytes.Equal(data, won[0]) {
		return c.fail(what, "after concurrent create-only writes, the object holds the bytes of a writer that was refused")
	}
	c.pass(what)
	return nil
}

// contend has concurrentWriters create k at the same time, and returns
// the contents of those that succeeded.
func (c *checker) contend(ctx context.Context, k string) (won [][]byte, err error) {
	contents := make([][]byte, concurrentWriters)
	for i := range contents {
		contents[i] = c.content()
	}
	errs := make([]error, concurrentWriters)
	c.timed = false
	var wg sync.WaitGroup
	for i := range contents {
		wg.Go(func() { _, errs[i] = c.write(ctx, k, contents[i], "") })
	}
	wg.Wait()
	c.timed = true
	for i, err := range errs {
		switch {
		case err == nil:
			won = append(won, contents[i])
		case !errors.Is(err, driver.ErrPrecondition):
			return nil, err
		}
	}
	return won, nil
}

// create writes a scratch object next to key, create-only, and returns
// its key and version. A key that holds an object this check did not
// write, by chance or by someone's design, is not check's to test, report
// or remove: it tries another.
func (c *checker) create(ctx context.Context, key string) (string, driver.Version, error) {
	for try := 1; ; try++ {
		k := c.scratchKey(key)
		v, err := c.write(ctx, k, c.content(), "")
		if err == nil {
			c.scratch = append(c.scratch, k)
		}
		if err == nil || !errors.Is(err, driver.ErrPrecondition) || try == probeTries || !c.foreign(ctx, k) {
			return k, v, err
		}
	}
}

// foreign reports whether k holds an object that this check did not
// write.
func (c *checker) foreign(ctx context.Context, k string) bool {
	data, _, err := c.read(ctx, k)
	return err == nil && !bytes.HasPrefix(data, fmt.Appendf(nil, "objsync check %s ", c.nonce))
}

// expectWrite judges a write that should succeed (want nil) or be refused
// (want driver.ErrPrecondition); broken says what the store did wrong if it
// answered the other way. An error that is neither is no answer at all.
func (c *checker) expectWrite(what string, err, want error, broken string) error {
	switch {
	case err != nil && !errors.Is(err, driver.ErrPrecondition):
		return fmt.Errorf("testing that %s: %w", what, err)
	case (err == nil) != (want == nil):
		return c.fail(what, broken)
	}
	c.pass(what)
	return nil
}

func (c *checker) pass(what string) { fmt.Fprintf(c.w, "ok    %s\n", what) }

func (c *checker) fail(what, broken string) error {
	fmt.Fprintf(c.w, "FAIL  %s\n", what)
	return fmt.Errorf("%w: %s", errUnsafe, broken)
}

// write writes data at key if ifVersion holds, trying again after a
// transient error: every content is unique, so a read tells whether a
// failed try landed after all.
func (c *checker) write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (v driver.Version, err error) {
	tried := false
	err = retry(ctx, func() error {
		if tried {
			if got, gv, err := c.st.Read(ctx, key); err == nil && bytes.Equal(got, data) {
				v = gv
				return nil
			}
		}
		tried = true
		start := time.Now()
		var werr error
		v, werr = c.st.Write(ctx, key, data, ifVersion)
		c.record(&c.writes, start, werr)
		return werr
	})
	return v, err
}

func (c *checker) read(ctx context.Context, key string) (data []byte, v driver.Version, err error) {
	err = retry(ctx, func() error {
		start := time.Now()
		var rerr error
		data, v, rerr = c.st.Read(ctx, key)
		c.record(&c.reads, start, rerr)
		return rerr
	})
	return data, v, err
}

// retry calls f until it returns an error that is not transient, at most
// probeTries times.
func retry(ctx context.Context, f func() error) error {
	wait := probeBackoff
	for try := 1; ; try++ {
		err := f()
		if !driver.IsRetryable(err) || try == probeTries {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// record notes the round trip of a request the store answered.
func (c *checker) record(list *[]time.Duration, start time.Time, err error) {
	if c.timed && (err == nil || errors.Is(err, driver.ErrPrecondition) || errors.Is(err, driver.ErrNotExist)) {
		*list = append(*list, time.Since(start))
	}
}

// scratchKey returns a key for a scratch object next to key.
func (c *checker) scratchKey(key string) string { return key + ".objsync-check-" + c.suffix() }

// content returns bytes that no other write of any check ever had.
func (c *checker) content() []byte {
	c.written++
	return fmt.Appendf(nil, "objsync check %s %d\n", c.nonce, c.written)
}

// cleanUp removes the scratch objects, or says which may be left.
func (c *checker) cleanUp() {
	d, ok := c.st.(driver.Deleter)
	if !ok {
		fmt.Fprintf(c.w, "this driver cannot delete: remove the scratch objects by hand: %s\n", c.locations(c.scratch))
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	var left []string
	var firstErr error
	for _, k := range c.scratch {
		if err := d.Delete(ctx, k); err != nil {
			left = append(left, k)
			firstErr = cmp.Or(firstErr, err)
		}
	}
	if len(left) > 0 {
		fmt.Fprintf(c.w, "could not remove the scratch objects %s, if they exist: %v\n", c.locations(left), firstErr)
		return
	}
	fmt.Fprintf(c.w, "removed the %d scratch objects\n", len(c.scratch))
}

func (c *checker) locations(keys []string) string {
	locs := make([]string, len(keys))
	for i, k := range keys {
		locs[i] = c.st.Location(k)
	}
	return strings.Join(locs, " ")
}

func median(ds []time.Duration) time.Duration {
	s := slices.Sorted(slices.Values(ds))
	return s[len(s)/2]
}

func randomHex() string {
	var b [8]byte
	rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}
