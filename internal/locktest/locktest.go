// Package locktest is the lock protocol's test suite, written once and run
// on every store: on mem and file by the root package's tests, and on real
// servers by the integration tests. It needs nothing from a store but the
// driver contract; faults are injected by a wrapping client.
package locktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
)

// Harness returns the store to test and a lock key in it that no other
// call has used.
type Harness func(t *testing.T) (store driver.Store, key string)

// Run runs the lock suite.
func Run(t *testing.T, h Harness) {
	run(t, h, suite, false)
}

// RunQueue runs the lock suite on queue locks (objsync.WithQueue): the
// tests of what both kinds promise, and those of the queue kind.
func RunQueue(t *testing.T, h Harness) {
	run(t, h, append(queueSuite, queueOnly...), true)
}

// queueOnly are the tests of the queue kind alone.
var queueOnly = []lockTest{
	{"LastTicket", testLastTicket},
}

type lockTest struct {
	name string
	test func(*testing.T, driver.Store, string)
}

func run(t *testing.T, h Harness, tests []lockTest, queue bool) {
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, key := h(t)
			if queue {
				s = queueKind{s}
			}
			tc.test(t, s, key)
		})
	}
}

// queueSuite is the part of the suite that holds for both kinds; the rest
// tests the plain kind's costs (a queue lock's: TestQueueUncontendedCost),
// its last fence (a queue lock's: LastTicket) and elections, which need a
// plain lock.
var queueSuite = slices.DeleteFunc(slices.Clone(suite), func(tc lockTest) bool {
	switch tc.name {
	case "Cost", "LastFence", "ProclaimLateWrite", "StoreClock":
		return true
	}
	return false
})

var suite = []lockTest{
	{"BadTTL", testBadTTL},
	{"LockUnlock", testLockUnlock},
	{"Cost", testCost},
	{"ContendingClients", testContendingClients},
	{"RaceForNewKey", testRaceForNewKey},
	{"LocalWaiters", testLocalWaiters},
	{"TakeoverWaitsTTL", testTakeoverWaitsTTL},
	{"TryLocksTakeOver", testTryLocksTakeOver},
	{"StoreClock", testStoreClock},
	{"NoTakeoverWhileRenewing", testNoTakeoverWhileRenewing},
	{"LossBeforeDeadline", testLossBeforeDeadline},
	{"StaleUnlock", testStaleUnlock},
	{"UnlockAfterExpiry", testUnlockAfterExpiry},
	{"AmbiguousWrites", testAmbiguousWrites},
	{"RefusedWrites", testRefusedWrites},
	{"NotALock", testNotALock},
	{"LockHonoursContext", testLockHonoursContext},
	{"TryLockWithinProcess", testTryLockWithinProcess},
	{"CloseReleases", testCloseReleases},
	{"Break", testBreak},
	{"LateAnswer", testLateAnswer},
	{"SlowClientYields", testSlowClientYields},
	{"DoneWhileStoreHangs", testDoneWhileStoreHangs},
	{"LostHoldFreesLocalWaiters", testLostHoldFreesLocalWaiters},
	{"CloseStopsLock", testCloseStopsLock},
	{"HugeBackoff", testHugeBackoff},
	{"LastFence", testLastFence},
	{"TryLockBounded", testTryLockBounded},
	{"UnlockAnswerLost", testUnlockAnswerLost},
	{"BreakLateWrite", testBreakLateWrite},
	{"ForeignObjectOverHold", testForeignObjectOverHold},
	{"ReleaseFatalError", testReleaseFatalError},
	{"UnreachableStore", testUnreachableStore},
	{"DoneBeforeRelease", testDoneBeforeRelease},
	{"ProclaimLateWrite", testProclaimLateWrite},
	{"GiveUpBounded", testGiveUpBounded},
	{"OutageRiddenOut", testOutageRiddenOut},
	{"QueueOrder", testQueueOrder},
	{"QueueWaiterGivesUp", testQueueWaiterGivesUp},
	{"QueueDeadWaiter", testQueueDeadWaiter},
	{"QueueChurn", testQueueChurn},
	{"HandOffAnswerLost", testHandOffAnswerLost},
}

