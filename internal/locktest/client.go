package locktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objsync/objsync/driver"
)

// errPartitioned is what a cut-off client gets from every request.
var errPartitioned = driver.Retryable(errors.New("locktest: network partition"))

// errAnswerLost is what a client answers to a write it made but whose
// answer it pretends was lost.
var errAnswerLost = driver.Retryable(errors.New("locktest: answer lost"))

// errFatalAfterWrite is what a client answers to a write it made but
// pretends failed for good, as a directory fsync failing after a rename.
var errFatalAfterWrite = errors.New("locktest: failed after the write landed")

// fault is what a client does to requests on the way to the store.
type fault int32

const (
	faultNone            fault = iota
	faultCut                   // every request fails without reaching the store
	faultAmbiguous             // writes reach the store, then fail
	faultRefuseHalf            // every other write fails without reaching the store
	faultRefuseWrites          // every write fails without reaching the store
	faultLate                  // writes fail at once and land lateBy later
	faultFatalAfterWrite       // writes reach the store, then fail for good
)

// client is one simulated process's view of a store. It has a Location of
// its own, so that Mutexes opened on different clients share nothing in
// this test process, as if they ran in different processes. It can inject
// faults, and it counts requests and the most it had in flight at once.
type client struct {
	driver.Store
	name  string
	queue bool // locks on it are opened WithQueue

	latency time.Duration // added to every request; set before use
	fault   atomic.Int32
	// hang is how long every request waits, ignoring its context, before
	// it goes to the store: a store call stuck in an fsync.
	hang atomic.Int64
	// answerDelay is how long a write's answer takes to come back after
	// the store has applied it, ignoring the context.
	answerDelay atomic.Int64
	// lateBy is how long after its failure a faultLate write lands.
	lateBy time.Duration
	late   sync.WaitGroup // writes still to land
	// onLostAnswer, if set, runs once after a faultAmbiguous write has
	// landed, before its answer is lost.
	onLostAnswer atomic.Pointer[func()]
	writeNo      atomic.Int64
	reads        atomic.Int64
	writes       atomic.Int64
	inFlight     atomic.Int64
	maxMu        sync.Mutex
	maxIn        int64
}

// queueKind is a store whose locks the suite opens WithQueue (RunQueue).
type queueKind struct{ driver.Store }

func newClient(s driver.Store, name string) *client {
	if q, ok := s.(queueKind); ok {
		return &client{Store: q.Store, name: name, queue: true}
	}
	return &client{Store: s, name: name}
}

func (c *client) Location(key string) string { return c.Store.Location(key) + "#" + c.name }

func (c *client) WriteInterval() time.Duration { return driver.WriteInterval(c.Store) }

func (c *client) set(f fault) { c.fault.Store(int32(f)) }

func (c *client) resetCounts() {
	c.reads.Store(0)
	c.writes.Store(0)
}

func (c *client) enter() func() {
	time.Sleep(c.latency + time.Duration(c.hang.Load()))
	n := c.inFlight.Add(1)
	c.maxMu.Lock()
	c.maxIn = max(c.maxIn, n)
	c.maxMu.Unlock()
	return func() { c.inFlight.Add(-1) }
}

func (c *client) maxInFlight() int64 {
	c.maxMu.Lock()
	defer c.maxMu.Unlock()
	return c.maxIn
}

func (c *client) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	data, v, _, err := c.ReadAge(ctx, key)
	return data, v, err
}

// ReadAge implements driver.AgeReader with the store's; the age is 0 if
// the store tells none.
func (c *client) ReadAge(ctx context.Context, key string) ([]byte, driver.Version, time.Duration, error) {
	defer c.enter()()
	c.reads.Add(1)
	if fault(c.fault.Load()) == faultCut {
		return nil, "", 0, errPartitioned
	}
	if ages, ok := c.Store.(driver.AgeReader); ok {
		return ages.ReadAge(ctx, key)
	}
	data, v, err := c.Store.Read(ctx, key)
	return data, v, 0, err
}

func (c *client) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	defer c.enter()()
	c.writes.Add(1)
	if d := time.Duration(c.answerDelay.Load()); d > 0 {
		defer time.Sleep(d)
	}
	switch fault(c.fault.Load()) {
	case faultCut:
		return "", errPartitioned
	case faultRefuseHalf:
		if c.writeNo.Add(1)%2 == 1 {
			return "", errPartitioned
		}
	case faultRefuseWrites:
		return "", errPartitioned
	case faultLate:
		c.late.Go(func() {
			time.Sleep(c.lateBy)
			c.Store.Write(context.Background(), key, data, ifVersion)
		})
		return "", errAnswerLost
	case faultAmbiguous, faultFatalAfterWrite:
		if _, err := c.Store.Write(ctx, key, data, ifVersion); err != nil {
			return "", err
		}
		if hook := c.onLostAnswer.Swap(nil); hook != nil {
			(*hook)()
		}
		if fault(c.fault.Load()) == faultFatalAfterWrite {
			return "", errFatalAfterWrite
		}
		return "", errAnswerLost
	}
	return c.Store.Write(ctx, key, data, ifVersion)
}

// exclusion checks that holds never overlap and that fences strictly
// increase from one hold to the next.
type exclusion struct {
	inside atomic.Int32
	mu     sync.Mutex
	fences []int64
	err    error
}

func (x *exclusion) enter(fence int64) {
	if n := x.inside.Add(1); n != 1 {
		x.fail(fmt.Errorf("%d holders at once (fence %d)", n, fence))
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if k := len(x.fences); k > 0 && fence <= x.fences[k-1] {
		x.failLocked(fmt.Errorf("fence %d after fence %d", fence, x.fences[k-1]))
	}
	x.fences = append(x.fences, fence)
}

func (x *exclusion) leave() { x.inside.Add(-1) }

func (x *exclusion) fail(err error) {
	x.mu.Lock()
	defer x.mu.Unlock()
	x.failLocked(err)
}

func (x *exclusion) failLocked(err error) {
	if x.err == nil {
		x.err = err
	}
}

func (x *exclusion) check(t *testing.T, holds int) {
	t.Helper()
	if x.err != nil {
		t.Fatal(x.err)
	}
	if len(x.fences) != holds {
		t.Fatalf("%d holds recorded, want %d", len(x.fences), holds)
	}
}
