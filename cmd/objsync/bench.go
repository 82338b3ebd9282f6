//go:build unix

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/countstore"
)

const benchHelp = `Usage: objsync bench [flags] DSN

Measure the lock at DSN on its store: how fast it passes between
contenders, how many store requests that takes and what they cost, and
whether there were ever two holders. DSN must name a lock that nothing
else uses: bench refuses a lock that is held (exit 125) and takes it
hundreds of times.

It runs three phases on the lock, in this order:
  uncontended  20 Lock+Unlock cycles by one Mutex, after one not counted
  round trips  10 conditional writes and 10 reads of a scratch object beside
               the lock (its key plus ".bench-rtt"), removed afterwards if
               the driver can delete
  contended    --procs processes (objsync runs itself again) with
               --goroutines goroutines each, each goroutine with a Mutex of
               its own, take the lock --holds times each (or for --duration)
               and hold it --hold each time
Goroutines of one process share their polling and pass the lock on
locally; separate processes poll the store, as contenders on other hosts
do. A progress line is shown on stderr if it is a terminal.

Figures:
  wait        from calling Lock to its return
  gap         from a release to the next acquisition while a Lock was
              waiting: how long the lock sat free while wanted (including
              the write that frees it and the one that takes it)
  requests    store requests per hold, by kind: read, write (succeeded),
              failed precondition, error
  fairness    the fewest and most holds of one contender, and the longest
              run of holds by one contender while another waited
  limit       an uncontended cycle's median over two median write round
              trips: the physical limit is two conditional writes a cycle
  cost        requests an hour to hold the lock continuously at --ttl (a
              renewal about every 0.3×ttl), and per 1,000 hand-offs, at AWS
              S3 Standard us-east-1 list prices as of 2026-12-02

Every hold is recorded on CLOCK_MONOTONIC from Lock's return to Unlock's
call. If two holds overlap, or fences do not increase in the order the lock
was taken, bench prints them and exits 122; if the store fails, it exits
125. SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGABRT and SIGALRM
(and the others that end objsync lock's wait) stop it: the holds under way
are released, and it exits 128 plus the signal's number.

With --json it prints one object: holds, holds_per_second, wait_ms and
gap_ms ({n, p50, p90, p99, max}), requests_per_hold ({read, write,
precondition_failed, error, total}), holds_per_contender ({min, max}),
max_run, uncontended ({cycles, cycle_ms, requests_per_cycle, read_ms,
write_ms, cycle_over_two_writes}), cost, violations, and the settings.

Example:
  objsync bench --procs 8 --goroutines 1 --holds 10 --hold 5ms /tmp/bench.lock

which printed, on the file driver (a local directory) on 2 busy cores:

  lock           file:///tmp/bench.lock
  contenders     8 processes × 1 goroutine, 10 holds each, hold 5ms, ttl 10s
  contended      80 holds in 2.06s: 38.9 holds/s
    wait         p50 553µs  p90 82.8ms  p99 1.97s  max 1.97s
    gap          p50 1.5ms  p99 696ms  (free while wanted, 70 hand-offs)
    requests     2.75 per hold: 0.69 read, 2 write, 0.06 failed precondition, 0 error
    fairness     holds per contender 10 to 10; longest run while another waited 10
  uncontended    20 Lock+Unlock cycles
    cycle        p50 584µs  p99 787µs
    requests     2 per cycle: 0 read, 2 write, 0 failed precondition, 0 error
    store        read 36µs, conditional write 225µs (medians of 10)
    limit        a cycle takes 1.30 × two writes, the physical limit
  cost           AWS S3 Standard us-east-1 list prices as of 2026-12-02;
                 your store's prices differ
    held         1213 renewals/hour at ttl 10s (every 2.97s): $0.0061/hour
    hand-offs    2750 requests per 1,000: $0.0106
  exclusion      101 holds checked: no overlaps, fences increasing
`

// The uncontended phase's sizes.
const (
	uncontendedCycles = 20
	roundTripSamples  = 10
)

// AWS S3 Standard list prices in us-east-1, in dollars per 1,000
// requests, as of the date in pricesLabel.
const (
	pricePut    = 0.005  // PUT, COPY, POST, LIST
	priceGet    = 0.0004 // GET and all other requests
	pricesLabel = "AWS S3 Standard us-east-1 list prices as of 2026-12-02; your store's prices differ"
)

// Bounds of bench's counts, far beyond a useful bench, that keep it from
// exhausting memory or processes, and its products from overflowing.
const (
	maxProcs      = 256
	maxGoroutines = 10000
	maxContenders = 10000 // --procs × --goroutines
	maxHolds      = 10_000_000
)

type benchOptions struct {
	procs, goroutines, holds int
	duration, hold, ttl      time.Duration
	json, queue              bool
	dsn, driver              string
}

func benchCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "bench [flags] DSN", Short: "measure a lock's speed and cost on its store", Long: benchHelp}
	fs := cmd.Flags()
	var o benchOptions
	decimalFlag(fs, &o.procs, "procs", "", 8, fmt.Sprintf("contend from `N` processes (at most %d)", maxProcs))
	decimalFlag(fs, &o.goroutines, "goroutines", "", 1, fmt.Sprintf("contend from `N` goroutines in each process, each with its own Mutex (at most %d)", maxGoroutines))
	decimalFlag(fs, &o.holds, "holds", "", 10, fmt.Sprintf("each goroutine takes the lock `N` times (at most %d holds in all)", maxHolds))
	durationFlag(fs, &o.duration, "duration", "", 0, "instead of --holds, each goroutine takes the lock again and again for this long")
	durationFlag(fs, &o.hold, "hold", "", 5*time.Millisecond, "how long each hold lasts")
	durationFlag(fs, &o.ttl, "ttl", "", 10*time.Second, "the lease of every hold, which sets the renewal cost")
	fs.BoolVar(&o.json, "json", false, "print a JSON object (see above)")
	fs.BoolVar(&o.queue, "queue", false, "measure a queue lock (objsync lock --queue) rather than a plain one")
	driverName := driverFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if spec := os.Getenv(benchWorkerEnv); spec != "" {
			return failed(runBenchWorker(spec))
		}
		dsn, _, err := operands(cmd, args, false)
		if err != nil {
			return err
		}
		o.dsn, o.driver = dsn, *driverName
		return failed(runBench(fs, o))
	}
	return cmd
}

func runBench(fs *pflag.FlagSet, o benchOptions) error {
	if err := objsync.CheckTTL(o.ttl); err != nil {
		return usageErrorf("bench: --ttl: %s", message(err))
	}
	switch {
	case o.procs < 1 || o.goroutines < 1:
		return usageErrorf("bench: --procs and --goroutines must be at least 1")
	case o.procs > maxProcs || o.goroutines > maxGoroutines || o.procs > maxContenders/o.goroutines:
		return usageErrorf("bench: at most %d --procs, %d --goroutines and %d contenders in all (--procs × --goroutines)", maxProcs, maxGoroutines, maxContenders)
	case o.holds > maxHolds/(o.procs*o.goroutines):
		return usageErrorf("bench: at most %d holds in all (--procs × --goroutines × --holds)", maxHolds)
	case fs.Changed("holds") && fs.Changed("duration"):
		return usageErrorf("bench: --holds and --duration exclude each other")
	case fs.Changed("duration") && o.duration == 0:
		return usageErrorf("bench: --duration must be positive")
	case o.holds < 1:
		return usageErrorf("bench: --holds must be at least 1")
	}
	if o.duration > 0 {
		o.holds = 0
	}
	store, key, err := openStore(o.dsn, o.driver)
	if err != nil {
		return err
	}
	b := &bench{o: o, store: store, key: key, counted: countstore.New(store), origin: clockMonotonic()}
	b.m = newMutex(b.counted, key, queueKind{&o.queue}.options()...)
	defer b.m.Close()
	return b.run()
}

// bench is one run of objsync bench, in the parent process.
type bench struct {
	o       benchOptions
	store   driver.Store
	key     string
	counted *countstore.Store // store, counted: the uncontended phase's
	m       *objsync.Mutex    // on counted
	origin  int64             // CLOCK_MONOTONIC when it started

	holds    []holdRecord // every phase's
	progress *progress    // nil unless stderr is a terminal
	signal   atomic.Value // the os.Signal that stopped it
}

func (b *bench) run() error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, terminating...)
	defer signal.Stop(sigs)
	go func() {
		select {
		case sig := <-sigs:
			b.signal.Store(sig)
			cancel()
		case <-ctx.Done():
		}
	}()
	if err := b.checkFree(ctx); err != nil {
		return b.stopped(err)
	}
	b.progress = startProgress()
	var r benchResult
	err := b.uncontended(ctx, &r.Uncontended)
	if err == nil {
		err = b.roundTrips(ctx, &r)
	}
	var workers []*workerProc
	if err == nil {
		workers, err = b.contended(ctx)
	}
	b.progress.end()
	violations := checkExclusion(b.holds, b.origin)
	if err == nil && len(violations) == 0 {
		err = workerFailure(workers)
	}
	if err != nil && len(violations) == 0 {
		return b.stopped(err)
	}
	if err == nil {
		b.results(&r, workers, len(violations))
		if err := b.print(&r); err != nil {
			return err
		}
	}
	if len(violations) == 0 {
		return nil
	}
	const shown = 10
	for _, v := range violations[:min(len(violations), shown)] {
		out.errorf("bench: %s", v)
	}
	if len(violations) > shown {
		out.errorf("bench: and %d more", len(violations)-shown)
	}
	return &exitError{exitUnsafe, fmt.Errorf("bench: %s had two holders at once, or fences out of order, %d times (instants in seconds from the start, on CLOCK_MONOTONIC): the store does not keep its conditions, or objsync has a bug", b.m, len(violations))}
}

