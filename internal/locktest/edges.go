package locktest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
)

// The tests in this file each close a route to two holders, a stuck lock
// or a false report that review found at the edges of the protocol.

// testLateAnswer: a write that takes the lock but is answered after more
// of the lease has gone than a hold may start with gives no hold. With a
// TTL of 200ms and answers 300ms late, another client takes the lock over
// meanwhile; the slow Lock must not return a hold beside it.
func testLateAnswer(t *testing.T, s driver.Store, key string) {
	const ttl = 200 * time.Millisecond
	slow := newClient(s, "slow")
	slow.answerDelay.Store(int64(300 * time.Millisecond))
	a := open(t, slow, key)
	b := open(t, newClient(s, "b"), key)

	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	locked := make(chan error, 1)
	go func() { _, err := a.Lock(ctx, ttl); locked <- err }()
	time.Sleep(20 * time.Millisecond) // a's first write has landed
	fence := lockOrFatal(t, b, time.Minute)
	if err := <-locked; err == nil {
		t.Fatalf("Lock returned a hold (fence %d) whose write was answered after its lease could be taken over; fence %d holds it", a.Fence(), fence)
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("slow Lock: %v, want it to wait until its context ended", err)
	}
	if st := inspect(t, b); !st.Held || st.Fence != fence || b.Err() != nil {
		t.Fatalf("the slow client changed the new hold: %+v, Err %v", st, b.Err())
	}
	unlockOrFatal(t, b)

	// Alone, the slow client cannot get a lease in time either: TryLock
	// says why after a few tries and frees the lock, or, if the store was
	// too slow for that too, leaves it to expire after its TTL.
	ok, _, err := a.TryLock(context.Background(), ttl)
	if ok || err == nil || !strings.Contains(err.Error(), "answered a write after") {
		t.Fatalf("TryLock on a store slower than the lease = %v, %v; want an error saying so", ok, err)
	}
	lockOrFatal(t, b, time.Minute)
	unlockOrFatal(t, b)
}

// testDoneWhileStoreHangs: the hold ends on time even when every store
// call hangs, ignoring its context, for longer than the lease.
func testDoneWhileStoreHangs(t *testing.T, s driver.Store, key string) {
	const ttl = time.Second
	c := newClient(s, "holder")
	holder := open(t, c, key)
	other := open(t, newClient(s, "other"), key)
	lockOrFatal(t, holder, ttl)
	c.hang.Store(int64(3 * ttl))
	fence := lockOrFatal(t, other, time.Minute) // its own lease never runs short in the test
	if !isClosed(holder.Done()) {
		t.Fatal("another client took over while the holder's Done was open: its hold waited for a store call")
	}
	if !errors.Is(holder.Err(), objsync.ErrLockLost) {
		t.Fatalf("holder Err = %v, want ErrLockLost", holder.Err())
	}
	c.hang.Store(0)
	unlockLost(t, holder, other, fence)
}

// testLostHoldFreesLocalWaiters: a hold that ended without Unlock lets
// another Mutex of the process take the lock; its Unlock still reports
// the loss and leaves the new hold alone.
func testLostHoldFreesLocalWaiters(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "a")
	first := open(t, c, key, objsync.WithoutRenewal())
	lockOrFatal(t, first, objsync.MinTTL)
	<-first.Done()
	second := open(t, c, key)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	fence, err := second.Lock(ctx, time.Minute)
	if err != nil {
		t.Fatalf("Lock after another Mutex's hold was lost: %v", err)
	}
	if ok, _, err := first.TryLock(context.Background(), time.Minute); ok || err != nil {
		t.Fatalf("TryLock of a Mutex whose lost hold was not unlocked = %v, %v; want it to wait for Unlock", ok, err)
	}
	unlockLost(t, first, second, fence)
}

