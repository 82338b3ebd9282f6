package locktest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
)

// The tests in this file check the queue: Locks waiting on a held lock
// join a queue in the lock object, and a release hands the lock to the
// first of them.

// WaitWaiters waits until Inspect of m reports n waiters, for at most 10s.
func WaitWaiters(t *testing.T, m *objsync.Mutex, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := inspect(t, m)
		if st.Waiters == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the queue has %d waiters after 10s, want %d", st.Waiters, n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// testQueueOrder: waiters in different processes get the lock in the
// order they joined the queue, each handed it by the release before, with
// consecutive fences, for one write to join and one to release.
func testQueueOrder(t *testing.T, s driver.Store, key string) {
	const waiters = 4
	holder := open(t, newClient(s, "holder"), key)
	first := lockOrFatal(t, holder, time.Minute)

	var mu sync.Mutex
	var order []int
	var fences []int64
	errs := make(chan error, waiters)
	clients := make([]*client, waiters)
	var wg sync.WaitGroup
	for i := range waiters {
		clients[i] = newClient(s, fmt.Sprint("w", i))
		m := open(t, clients[i], key)
		wg.Go(func() {
			fence, err := m.Lock(context.Background(), time.Minute)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			order, fences = append(order, i), append(fences, fence)
			mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			if err := m.Unlock(context.Background()); err != nil {
				errs <- err
			}
		})
		WaitWaiters(t, holder, i+1)
	}
	unlockOrFatal(t, holder)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for i := range waiters {
		if order[i] != i || fences[i] != first+1+int64(i) {
			t.Fatalf("waiters got the lock in the order %v with fences %v; want 0 to %d with fences from %d", order, fences, waiters-1, first+1)
		}
		if w := clients[i].writes.Load(); w != 2 {
			t.Errorf("waiter %d made %d writes, want 2: one to join the queue, one to release", i, w)
		}
	}
	if st := inspect(t, holder); st.Held || st.Waiters != 0 {
		t.Fatalf("after the last release: %+v, want free with no waiters", st)
	}
}

// testQueueWaiterGivesUp: a waiter whose context ends leaves the queue,
// so that the release hands the lock to the one behind it at once.
func testQueueWaiterGivesUp(t *testing.T, s driver.Store, key string) {
	holder := open(t, newClient(s, "holder"), key)
	first := lockOrFatal(t, holder, time.Minute)

	quitter := open(t, newClient(s, "quitter"), key)
	ctx, cancel := context.WithCancel(context.Background())
	quit := make(chan error, 1)
	go func() { _, err := quitter.Lock(ctx, time.Minute); quit <- err }()
	WaitWaiters(t, holder, 1)
	next := open(t, newClient(s, "next"), key)
	got := make(chan error, 1)
	go func() { _, err := next.Lock(context.Background(), time.Minute); got <- err }()
	WaitWaiters(t, holder, 2)

	cancel()
	if err := <-quit; !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock whose context was cancelled = %v", err)
	}
	if st := inspect(t, holder); st.Waiters != 1 {
		t.Fatalf("%d waiters after one gave up, want 1", st.Waiters)
	}
	start := time.Now()
	unlockOrFatal(t, holder)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	// Handed over at once: far sooner than the quitter's TTL of a minute.
	// A queue lock's fences skip the quitter's ticket.
	want := first + 1
	if isQueue(s) {
		want++
	}
	if waited := time.Since(start); waited > 10*time.Second || next.Fence() != want {
		t.Fatalf("the waiter behind one that gave up got fence %d after %v; want fence %d at once", next.Fence(), waited, want)
	}
	unlockOrFatal(t, next)
}

// testQueueDeadWaiter: a waiter that dies in the queue (here, cut off from
// the store, so that it cannot leave) is handed the lock, which then
// expires: it delays the waiter behind it by the short lease a hand-off
// gives, not by its TTL of a minute: four of the dead waiter's polls at
// most, and at least a second (a plain lock), or four seconds (a queue
// lock, whose objects are written at most once a second).
func testQueueDeadWaiter(t *testing.T, s driver.Store, key string) {
	const deadTTL, pollAtMost = time.Minute, 50 * time.Millisecond
	holderClient := newClient(s, "holder")
	handoffLease := time.Second
	if holderClient.queue {
		handoffLease = 4 * time.Second
	}
	holder := open(t, holderClient, key)
	first := lockOrFatal(t, holder, time.Minute)

	deadClient := newClient(s, "dead")
	dead := open(t, deadClient, key, objsync.WithBackoff(time.Millisecond, pollAtMost))
	ctx, cancel := context.WithCancel(context.Background())
	gone := make(chan error, 1)
	go func() { _, err := dead.Lock(ctx, deadTTL); gone <- err }()
	WaitWaiters(t, holder, 1)
	next := open(t, newClient(s, "next"), key, objsync.WithBackoff(time.Millisecond, 50*time.Millisecond))
	lockCtx, lockCancel := context.WithTimeout(context.Background(), deadTTL/2)
	defer lockCancel()
	got := make(chan error, 1)
	go func() { _, err := next.Lock(lockCtx, time.Minute); got <- err }()
	WaitWaiters(t, holder, 2)
	deadClient.set(faultCut)
	cancel()
	<-gone

	start := time.Now()
	unlockOrFatal(t, holder)
	if st, err := next.Inspect(context.Background()); err != nil {
		t.Fatal(err)
	} else if st.Fence == first+1 && st.TTL >= deadTTL {
		t.Errorf("the hand-off to the dead waiter gave it a lease of %v, its whole TTL", st.TTL)
	}
	if err := <-got; err != nil {
		t.Fatalf("the waiter behind a dead one: %v after %v", err, time.Since(start))
	}
	waited := time.Since(start)
	if next.Fence() != first+2 {
		t.Fatalf("fence %d, want %d: handed to the dead waiter, then taken over", next.Fence(), first+2)
	}
	if waited > handoffLease+5*time.Second {
		t.Fatalf("the waiter behind a dead one got the lock after %v; want the hand-off lease of %v and little more", waited, handoffLease)
	}
	unlockOrFatal(t, next)
}