// open returns a Mutex on its own client, closed when the test ends.
func open(t *testing.T, c *client, key string, opts ...objsync.Option) *objsync.Mutex {
	m := newMutex(c, key, opts...)
	t.Cleanup(func() { m.Close() })
	return m
}

// newMutex returns a Mutex on c, of the kind the suite runs.
func newMutex(c *client, key string, opts ...objsync.Option) *objsync.Mutex {
	if c.queue {
		opts = append([]objsync.Option{objsync.WithQueue()}, opts...)
	}
	return objsync.NewMutex(c, key, opts...)
}

func lockOrFatal(t *testing.T, m *objsync.Mutex, ttl time.Duration) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fence, err := m.Lock(ctx, ttl)
	if err != nil {
		t.Fatalf("Lock: %v", err)
	}
	return fence
}

func unlockOrFatal(t *testing.T, m *objsync.Mutex) {
	t.Helper()
	if err := m.Unlock(context.Background()); err != nil {
		t.Fatalf("Unlock: %v", err)
	}
}

func inspect(t *testing.T, m *objsync.Mutex) objsync.State {
	t.Helper()
	st, err := m.Inspect(context.Background())
	if err != nil {
		t.Fatalf("Inspect: %v", err)
	}
	return st
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func testBadTTL(t *testing.T, s driver.Store, key string) {
	m := open(t, newClient(s, "a"), key)
	for _, ttl := range []time.Duration{0, -time.Second, 50 * time.Millisecond, 100*time.Millisecond + 500*time.Microsecond,
		objsync.MaxTTL + time.Millisecond, 2562047 * time.Hour, time.Duration(math.MaxInt64 - math.MaxInt64%int64(time.Millisecond))} {
		if _, err := m.Lock(context.Background(), ttl); err == nil {
			t.Errorf("Lock(ttl %v) succeeded", ttl)
		}
		if _, _, err := m.TryLock(context.Background(), ttl); err == nil {
			t.Errorf("TryLock(ttl %v) succeeded", ttl)
		}
	}
	if st := inspect(t, m); st.Exists {
		t.Fatalf("a refused Lock wrote the object: %+v", st)
	}
}

func testLockUnlock(t *testing.T, s driver.Store, key string) {
	m := open(t, newClient(s, "a"), key, objsync.WithValue("worker-7"))
	if err := m.Unlock(context.Background()); !errors.Is(err, objsync.ErrNotHeld) {
		t.Fatalf("Unlock without a hold: %v", err)
	}
	if !isClosed(m.Done()) || !errors.Is(m.Err(), objsync.ErrNotHeld) || m.Fence() != 0 {
		t.Fatal("before any hold: Done open, Err not ErrNotHeld or Fence not 0")
	}
	host, _ := os.Hostname()
	for want := int64(1); want <= 3; want++ {
		fence := lockOrFatal(t, m, time.Minute)
		if fence != want || m.Fence() != want {
			t.Fatalf("fence = %d, Fence() = %d, want %d", fence, m.Fence(), want)
		}
		done := m.Done()
		if isClosed(done) || m.Err() != nil {
			t.Fatalf("while held: Done closed or Err = %v", m.Err())
		}
		st := inspect(t, m)
		if !st.Held || st.Fence != want || st.Value != "worker-7" || st.TTL != time.Minute ||
			st.PID != os.Getpid() || st.Host != host || st.Holder == "" {
			t.Fatalf("Inspect while held = %+v", st)
		}
		unlockOrFatal(t, m)
		if !isClosed(done) || !errors.Is(m.Err(), objsync.ErrNotHeld) || m.Fence() != 0 {
			t.Fatalf("after Unlock: Done open, or Err = %v, or Fence = %d", m.Err(), m.Fence())
		}
		// Free: the last holder's fields.
		if st := inspect(t, m); st.Held || st.Fence != want || st.Value != "worker-7" || st.PID != os.Getpid() ||
			st.Host != host || st.Holder == "" || st.AcquiredAt.IsZero() {
			t.Fatalf("Inspect after Unlock = %+v", st)
		}
	}
	if err := m.Unlock(context.Background()); !errors.Is(err, objsync.ErrNotHeld) {
		t.Fatalf("second Unlock: %v", err)
	}
}

// testCost counts store requests: after the first acquisition, an
// uncontended Lock and Unlock cost one write each.
func testCost(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "a")
	m := open(t, c, key)
	lockOrFatal(t, m, time.Minute)
	unlockOrFatal(t, m)
	if r, w := c.reads.Load(), c.writes.Load(); r != 1 || w != 2 {
		t.Fatalf("first Lock+Unlock: %d reads, %d writes; want 1 and 2", r, w)
	}
	for range 5 {
		c.resetCounts()
		lockOrFatal(t, m, time.Minute)
		unlockOrFatal(t, m)
		if r, w := c.reads.Load(), c.writes.Load(); r != 0 || w != 2 {
			t.Fatalf("later Lock+Unlock: %d reads, %d writes; want 0 and 2", r, w)
		}
	}
}