// testCloseStopsLock: Close stops the Locks in progress on the Mutex, the
// one polling the store and the one waiting behind it; they hold nothing.
func testCloseStopsLock(t *testing.T, s driver.Store, key string) {
	holder := open(t, newClient(s, "holder"), key)
	lockOrFatal(t, holder, time.Minute)
	m := newMutex(newClient(s, "closing"), key, objsync.WithBackoff(time.Millisecond, 20*time.Millisecond))
	results := make(chan error, 2)
	for range 2 {
		go func() { _, err := m.Lock(context.Background(), time.Minute); results <- err }()
	}
	time.Sleep(50 * time.Millisecond)
	if err := m.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	unlockOrFatal(t, holder) // a Lock that survived Close would take it now
	for range 2 {
		select {
		case err := <-results:
			if !errors.Is(err, objsync.ErrClosed) {
				t.Fatalf("Lock in progress during Close returned %v, want ErrClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a Lock in progress did not return after Close")
		}
	}
	st := inspect(t, holder)
	if !st.Held {
		return
	}
	// A join whose answer Close cut off may land after the Lock left (a
	// store that applies a request late: seen on Ceph RGW), and the
	// release hands the lock to the waiter that is gone (see joinDeadline
	// in mutex.go). Its hand-off lease is short and nothing renews it: the
	// next Lock gets the lock once it runs out. A Lock that survived Close
	// would hold it for its minute, renewing.
	if st.TTL >= time.Minute {
		t.Fatalf("a closed Mutex holds the lock: %+v", st)
	}
	next := open(t, newClient(s, "next"), key)
	start := time.Now()
	lockOrFatal(t, next, time.Minute)
	if waited := time.Since(start); waited > 2*st.TTL+2*time.Second {
		t.Fatalf("the lock handed to a closed Mutex was taken over after %v; its hand-off lease is %v", waited, st.TTL)
	}
	t.Logf("a join landed after Close: the lock was handed to the closed Mutex, and taken over after its hand-off lease of %v", st.TTL)
	unlockOrFatal(t, next)
}

// testHugeBackoff: a backoff whose doubling would overflow saturates.
func testHugeBackoff(t *testing.T, s driver.Store, key string) {
	holder := open(t, newClient(s, "holder"), key)
	lockOrFatal(t, holder, time.Second) // renews: the waiter waits again and again
	m := open(t, newClient(s, "waiter"), key, objsync.WithBackoff(math.MaxInt64/2+1, math.MaxInt64))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := m.Lock(ctx, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock with the longest backoff: %v", err)
	}
	// The holder is only the waiter's reason to wait: on a server that
	// stalls it may have lost its short lease, which is no failure here.
	holder.Unlock(context.Background())
}

// testLastFence: a lock whose fence cannot be incremented is refused with
// an error that says so, and left as it is.
func testLastFence(t *testing.T, s driver.Store, key string) {
	data := []byte(fmt.Sprintf(`{"objsync_lock":1,"state":"free","holder":"last","fence":%d,"seq":1,"ttl_ms":1000}`, int64(math.MaxInt64)))
	v, err := s.Write(context.Background(), key, data, "")
	if err != nil {
		t.Fatal(err)
	}
	m := open(t, newClient(s, "a"), key)
	fence, lockErr := m.Lock(context.Background(), time.Minute)
	_, _, tryErr := m.TryLock(context.Background(), time.Minute)
	for _, err := range []error{lockErr, tryErr} {
		if err == nil || !strings.Contains(err.Error(), "fence 9223372036854775807") {
			t.Fatalf("acquiring past the last fence: fence %d, err %v", fence, err)
		}
	}
	if got, gotV, err := s.Read(context.Background(), key); err != nil || !bytes.Equal(got, data) || gotV != v {
		t.Fatalf("the lock was changed (err %v): %s", err, got)
	}
}

// testLastTicket (queue locks): a ticket slot that holds a number so close
// to the last fence that the tickets after it could not be numbered, or a
// number that belongs in another slot, is refused with an error that names
// it, and the slot is left as it was (a create-only write, made on the
// guess that slot 2 is empty, is refused by the store).
func testLastTicket(t *testing.T, s driver.Store, key string) {
	// In slot 2, where ticket 2 would go (2 mod 64), or not.
	for i, number := range []int64{math.MaxInt64 - 61, 3} {
		key := fmt.Sprintf("%s-%d", key, i)
		c := newClient(s, "a")
		m := open(t, c, key)
		lockOrFatal(t, m, time.Minute) // ticket 1
		unlockOrFatal(t, m)
		data := []byte(fmt.Sprintf(`{"objsync_lock":1,"state":"abandoned","holder":"x","fence":%d,"seq":1,"ttl_ms":1000}`, number))
		v, err := s.Write(context.Background(), key+".queue/t02", data, "")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		fence, lockErr := m.Lock(ctx, time.Minute)
		_, _, tryErr := m.TryLock(ctx, time.Minute)
		cancel()
		for _, err := range []error{lockErr, tryErr} {
			if err == nil || !errors.Is(err, objsync.ErrNotLock) || !strings.Contains(err.Error(), fmt.Sprint(number)) {
				t.Fatalf("acquiring with ticket %d in slot 2: fence %d, err %v", number, fence, err)
			}
		}
		if got, gotV, err := s.Read(context.Background(), key+".queue/t02"); err != nil || !bytes.Equal(got, data) || gotV != v {
			t.Fatalf("slot 2 was changed (err %v): %s", err, got)
		}
	}
}

// testTryLockBounded: TryLock returns after a few tries when writes fail,
// whatever its context allows.
func testTryLockBounded(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "a")
	m := open(t, c, key)
	c.set(faultRefuseWrites)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ok, _, err := m.TryLock(ctx, time.Minute)
	if ok || err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("TryLock with every write failing = %v, %v; want the store's error at once", ok, err)
	}
	if w := c.writes.Load(); w > 3 {
		t.Fatalf("TryLock made %d writes, want at most 3", w)
	}
}