// testQueueChurn: waiters that join and leave the queue again and again
// change the lock object's version, but neither keep a dead holder's lock
// from expiring nor end a live holder's hold.
func testQueueChurn(t *testing.T, s driver.Store, key string) {
	const ttl, churners = 300 * time.Millisecond, 6
	// Each churner's Lock gives up after 10ms, and after time for a few
	// requests more on a slow store: a Lock that cannot finish one
	// request before it gives up cannot end a dead holder's turn either.
	giveUp := 10*time.Millisecond + 3*requestTime(t, s, key+".rtt")
	// churn starts the churners and returns what stops them, which also
	// runs when the test ends early: churners left running would spin on
	// their closed Mutexes and slow every test after.
	churn := func() (stop func()) {
		done := make(chan struct{})
		var wg sync.WaitGroup
		for i := range churners {
			m := open(t, newClient(s, fmt.Sprint("churn", i)), key, objsync.WithBackoff(time.Millisecond, 5*time.Millisecond))
			wg.Go(func() {
				for {
					select {
					case <-done:
						return
					default:
					}
					// Cancelled rather than timed out: Lock does not join
					// the queue when its deadline is near. A join that
					// lands after its Lock gave up leaves a waiter that is
					// gone, which costs its TTL: a short one.
					ctx, cancel := context.WithCancel(context.Background())
					time.AfterFunc(giveUp, cancel)
					if _, err := m.Lock(ctx, time.Second); err == nil {
						m.Unlock(context.Background())
					}
					cancel()
				}
			})
		}
		var once sync.Once
		stop = func() { once.Do(func() { close(done); wg.Wait() }) }
		t.Cleanup(stop)
		return stop
	}

	writeDeadHolder(t, s, key, ttl, 0)
	stopChurn := churn()
	watcher := open(t, newClient(s, "watcher"), key)
	start := time.Now()
	for st := inspect(t, watcher); st.Holder == "dead"; st = inspect(t, watcher) {
		if time.Since(start) > 10*ttl {
			t.Fatalf("the dead holder's lock was not taken over in %v with waiters joining and leaving its queue", 10*ttl)
		}
		time.Sleep(time.Millisecond)
	}
	if waited := time.Since(start); waited < ttl+ttl/100 {
		t.Fatalf("taken over after %v, want at least %v", waited, ttl+ttl/100)
	}
	stopChurn()

	// A holder slower than the waiters: between its read and its write,
	// several of them come or go. Held, with the churn going on, for
	// several TTLs of renewals.
	slow := newClient(s, "holder")
	slow.latency = 10 * time.Millisecond
	m := open(t, slow, key)
	// A TTL of 2s: a waiter joins only within an eighth of it after seeing
	// the holder's state, and the holder renews from 0.147 of it, so the
	// margin is 0.022×TTL, which a scheduler starved by the race detector
	// on 2 busy cores could eat at 1s (once in 12 runs under load).
	const holdTTL = 2 * time.Second
	lockOrFatal(t, m, holdTTL)
	stopChurn = churn()
	time.Sleep(5 * holdTTL / 2)
	err := m.Err()
	stopChurn()
	if err != nil {
		t.Fatalf("a live holder lost its lock to waiters joining and leaving: %v", err)
	}
	unlockOrFatal(t, m)
}

// testHandOffAnswerLost: a release that hands the lock on and whose answer
// is lost is settled by the hand-off, even after the new holder has
// released in turn: Unlock returns nil.
func testHandOffAnswerLost(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "holder")
	holder := open(t, c, key)
	first := lockOrFatal(t, holder, time.Minute)
	next := open(t, newClient(s, "next"), key, objsync.WithBackoff(time.Millisecond, 20*time.Millisecond))
	got := make(chan int64, 1)
	go func() {
		fence, err := next.Lock(context.Background(), time.Minute)
		if err == nil {
			err = next.Unlock(context.Background())
		}
		if err != nil {
			t.Error(err)
		}
		got <- fence
	}()
	WaitWaiters(t, holder, 1)
	var fence int64
	hook := func() { fence = <-got }
	c.onLostAnswer.Store(&hook)
	c.set(faultAmbiguous)
	err := holder.Unlock(context.Background())
	c.set(faultNone)
	if err != nil {
		t.Fatalf("Unlock whose hand-off landed but whose answer was lost: %v", err)
	}
	if fence != first+1 {
		t.Fatalf("the waiter got fence %d, want %d", fence, first+1)
	}
}

// requestTime returns the longest time one request to s took, of a few
// create-only writes and reads of objects named from scratch: each is
// written once, since some stores limit writes to one object.
func requestTime(t *testing.T, s driver.Store, scratch string) time.Duration {
	t.Helper()
	ctx := context.Background()
	var longest time.Duration
	for i := range 3 {
		key := fmt.Sprint(scratch, i)
		start := time.Now()
		if _, err := s.Write(ctx, key, []byte("{}"), ""); err != nil {
			t.Fatalf("write %s: %v", key, err)
		}
		longest = max(longest, time.Since(start))
		start = time.Now()
		if _, _, err := s.Read(ctx, key); err != nil {
			t.Fatalf("read %s: %v", key, err)
		}
		longest = max(longest, time.Since(start))
	}
	return longest
}