// stopped returns err, or, if a signal stopped the bench, the exit for it.
func (b *bench) stopped(err error) error {
	if sig, ok := b.signal.Load().(syscall.Signal); ok {
		return &exitError{code: exitSignal + int(sig)}
	}
	return err
}

// checkFree refuses a lock that is held: the bench would wait for its
// holder, and its holds would be missing from the check of exclusion.
func (b *bench) checkFree(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, storeTimeout)
	defer cancel()
	st, err := b.m.Inspect(ctx)
	if err != nil {
		return err
	}
	if st.Held {
		return fmt.Errorf("bench: %s is %s; bench needs a lock that nothing else uses (if its holder died, 'objsync unlock --force' frees it)", b.m, describe(st))
	}
	return nil
}

// uncontended times Lock+Unlock cycles of one Mutex, after one cycle not
// counted: the first Lock of a process reads the lock, later ones start
// from the free state their Unlock wrote.
func (b *bench) uncontended(ctx context.Context, u *uncontendedResult) error {
	var cycles []int64
	var before countstore.Counts
	for i := range uncontendedCycles + 1 {
		b.progress.set(fmt.Sprintf("uncontended: %d of %d cycles", i, uncontendedCycles))
		if i == 1 {
			before = b.counted.Counts()
		}
		h := holdRecord{Proc: -1, Called: clockMonotonic()}
		fence, err := b.m.Lock(ctx, b.o.ttl)
		if err != nil {
			return err
		}
		h.Fence, h.Acquired = fence, clockMonotonic()
		h.Released = clockMonotonic()
		uctx, cancel := context.WithTimeout(context.Background(), b.o.ttl)
		err = b.m.Unlock(uctx)
		cancel()
		h.Unlocked = clockMonotonic()
		b.holds = append(b.holds, h)
		if err != nil {
			return err
		}
		if i > 0 {
			cycles = append(cycles, h.Unlocked-h.Called)
		}
	}
	u.Cycles = uncontendedCycles
	u.CycleMS = summarise(cycles)
	u.RequestsPerCycle = perUnit(b.counted.Counts().Sub(before), uncontendedCycles)
	return nil
}