// testContendingClients has 16 clients, each its own process as far as
// the protocol knows, take turns on one lock.
func testContendingClients(t *testing.T, s driver.Store, key string) {
	const clients, holds = 16, 8
	var x exclusion
	var wg sync.WaitGroup
	for i := range clients {
		m := open(t, newClient(s, fmt.Sprint(i)), key, objsync.WithBackoff(time.Millisecond, 20*time.Millisecond))
		wg.Go(func() {
			for range holds {
				fence, err := m.Lock(context.Background(), time.Minute)
				if err != nil {
					x.fail(err)
					return
				}
				x.enter(fence)
				time.Sleep(time.Millisecond)
				x.leave()
				if err := m.Unlock(context.Background()); err != nil {
					x.fail(err)
				}
			}
		})
	}
	wg.Wait()
	x.check(t, clients*holds)
	if last := x.fences[len(x.fences)-1]; last != clients*holds {
		t.Fatalf("last fence %d, want %d", last, clients*holds)
	}
}

// testRaceForNewKey has 16 clients try at once to take a lock whose object
// was never created: exactly one gets it, with fence 1.
func testRaceForNewKey(t *testing.T, s driver.Store, key string) {
	const clients = 16
	var (
		start   = make(chan struct{})
		wg      sync.WaitGroup
		mu      sync.Mutex
		winners []int64
		errs    []error
	)
	for i := range clients {
		m := open(t, newClient(s, fmt.Sprint(i)), key)
		wg.Go(func() {
			<-start
			ok, fence, err := m.TryLock(context.Background(), time.Minute)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				errs = append(errs, err)
			}
			if ok {
				winners = append(winners, fence)
			}
		})
	}
	close(start)
	wg.Wait()
	if len(errs) > 0 {
		t.Fatalf("%d TryLocks failed, first: %v", len(errs), errs[0])
	}
	if len(winners) != 1 || winners[0] != 1 {
		t.Fatalf("winners' fences %v, want exactly one, fence 1", winners)
	}
}

// testLocalWaiters has 16 goroutines of one process wait on a lock held by
// another process: only one of them joins the lock's queue and polls the
// store, the other process's release hands it the lock, and then they hand
// it on locally, one write to take and one to free.
func testLocalWaiters(t *testing.T, s driver.Store, key string) {
	const waiters = 16
	other := open(t, newClient(s, "other"), key)
	lockOrFatal(t, other, time.Minute)

	local := newClient(s, "local")
	local.latency = 2 * time.Millisecond // so that concurrent polls would overlap
	var x exclusion
	var wg sync.WaitGroup
	for range waiters {
		m := open(t, local, key, objsync.WithBackoff(time.Millisecond, 5*time.Millisecond))
		wg.Go(func() {
			fence, err := m.Lock(context.Background(), time.Minute)
			if err != nil {
				x.fail(err)
				return
			}
			x.enter(fence)
			x.leave()
			if err := m.Unlock(context.Background()); err != nil {
				x.fail(err)
			}
		})
	}
	// One write joins the queue (a slow store may take a while), and no
	// other follows while the lock is held elsewhere.
	for deadline := time.Now().Add(10 * time.Second); local.writes.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if local.writes.Load() != 1 || local.reads.Load() == 0 {
		t.Fatalf("while held elsewhere: %d writes, %d reads", local.writes.Load(), local.reads.Load())
	}
	unlockOrFatal(t, other)
	wg.Wait()
	x.check(t, waiters)
	if got := local.maxInFlight(); got != 1 {
		t.Fatalf("%d requests in flight at once, want 1 poller", got)
	}
	if got := local.writes.Load(); got != 2*waiters {
		t.Fatalf("%d writes for %d holds, want %d", got, waiters, 2*waiters)
	}
}