// testUnlockAnswerLost: a release lands, its answer is lost, and another
// client takes the lock before the read-back. The release is ours: Unlock
// must not report a loss.
func testUnlockAnswerLost(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "a")
	m := open(t, c, key)
	other := open(t, newClient(s, "other"), key)
	fence := lockOrFatal(t, m, time.Minute)
	var otherOK bool
	var otherErr error
	hook := func() { otherOK, _, otherErr = other.TryLock(context.Background(), time.Minute) }
	c.onLostAnswer.Store(&hook)
	c.set(faultAmbiguous)
	err := m.Unlock(context.Background())
	c.set(faultNone)
	if !otherOK || otherErr != nil {
		t.Fatalf("the other client could not take the freed lock: %v", otherErr)
	}
	if err != nil {
		t.Fatalf("Unlock whose release landed before another client took the lock: %v", err)
	}
	if st := inspect(t, other); !st.Held || st.Fence != fence+1 {
		t.Fatalf("after the other client took it: %+v", st)
	}
	unlockOrFatal(t, other)
}

// testBreakLateWrite: a break whose writes fail at once but land later is
// settled like any other write: Break succeeds and says nothing false.
func testBreakLateWrite(t *testing.T, s driver.Store, key string) {
	holder := open(t, newClient(s, "holder"), key)
	fence := lockOrFatal(t, holder, time.Minute)
	c := newClient(s, "breaker")
	c.lateBy = 100 * time.Millisecond
	breaker := open(t, c, key)
	c.set(faultLate)
	st, err := breaker.Break(context.Background())
	c.set(faultNone)
	c.late.Wait()
	if err != nil || !st.Held || st.Fence != fence {
		t.Fatalf("Break with late writes = %+v, %v", st, err)
	}
	if st := inspect(t, breaker); st.Held || st.Fence != fence {
		t.Fatalf("after Break: %+v", st)
	}
	if err := holder.Unlock(context.Background()); !errors.Is(err, objsync.ErrLockLost) {
		t.Fatalf("Unlock of the broken hold: %v", err)
	}
}