// roundTrips times the store's own requests on a scratch object beside
// the lock, written with unique contents conditional on its version as
// the lock's writes are, and removes it.
func (b *bench) roundTrips(ctx context.Context, r *benchResult) error {
	b.progress.set("round trips")
	key := b.key + ".bench-rtt"
	r.Scratch = b.store.Location(key)
	defer func() { r.ScratchRemoved = b.removeScratch(key) }()
	// Start from the version of one left by an earlier bench, if any.
	var v driver.Version
	err := retry(ctx, func() error {
		var err error
		_, v, err = b.store.Read(ctx, key)
		if errors.Is(err, driver.ErrNotExist) {
			return nil
		}
		return err
	})
	if err != nil {
		return err
	}
	nonce := randomHex()
	var reads, writes []int64
	for i := range roundTripSamples {
		data := fmt.Appendf(nil, "objsync bench %s %d\n", nonce, i)
		err := retry(ctx, func() error {
			start := clockMonotonic()
			nv, err := b.store.Write(ctx, key, data, v)
			if err == nil {
				v = nv
				writes = append(writes, clockMonotonic()-start)
			} else if driver.IsRetryable(err) {
				// The write may have landed: try again on what is there.
				if _, cur, rerr := b.store.Read(ctx, key); rerr == nil {
					v = cur
				}
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("bench: writing the scratch object: %w", err)
		}
	}
	for range roundTripSamples {
		err := retry(ctx, func() error {
			start := clockMonotonic()
			_, _, err := b.store.Read(ctx, key)
			if err == nil {
				reads = append(reads, clockMonotonic()-start)
			}
			return err
		})
		if err != nil {
			return fmt.Errorf("bench: reading the scratch object: %w", err)
		}
	}
	r.Uncontended.ReadMS = summarise(reads).P50
	r.Uncontended.WriteMS = summarise(writes).P50
	return nil
}

// removeScratch removes the scratch object, or says on stderr that it
// could not, and reports whether it did.
func (b *bench) removeScratch(key string) bool {
	d, ok := b.store.(driver.Deleter)
	if !ok {
		out.errorf("bench: this driver cannot delete: remove the scratch object %s by hand", b.store.Location(key))
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	if err := d.Delete(ctx, key); err != nil {
		out.errorf("bench: could not remove the scratch object %s: %v", b.store.Location(key), err)
		return false
	}
	return true
}

// workerProc is a contending process, as the parent sees it.
type workerProc struct {
	n      int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stdout io.Reader
	stderr bytes.Buffer
	ready  chan struct{} // closed when it says it is ready
	exited chan struct{} // closed when it has exited and its output is read

	// Set by read before exited closes.
	holds      []holdRecord
	unfinished []waitRecord
	done       *workerDone
	err        error
}

// contended runs the contending processes and gathers their holds into
// b.holds. It returns the processes, whose failures are for the caller to
// report after the check of exclusion, and an error if they could not run.
func (b *bench) contended(ctx context.Context) ([]*workerProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("bench: cannot run contending processes: %w", err)
	}
	total := b.o.procs * b.o.goroutines * b.o.holds
	var held atomic.Int64
	start := time.Now()
	b.progress.setFunc(func() string {
		if total == 0 {
			return fmt.Sprintf("contended: %d holds, %s of %v", held.Load(), time.Since(start).Round(100*time.Millisecond), b.o.duration)
		}
		return fmt.Sprintf("contended: %d of %d holds", held.Load(), total)
	})
	var workers []*workerProc
	// However this ends, the processes stop when their standard input
	// does, releasing any hold, and are waited for.
	defer func() {
		for _, w := range workers {
			w.stdin.Close()
		}
		for _, w := range workers {
			<-w.exited
		}
	}()
	for n := range b.o.procs {
		spec := workerSpec{DSN: b.o.dsn, Driver: b.o.driver, Proc: n, Goroutines: b.o.goroutines,
			Holds: b.o.holds, Duration: b.o.duration, Hold: b.o.hold, TTL: b.o.ttl, Queue: b.o.queue}
		w, err := startWorker(exe, spec, &held)
		if err != nil {
			return workers, err
		}
		workers = append(workers, w)
	}
	for _, w := range workers {
		select {
		case <-w.ready:
		case <-w.exited:
			return workers, w.failure()
		case <-ctx.Done():
			return workers, ctx.Err()
		}
	}
	for _, w := range workers {
		io.WriteString(w.stdin, "go\n") // a process that died says so below
	}
	for _, w := range workers {
		select {
		case <-w.exited:
		case <-ctx.Done():
			for _, w := range workers {
				w.stdin.Close()
			}
			<-w.exited
		}
		b.holds = append(b.holds, w.holds...)
	}
	return workers, ctx.Err()
}

func startWorker(exe string, spec workerSpec, held *atomic.Int64) (*workerProc, error) {
	specJSON, _ := json.Marshal(spec) // cannot fail: plain fields
	w := &workerProc{n: spec.Proc, ready: make(chan struct{}), exited: make(chan struct{})}
	w.cmd = exec.Command(exe, "bench")
	w.cmd.Env = append(os.Environ(), benchWorkerEnv+"="+string(specJSON))
	w.cmd.Stderr = &w.stderr
	var err error
	if w.stdin, err = w.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if w.stdout, err = w.cmd.StdoutPipe(); err != nil {
		return nil, err
	}
	if err := w.cmd.Start(); err != nil {
		return nil, fmt.Errorf("bench: cannot run a contending process: %w", err)
	}
	go w.read(held)
	return w, nil
}

// read gathers the process's output until it exits.
func (w *workerProc) read(held *atomic.Int64) {
	defer close(w.exited)
	lines := bufio.NewScanner(w.stdout)
	for lines.Scan() {
		var l workerLine
		if err := json.Unmarshal(lines.Bytes(), &l); err != nil {
			w.err = fmt.Errorf("unreadable output %q: %w", lines.Text(), err)
			w.cmd.Process.Kill() // it would block writing to a pipe nobody reads
			break
		}
		switch {
		case l.Ready:
			close(w.ready)
		case l.Hold != nil:
			w.holds = append(w.holds, *l.Hold)
			held.Add(1)
		case l.Waited != nil:
			w.unfinished = append(w.unfinished, *l.Waited)
		case l.Done != nil:
			w.done = l.Done
		}
	}
	if err := w.cmd.Wait(); w.err == nil && w.done == nil {
		w.err = err
	}
}

// failure describes how a process that did not finish its work failed,
// or returns nil if it did.
func (w *workerProc) failure() error {
	why := ""
	switch {
	case w.err != nil:
		why = w.err.Error()
	case w.done == nil:
		why = "it exited before it was done"
	case w.done.Err != "":
		why = w.done.Err
	default:
		return nil
	}
	if said := strings.TrimSpace(w.stderr.String()); said != "" {
		why += ": " + withoutPrefix(said)
	}
	return fmt.Errorf("bench: contending process %d: %s", w.n, why)
}

func workerFailure(workers []*workerProc) error {
	for _, w := range workers {
		if err := w.failure(); err != nil {
			return err
		}
	}
	return nil
}