// writeDeadHolder stores a held lock whose holder is gone, with wall-clock
// times off by skew, and returns its fence: a plain lock at fence 41, or a
// queue lock whose first ticket holds.
func writeDeadHolder(t *testing.T, s driver.Store, key string, ttl, skew time.Duration) int64 {
	t.Helper()
	at := time.Now().Add(skew).UTC().Format(time.RFC3339Nano)
	fence, held := int64(41), key
	if isQueue(s) {
		marker := fmt.Sprintf(`{"objsync_lock":1,"state":"queue","slots":64,"acquired_at":%q,"written_at":%q}`, at, at)
		if _, err := s.Write(context.Background(), key, []byte(marker), ""); err != nil {
			t.Fatal(err)
		}
		fence, held = 1, key+".queue/t01"
	}
	obj := fmt.Sprintf(`{"objsync_lock":1,"state":"held","holder":"dead","fence":%d,"seq":1,"ttl_ms":%d,"acquired_at":%q,"written_at":%q}`,
		fence, ttl.Milliseconds(), at, at)
	if _, err := s.Write(context.Background(), held, []byte(obj), ""); err != nil {
		t.Fatal(err)
	}
	return fence
}

// isQueue reports whether the suite runs queue locks on s.
func isQueue(s driver.Store) bool {
	_, ok := s.(queueKind)
	return ok
}

// testTakeoverWaitsTTL: a lock whose holder is gone is taken over only
// after the contender has seen it unchanged for the TTL and the drift
// margin, whatever the wall-clock times in the object say.
func testTakeoverWaitsTTL(t *testing.T, s driver.Store, key string) {
	const ttl = 300 * time.Millisecond
	minWait := ttl + ttl/100
	for i, skew := range []time.Duration{-5 * time.Hour, 0, 5 * time.Hour} {
		t.Run(fmt.Sprintf("skew %v", skew), func(t *testing.T) {
			key := fmt.Sprintf("%s-%d", key, i)
			dead := writeDeadHolder(t, s, key, ttl, skew)
			m := open(t, newClient(s, "a"), key)
			start := time.Now()
			if ok, _, err := m.TryLock(context.Background(), time.Minute); ok || err != nil {
				t.Fatalf("TryLock on a fresh dead holder = %v, %v", ok, err)
			}
			fence := lockOrFatal(t, m, time.Minute)
			if waited := time.Since(start); waited < minWait {
				t.Fatalf("took over after %v, want at least %v", waited, minWait)
			}
			if fence != dead+1 {
				t.Fatalf("fence after takeover = %d, want %d", fence, dead+1)
			}
			unlockOrFatal(t, m)
		})
	}
}