// testForeignObjectOverHold: when something that is not a lock replaces a
// live hold's object, the hold ends at its next renewal, not at its
// deadline.
func testForeignObjectOverHold(t *testing.T, s driver.Store, key string) {
	const ttl = renewingTTL
	c := newClient(s, "holder")
	holder := open(t, c, key)
	lockOrFatal(t, holder, ttl)
	held := key
	if c.queue {
		held = key + ".queue/t01" // the first ticket's slot
	}
	_, first, err := s.Read(context.Background(), held)
	if err != nil {
		t.Fatal(err)
	}
	// Replace it right after a renewal, so that the next one is a third
	// of the lease away and the deadline nearly a whole lease.
	var v driver.Version
	for v = first; v == first; time.Sleep(time.Millisecond) {
		if _, v, err = s.Read(context.Background(), held); err != nil {
			t.Fatal(err)
		}
		if holder.Err() != nil {
			t.Fatalf("the hold ended before its object was replaced: %v", holder.Err())
		}
	}
	foreign := []byte(`{"name":"report.csv","size":12}`)
	if _, err := s.Write(context.Background(), held, foreign, v); err != nil {
		t.Fatal(err)
	}
	replaced := time.Now()
	select {
	case <-holder.Done():
	case <-time.After(2 * ttl):
		t.Fatal("the hold did not end")
	}
	if took := time.Since(replaced); took > ttl/2 {
		t.Fatalf("the hold ended %v after its object was replaced, want the next renewal (about %v)", took, ttl*3/10)
	}
	if err := holder.Err(); !errors.Is(err, objsync.ErrLockLost) || !strings.Contains(err.Error(), "not an objsync lock") {
		t.Fatalf("Err = %v", err)
	}
	holder.Unlock(context.Background())
	if got, _, err := s.Read(context.Background(), held); err != nil || !bytes.Equal(got, foreign) {
		t.Fatalf("the foreign object was changed (err %v): %s", err, got)
	}
}

// testReleaseFatalError: a release that lands and then fails for good (a
// directory fsync after the rename) is read back, and found to be done.
func testReleaseFatalError(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "a")
	m := open(t, c, key)
	lockOrFatal(t, m, time.Minute)
	c.set(faultFatalAfterWrite)
	err := m.Unlock(context.Background())
	c.set(faultNone)
	if err != nil {
		t.Fatalf("Unlock whose release landed before an error: %v", err)
	}
	if st := inspect(t, m); st.Held {
		t.Fatalf("after Unlock: %+v", st)
	}
}

// testUnreachableStore: a store that has never answered (a wrong endpoint)
// is reported within a few reads, not waited on until the context ends.
func testUnreachableStore(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "a")
	m := open(t, c, key)
	c.set(faultCut)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	_, err := m.Lock(ctx, time.Minute)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "network partition") {
		t.Fatalf("Lock on a store that never answers: %v, want the store's error", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Lock took %v to report a store that never answered", took)
	}
	if r := c.reads.Load(); r > 9 {
		t.Fatalf("%d reads, want at most 9", r)
	}
}

// testOutageRiddenOut: a waiter that has read the lock rides out an outage
// for at least the holder's TTL before it gives up with the store's error.
func testOutageRiddenOut(t *testing.T, s driver.Store, key string) {
	const ttl = time.Second
	holder := open(t, newClient(s, "holder"), key)
	lockOrFatal(t, holder, ttl)
	c := newClient(s, "waiter")
	waiter := open(t, c, key)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	result := make(chan error, 1)
	go func() { _, err := waiter.Lock(ctx, objsync.MinTTL); result <- err }()
	WaitWaiters(t, holder, 1) // it has read the lock, and joined its queue
	c.set(faultCut)
	cut := time.Now()
	err := <-result
	gaveUp := time.Since(cut)
	c.set(faultNone)
	if err == nil || errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "network partition") {
		t.Fatalf("Lock through an outage: %v, want the store's error", err)
	}
	if gaveUp < ttl {
		t.Fatalf("Lock gave up %v into the outage, within the holder's lease of %v", gaveUp, ttl)
	}
	unlockOrFatal(t, holder)
}

