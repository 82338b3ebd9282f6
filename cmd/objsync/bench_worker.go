//go:build unix

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/internal/countstore"
)

// benchWorkerEnv holds the JSON workerSpec of a contending process of
// objsync bench, which runs "objsync bench" again with it set. It is an
// environment variable rather than arguments so that the DSN stays out of
// ps(1), and so that no flag of the command has to be hidden.
const benchWorkerEnv = "OBJSYNC_BENCH_WORKER"

// workerSpec is what a contending process does.
type workerSpec struct {
	DSN        string        `json:"dsn"`
	Driver     string        `json:"driver"`
	Proc       int           `json:"proc"`
	Goroutines int           `json:"goroutines"`
	Holds      int           `json:"holds"`    // per goroutine; 0 with Duration
	Duration   time.Duration `json:"duration"` // 0 with Holds
	Hold       time.Duration `json:"hold"`
	TTL        time.Duration `json:"ttl"`
	Queue      bool          `json:"queue,omitempty"` // a queue lock
}

// workerLine is one line a worker prints on its standard output: ready,
// then a hold at a time, then done.
type workerLine struct {
	Ready  bool        `json:"ready,omitempty"`
	Hold   *holdRecord `json:"hold,omitempty"`
	Waited *waitRecord `json:"waited,omitempty"` // a Lock still waiting at the end
	Done   *workerDone `json:"done,omitempty"`
}

type workerDone struct {
	Requests countstore.Counts `json:"requests"`
	Err      string            `json:"error,omitempty"` // the first failure of a goroutine
}

// runBenchWorker is a contending process. It opens its Mutexes, says it
// is ready, and starts on the parent's "go", so that all processes start
// together. When its standard input ends (the parent was interrupted, or
// died) it stops after the hold under way and releases the lock: an
// interrupted bench leaves no lock held for its ttl.
func runBenchWorker(specJSON string) error {
	var spec workerSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return fmt.Errorf("bench worker: %s: %w", benchWorkerEnv, err)
	}
	out.hideSecretsOf(spec.DSN)
	// Ctrl-C or Ctrl-\, and the SIGTERM of timeout(1) or a service
	// manager, reach the whole process group: the parent decides, and
	// closing stdin stops this worker after it released its holds.
	// SIGPIPE too: a parent that died must not kill a worker in the middle
	// of a hold.
	signal.Ignore(append(terminating, syscall.SIGPIPE)...)
	store, key, err := openStore(spec.DSN, spec.Driver)
	if err != nil {
		return err
	}
	counted := countstore.New(store) // one for all goroutines, so that they share
	mutexes := make([]*objsync.Mutex, spec.Goroutines)
	for g := range mutexes {
		mutexes[g] = objsync.NewMutex(counted, key, queueKind{&spec.Queue}.options()...)
		defer mutexes[g].Close()
	}
	var emitMu sync.Mutex
	emit := func(l workerLine) {
		data, _ := json.Marshal(l) // cannot fail: plain fields
		emitMu.Lock()
		defer emitMu.Unlock()
		os.Stdout.Write(append(data, '\n'))
	}
	// The goroutines wait for the start here, so that all of them, in
	// every process, set off together.
	start := make(chan struct{})
	stop, cancel := context.WithCancel(context.Background())
	defer cancel()
	run, endRun := context.WithCancel(stop) // ended by --duration too
	defer endRun()
	var wg sync.WaitGroup
	var errOnce sync.Once
	var firstErr string
	for g, m := range mutexes {
		wg.Go(func() {
			<-start
			if err := contend(run, stop, m, spec, g, emit); err != nil {
				errOnce.Do(func() { firstErr = fmt.Sprintf("goroutine %d: %s", g, message(err)) })
			}
		})
	}
	emit(workerLine{Ready: true})
	in := bufio.NewReader(os.Stdin)
	if line, _ := in.ReadString('\n'); line != "go\n" {
		return nil // the parent gave up before the start: return, and the goroutines with it
	}
	go func() {
		io.Copy(io.Discard, in)
		cancel()
	}()
	if spec.Duration > 0 {
		time.AfterFunc(spec.Duration, endRun)
	}
	close(start)
	wg.Wait()
	emit(workerLine{Done: &workerDone{Requests: counted.Counts(), Err: firstErr}})
	return nil
}

// contend takes the lock spec.Holds times, or until run ends, holding it
// spec.Hold each time, and emits a record of every hold. stop cuts a hold
// short; run only keeps a new one from starting.
func contend(run, stop context.Context, m *objsync.Mutex, spec workerSpec, g int, emit func(workerLine)) error {
	for i := 0; spec.Duration > 0 || i < spec.Holds; i++ {
		called := clockMonotonic()
		fence, err := m.Lock(run, spec.TTL)
		if run.Err() != nil && err != nil {
			// The end of the run, not a failure; but a contender kept
			// waiting to the end must count.
			emit(workerLine{Waited: &waitRecord{Proc: spec.Proc, Goroutine: g, Called: called, Ended: clockMonotonic()}})
			return nil
		}
		if err != nil {
			return err
		}
		// Each instant is read before Err is checked: the hold was in
		// force at it only if Err is still nil after it.
		h := holdRecord{Proc: spec.Proc, Goroutine: g, Fence: fence, Called: called, Acquired: clockMonotonic()}
		inForce := m.Err() == nil
		if inForce {
			sleep(stop, spec.Hold)
			h.Released = clockMonotonic()
		}
		if lost := m.Err(); lost != nil {
			// Not a violation: the store or this process was too slow for
			// the ttl. The hold is known to have been in force only at
			// its acquisition, if then.
			if inForce {
				h.Released = h.Acquired
				emit(workerLine{Hold: &h})
			}
			ctx, cancel := context.WithTimeout(context.Background(), spec.TTL)
			m.Unlock(ctx)
			cancel()
			return fmt.Errorf("lost fence %d while holding it (a longer --ttl would do): %w", fence, lost)
		}
		ctx, cancel := context.WithTimeout(context.Background(), spec.TTL)
		err = m.Unlock(ctx)
		cancel()
		h.Unlocked = clockMonotonic()
		emit(workerLine{Hold: &h})
		if err != nil {
			return fmt.Errorf("releasing fence %d: %w", fence, err)
		}
		if stop.Err() != nil {
			return nil
		}
	}
	return nil
}

// sleep waits for d, or until ctx ends.
func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