// testTryLocksTakeOver: TryLocks of one process, none of which waits, take
// over a lock whose holder is gone once the process has seen it unchanged
// for the TTL and the drift margin, as cron jobs in one process would.
func testTryLocksTakeOver(t *testing.T, s driver.Store, key string) {
	const ttl = 300 * time.Millisecond
	dead := writeDeadHolder(t, s, key, ttl, 0)
	m := open(t, newClient(s, "a"), key)
	start := time.Now()
	for {
		ok, fence, err := m.TryLock(context.Background(), time.Minute)
		waited := time.Since(start)
		switch {
		case err != nil:
			t.Fatalf("TryLock: %v", err)
		case ok && waited < ttl+ttl/100:
			t.Fatalf("took over after %v, want at least %v", waited, ttl+ttl/100)
		case ok && fence != dead+1:
			t.Fatalf("fence after takeover = %d, want %d", fence, dead+1)
		case ok:
			unlockOrFatal(t, m)
			return
		case waited > 20*ttl:
			t.Fatalf("TryLock every 10ms still fails after %v on a lock whose holder is gone", waited)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testStoreClock: on a store that tells ages (driver.AgeReader), a fresh
// process opened WithStoreClock takes over a lock whose holder is gone in
// one read once the store's clock says it has been unchanged for the TTL
// and 1%; never before that much time has passed since the holder's write
// was sent.
func testStoreClock(t *testing.T, s driver.Store, key string) {
	if _, ok := s.(driver.AgeReader); !ok {
		t.Skip("the store does not tell ages (driver.AgeReader), which is optional")
	}
	const ttl = time.Second
	sent := time.Now()
	dead := writeDeadHolder(t, s, key, ttl, 0)
	for i := 0; ; i++ {
		// A new client each time: a process that has just started.
		m := newMutex(newClient(s, fmt.Sprint("fresh-", i)), key, objsync.WithStoreClock())
		ok, fence, err := m.TryLock(context.Background(), time.Minute)
		since := time.Since(sent)
		switch {
		case err != nil:
			m.Close()
			t.Fatalf("TryLock: %v", err)
		case ok && since < ttl+ttl/100:
			m.Close()
			t.Fatalf("took over %v after the dead holder's write was sent, before its TTL and 1%%", since)
		case ok && fence != dead+1:
			m.Close()
			t.Fatalf("fence after takeover = %d, want %d", fence, dead+1)
		case ok:
			t.Logf("a fresh process took over in one read %v after the dead holder's write was sent", since)
			unlockOrFatal(t, m)
			m.Close()
			return
		case since > ttl+5*time.Second:
			m.Close()
			t.Fatalf("fresh processes WithStoreClock still fail to take over %v after the dead holder's write", since)
		}
		m.Close()
		time.Sleep(100 * time.Millisecond)
	}
}

// testNoTakeoverWhileRenewing: a holder that keeps renewing keeps the lock
// for many TTLs.
func testNoTakeoverWhileRenewing(t *testing.T, s driver.Store, key string) {
	// Renewals must succeed here: a lease long enough for a real server
	// under the load of CI (with 200ms, a MinIO PUT outlasted the 178ms a
	// renewal has; with 1s, fake-gcs-server once stalled a request for
	// longer than the 593ms a renewal then has).
	const ttl = renewingTTL
	holder := open(t, newClient(s, "holder"), key)
	other := open(t, newClient(s, "other"), key)
	fence := lockOrFatal(t, holder, ttl)
	ctx, cancel := context.WithTimeout(context.Background(), 2*ttl)
	defer cancel()
	if _, err := other.Lock(ctx, ttl); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock against a renewing holder: %v", err)
	}
	if holder.Err() != nil || isClosed(holder.Done()) {
		t.Fatalf("holder lost the lock while renewing: %v", holder.Err())
	}
	unlockOrFatal(t, holder)
	// A queue lock's fences skip the tickets of Locks that gave up.
	if got := lockOrFatal(t, other, time.Minute); got <= fence {
		t.Fatalf("fence after hand-over = %d, want more than %d", got, fence)
	}
	unlockOrFatal(t, other)
}

// testLossBeforeDeadline cuts a holder off from the store: it must end
// its hold before its lease ends, and the other client must take over
// only after that.
func testLossBeforeDeadline(t *testing.T, s driver.Store, key string) {
	const ttl = time.Second
	c := newClient(s, "holder")
	holder := open(t, c, key)
	other := open(t, newClient(s, "other"), key)
	lockOrFatal(t, holder, ttl)
	time.Sleep(ttl / 2) // at least one renewal
	cutAt := time.Now()
	c.set(faultCut)

	fence := lockOrFatal(t, other, time.Minute)
	tookOver := time.Now()
	if !isClosed(holder.Done()) {
		t.Fatal("another client took over while the holder still thought it held the lock")
	}
	if !errors.Is(holder.Err(), objsync.ErrLockLost) {
		t.Fatalf("holder Err = %v, want ErrLockLost", holder.Err())
	}
	// The holder's last successful renewal was sent before the cut.
	if lease := ttl - ttl/100 - ttl/20; tookOver.Sub(cutAt) < lease {
		t.Fatalf("took over %v after the cut, within the holder's lease %v", tookOver.Sub(cutAt), lease)
	}
	c.set(faultNone)
	unlockLost(t, holder, other, fence)
}

// testStaleUnlock: a holder whose lease ran out must not free the lock of
// the client that took it over.
func testStaleUnlock(t *testing.T, s driver.Store, key string) {
	const ttl = 200 * time.Millisecond
	stale := open(t, newClient(s, "stale"), key, objsync.WithoutRenewal())
	next := open(t, newClient(s, "next"), key)
	lockOrFatal(t, stale, ttl)
	<-stale.Done()
	if err := stale.Err(); !errors.Is(err, objsync.ErrLockLost) || !strings.Contains(err.Error(), "renewal is off") {
		t.Fatalf("Err after the lease ran out = %v", err)
	}
	unlockLost(t, stale, next, lockOrFatal(t, next, time.Minute))
}

// renewingTTL is the lease of the tests in which a holder must keep
// renewing on a real server, whatever hiccup it has.
const renewingTTL = 3 * time.Second

// unlockLost checks that Unlock of lost, whose hold was lost, reports the
// loss and leaves the hold of next, with fence, as it was; then it unlocks
// next.
func unlockLost(t *testing.T, lost, next *objsync.Mutex, fence int64) {
	t.Helper()
	if err := lost.Unlock(context.Background()); !errors.Is(err, objsync.ErrLockLost) {
		t.Fatalf("Unlock of a lost hold = %v, want ErrLockLost", err)
	}
	if st := inspect(t, next); !st.Held || st.Fence != fence || next.Err() != nil {
		t.Fatalf("the lost hold's Unlock changed the new one: %+v, Err %v", st, next.Err())
	}
	unlockOrFatal(t, next)
}

// testUnlockAfterExpiry: when nobody took over, Unlock of an expired hold
// frees the lock but still reports the loss.
func testUnlockAfterExpiry(t *testing.T, s driver.Store, key string) {
	m := open(t, newClient(s, "a"), key, objsync.WithoutRenewal())
	lockOrFatal(t, m, objsync.MinTTL)
	<-m.Done()
	if err := m.Unlock(context.Background()); !errors.Is(err, objsync.ErrLockLost) {
		t.Fatalf("Unlock = %v, want ErrLockLost", err)
	}
	if st := inspect(t, m); st.Held {
		t.Fatalf("lock still held after Unlock: %+v", st)
	}
}

// testAmbiguousWrites: every write reaches the store but its answer is
// lost. The holder id in the object settles each one.
func testAmbiguousWrites(t *testing.T, s driver.Store, key string) {
	// Renewals must succeed here: a lease long enough for a real server
	// under the load of CI (with 200ms, a MinIO PUT outlasted the 178ms a
	// renewal has; with 1s, fake-gcs-server once stalled a request for
	// longer than the 593ms a renewal then has).
	const ttl = renewingTTL
	c := newClient(s, "a")
	m := open(t, c, key)
	other := open(t, newClient(s, "other"), key)
	c.set(faultAmbiguous)
	if fence := lockOrFatal(t, m, ttl); fence != 1 {
		t.Fatalf("fence = %d", fence)
	}
	time.Sleep(ttl) // three renewals, all ambiguous
	if m.Err() != nil {
		t.Fatalf("hold ended: %v", m.Err())
	}
	if ok, _, err := other.TryLock(context.Background(), ttl); ok || err != nil {
		t.Fatalf("other TryLock = %v, %v", ok, err)
	}
	unlockOrFatal(t, m)
	c.set(faultNone)
	if st := inspect(t, m); st.Held || st.Fence != 1 {
		t.Fatalf("after Unlock: %+v", st)
	}
	if fence := lockOrFatal(t, other, time.Minute); fence != 2 {
		t.Fatalf("next fence = %d, want 2", fence)
	}
	unlockOrFatal(t, other)
}

// testRefusedWrites: writes that fail without effect are retried.
func testRefusedWrites(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "a")
	m := open(t, c, key)
	c.set(faultRefuseHalf)
	for want := int64(1); want <= 3; want++ {
		if fence := lockOrFatal(t, m, time.Minute); fence != want {
			t.Fatalf("fence = %d, want %d", fence, want)
		}
		unlockOrFatal(t, m)
	}
}

// testNotALock: objsync refuses to touch an object that is not its own.
func testNotALock(t *testing.T, s driver.Store, key string) {
	for i, data := range [][]byte{
		[]byte(`{"name":"report.csv","size":12}`),
		{0xff, 0xd8, 0xff, 0xe0, 0, 1},
		[]byte(`{"objsync_lock":1,"state":"held","holder":"abc","fen`),
		[]byte(`{"objsync_lock":2,"state":"held","holder":"abc","fence":3,"ttl_ms":1000}`),
		[]byte(`{"objsync_lock":1,"state":"maybe","holder":"abc","fence":3,"ttl_ms":1000}`),
		// TTLs out of range, which would overflow or leave no lease.
		[]byte(`{"objsync_lock":1,"state":"held","holder":"abc","fence":3,"ttl_ms":9300000000000}`),
		[]byte(`{"objsync_lock":1,"state":"held","holder":"abc","fence":3,"ttl_ms":2592000001}`),
		[]byte(`{"objsync_lock":1,"state":"held","holder":"abc","fence":3,"ttl_ms":50}`),
		[]byte(`{"objsync_lock":1,"state":"free","holder":"abc","fence":3,"ttl_ms":-1}`),
		{},
	} {
		key := fmt.Sprintf("%s-%d", key, i)
		v, err := s.Write(context.Background(), key, data, "")
		if err != nil {
			t.Fatal(err)
		}
		m := open(t, newClient(s, "a"), key)
		_, lockErr := m.Lock(context.Background(), time.Minute)
		_, _, tryErr := m.TryLock(context.Background(), time.Minute)
		_, inspectErr := m.Inspect(context.Background())
		for _, err := range []error{lockErr, tryErr, inspectErr} {
			if !errors.Is(err, objsync.ErrNotLock) || !strings.Contains(err.Error(), s.Location(key)) {
				t.Fatalf("object %q: err = %v, want ErrNotLock naming %s", data, err, s.Location(key))
			}
		}
		got, gotV, err := s.Read(context.Background(), key)
		if err != nil || !bytes.Equal(got, data) || gotV != v {
			t.Fatalf("object %q was changed (err %v)", data, err)
		}
	}
}

func testLockHonoursContext(t *testing.T, s driver.Store, key string) {
	holder := open(t, newClient(s, "holder"), key)
	local := newClient(s, "local")
	waiter := open(t, local, key)
	lockOrFatal(t, holder, time.Minute)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := waiter.Lock(ctx, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with a context that ends: %v", err)
	}

	// A second goroutine of the same process waits on the first one.
	pollCtx, stopPolling := context.WithCancel(context.Background())
	polled := make(chan error)
	go func() { _, err := waiter.Lock(pollCtx, time.Minute); polled <- err }()
	time.Sleep(20 * time.Millisecond)
	ctx2, cancel2 := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel2()
	if _, err := open(t, local, key).Lock(ctx2, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("second local Lock: %v", err)
	}
	stopPolling()
	if err := <-polled; !errors.Is(err, context.Canceled) {
		t.Fatalf("polling Lock: %v", err)
	}
	unlockOrFatal(t, holder)
}

func testTryLockWithinProcess(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "a")
	a, b := open(t, c, key), open(t, c, key)
	if ok, fence, err := a.TryLock(context.Background(), time.Minute); !ok || fence != 1 || err != nil {
		t.Fatalf("TryLock = %v, %d, %v", ok, fence, err)
	}
	c.resetCounts()
	if ok, _, err := b.TryLock(context.Background(), time.Minute); ok || err != nil {
		t.Fatalf("TryLock while held in this process = %v, %v", ok, err)
	}
	if n := c.reads.Load() + c.writes.Load(); n != 0 {
		t.Fatalf("TryLock against a local holder made %d requests", n)
	}
	if err := b.Unlock(context.Background()); !errors.Is(err, objsync.ErrNotHeld) {
		t.Fatalf("Unlock of a Mutex that does not hold: %v", err)
	}
	unlockOrFatal(t, a)
	if ok, fence, err := b.TryLock(context.Background(), time.Minute); !ok || fence != 2 || err != nil {
		t.Fatalf("TryLock after Unlock = %v, %d, %v", ok, fence, err)
	}
	unlockOrFatal(t, b)
}