// testSlowClientYields: a client whose store answers too late for its
// lease, which so never gets a hold, does not keep the lock from a client
// that can hold it, even when its rewrites come faster than a takeover.
func testSlowClientYields(t *testing.T, s driver.Store, key string) {
	const ttl = 500 * time.Millisecond // its writes land every 300ms: no takeover
	slow := newClient(s, "slow")
	slow.answerDelay.Store(int64(300 * time.Millisecond))
	a := open(t, slow, key)
	b := open(t, newClient(s, "b"), key)
	ctx, stopA := context.WithCancel(context.Background())
	locked := make(chan error, 1)
	go func() { _, err := a.Lock(ctx, ttl); locked <- err }()
	time.Sleep(20 * time.Millisecond)
	bctx, cancel := context.WithTimeout(context.Background(), 8*time.Second)
	defer cancel()
	if _, err := b.Lock(bctx, time.Minute); err != nil {
		t.Fatalf("a client that can hold the lock did not get it from one that cannot: %v", err)
	}
	stopA()
	if err := <-locked; err == nil {
		t.Fatal("the slow client got a hold beside the other")
	}
	unlockOrFatal(t, b)
}

// testDoneBeforeRelease: the hold's Done closes before its release can let
// another client in, whether by Unlock or by Close: work that watches Done
// must have been told before someone else holds the lock.
func testDoneBeforeRelease(t *testing.T, s driver.Store, key string) {
	for i, via := range []string{"Unlock", "Close"} {
		t.Run(via, func(t *testing.T) {
			key := fmt.Sprintf("%s-%d", key, i)
			c := newClient(s, "a")
			a := open(t, c, key)
			b := open(t, newClient(s, "b"), key, objsync.WithBackoff(time.Millisecond, 5*time.Millisecond))
			lockOrFatal(t, a, time.Minute)
			done := a.Done()
			c.answerDelay.Store(int64(300 * time.Millisecond)) // the release lands at once, its answer later
			go func() {
				if via == "Close" {
					a.Close()
				} else {
					a.Unlock(context.Background())
				}
			}()
			fence := lockOrFatal(t, b, time.Minute)
			if !isClosed(done) {
				t.Fatalf("fence %d is held while the released hold's Done is open", fence)
			}
			unlockOrFatal(t, b)
		})
	}
}

// testProclaimLateWrite: a Proclaim that gave up while its write was in
// flight, a write that landed later, is not mistaken by the next Proclaim
// for its own.
func testProclaimLateWrite(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "leader")
	e := objsync.NewElection(open(t, c, key), objsync.WithLeaderTTL(2*time.Second))
	if _, err := e.Campaign(context.Background(), "v0"); err != nil {
		t.Fatal(err)
	}
	c.lateBy = 300 * time.Millisecond
	c.set(faultLate)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	if err := e.Proclaim(ctx, "X"); err == nil {
		t.Fatal("Proclaim with late writes and a 100ms context succeeded")
	}
	cancel()
	c.set(faultNone)
	c.late.Wait() // X landed
	if err := e.Proclaim(context.Background(), "Y"); err != nil {
		t.Fatal(err)
	}
	if l, err := e.Leader(context.Background()); err != nil || l.Value != "Y" {
		t.Fatalf("after Proclaim(Y) returned nil the leader is %+v (%v)", l, err)
	}
	e.Resign(context.Background())
}

// testGiveUpBounded: a Lock whose context ends after a write of it landed
// frees the lock within a bound, even when writes then fail, instead of
// trying for most of the lease.
func testGiveUpBounded(t *testing.T, s driver.Store, key string) {
	c := newClient(s, "a")
	m := open(t, c, key)
	c.answerDelay.Store(int64(200 * time.Millisecond))
	c.set(faultAmbiguous)
	refuse := func() { c.set(faultRefuseWrites) }
	c.onLostAnswer.Store(&refuse)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := m.Lock(ctx, time.Minute); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock: %v", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Lock with a 50ms context returned after %v", took)
	}
	c.set(faultNone)
}