func testCloseReleases(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "a")
	m := newMutex(c, key)
	lockOrFatal(t, m, time.Minute)
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if !isClosed(m.Done()) {
		t.Fatal("Done open after Close")
	}
	if _, err := m.Lock(context.Background(), time.Minute); !errors.Is(err, objsync.ErrClosed) {
		t.Fatalf("Lock after Close: %v", err)
	}
	other := open(t, newClient(s, "other"), key)
	if ok, _, err := other.TryLock(context.Background(), time.Minute); !ok || err != nil {
		t.Fatalf("Close did not free the lock: %v", err)
	}
	unlockOrFatal(t, other)
}

// testBreak: a broken lock is free for others at once; its holder learns
// of it at its next renewal and its Unlock leaves the new holder alone.
func testBreak(t *testing.T, s driver.Store, key string) {
	ttl := 300 * time.Millisecond
	if isQueue(s) {
		// Renewals every 89ms outran every break of a queue lock on
		// Ceph RGW, whose writes are slow.
		ttl = time.Second
	}
	holder := open(t, newClient(s, "holder"), key, objsync.WithValue("stuck job"))
	breaker := open(t, newClient(s, "breaker"), key)
	if _, err := breaker.Break(context.Background()); !errors.Is(err, objsync.ErrNotHeld) {
		t.Fatalf("Break of a lock never taken: %v", err)
	}
	fence := lockOrFatal(t, holder, ttl)
	st, err := breaker.Break(context.Background())
	if err != nil || !st.Held || st.Fence != fence || st.Value != "stuck job" {
		t.Fatalf("Break = %+v, %v", st, err)
	}
	if got := lockOrFatal(t, breaker, time.Minute); got != fence+1 {
		t.Fatalf("fence after Break = %d, want %d", got, fence+1)
	}
	<-holder.Done()
	if !errors.Is(holder.Err(), objsync.ErrLockLost) {
		t.Fatalf("holder Err after Break = %v", holder.Err())
	}
	if err := holder.Unlock(context.Background()); !errors.Is(err, objsync.ErrLockLost) {
		t.Fatalf("holder Unlock after Break = %v", err)
	}
	if breaker.Err() != nil {
		t.Fatalf("the broken holder's Unlock ended the new hold: %v", breaker.Err())
	}
	unlockOrFatal(t, breaker)
	if _, err := breaker.Break(context.Background()); !errors.Is(err, objsync.ErrNotHeld) {
		t.Fatalf("Break of a free lock: %v", err)
	}
}

// RunRestart holds a lock while restart restarts the store's server
// (keeping its data), then has another client contend for the lock for
// three TTLs. Whatever the timing, the holder either kept the lock by
// renewing after the restart, and then nobody else got it, or it reported
// the loss before anyone else got it.
func RunRestart(t *testing.T, s driver.Store, key string, restart func(t *testing.T)) {
	const ttl = 3 * time.Second
	holder := open(t, newClient(s, "holder"), key)
	contender := open(t, newClient(s, "contender"), key)
	fence := lockOrFatal(t, holder, ttl)
	restart(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*ttl)
	defer cancel()
	got, err := contender.Lock(ctx, ttl)
	switch {
	case err == nil:
		if !isClosed(holder.Done()) {
			t.Fatal("two holders: the contender got the lock while the holder's hold was in force")
		}
		if !errors.Is(holder.Err(), objsync.ErrLockLost) || got <= fence {
			t.Fatalf("holder Err = %v, contender fence %d after %d", holder.Err(), got, fence)
		}
		t.Logf("the holder reported the loss (%v); the contender took over with fence %d", holder.Err(), got)
		unlockOrFatal(t, contender)
	case errors.Is(err, context.DeadlineExceeded):
		if holder.Err() != nil {
			t.Fatalf("the holder lost the lock (%v), yet nobody could take it for %v", holder.Err(), 3*ttl)
		}
		if st := inspect(t, contender); !st.Held || st.Fence != fence {
			t.Fatalf("after the restart the lock is %+v, want held with fence %d", st, fence)
		}
		t.Logf("the holder renewed after the restart and kept the lock")
		unlockOrFatal(t, holder)
	default:
		t.Fatalf("contender Lock: %v", err)
	}
}
