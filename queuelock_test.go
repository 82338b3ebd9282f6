package objsync_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/countstore"
	"github.com/objsync/objsync/mem"
)

// writeRecorder is a process's view of a store that records which keys
// it wrote and counts the writes refused for the per-key rate.
type writeRecorder struct {
	driver.Store
	name        string
	mu          *sync.Mutex
	keys        map[string]bool
	rateLimited *atomic.Int64
	cut         atomic.Bool // every request fails, as if the process were cut off
}

func (w *writeRecorder) Location(key string) string { return w.Store.Location(key) + "#" + w.name }

func (w *writeRecorder) WriteInterval() time.Duration { return driver.WriteInterval(w.Store) }

var errCut = driver.Retryable(errors.New("test: cut off"))

func (w *writeRecorder) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if w.cut.Load() {
		return nil, "", errCut
	}
	return w.Store.Read(ctx, key)
}

func (w *writeRecorder) Write(ctx context.Context, key string, data []byte, v driver.Version) (driver.Version, error) {
	if w.cut.Load() {
		return "", errCut
	}
	nv, err := w.Store.Write(ctx, key, data, v)
	if errors.Is(err, mem.ErrRateLimited) {
		w.rateLimited.Add(1)
	}
	w.mu.Lock()
	w.keys[key] = true
	w.mu.Unlock()
	return nv, err
}

type recorders struct {
	base        *mem.Store
	mu          sync.Mutex
	keys        map[string]bool
	rateLimited atomic.Int64
}

// newRecorders returns a fresh in-memory store of the test's own, emptied
// again at its end, for views of processes.
func newRecorders(t *testing.T) *recorders {
	base := mem.Namespace(t.Name())
	base.Reset()
	t.Cleanup(base.Reset)
	return &recorders{base: base, keys: map[string]bool{}}
}

// openQueue opens the queue lock "lock" on s, closed at the test's end.
func openQueue(t *testing.T, s driver.Store) *objsync.Mutex {
	m := objsync.NewMutex(s, "lock", objsync.WithQueue())
	t.Cleanup(func() { m.Close() })
	return m
}

func (r *recorders) view(name string) *writeRecorder {
	return &writeRecorder{Store: r.base, name: name, mu: &r.mu, keys: r.keys, rateLimited: &r.rateLimited}
}

// TestQueueHandOffsUnderWriteLimit: on a store that allows one write per
// second to an object, 8 processes holding a queue lock for 5ms each take
// it many times a second, in turn, and no write is refused for the rate;
// the objects written stay the marker and the 128 slots, over 10,000
// acquisitions. The goal is 20 a second (issue 13); runs give 64, the
// pace of 64 slots written once a second each. On a store without the
// limit (driver.WriteLimiter), the slots' pace does not bind.
func TestQueueHandOffsUnderWriteLimit(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		holds    int
		atLeast  float64
	}{
		{"one write a second", time.Second, 10_000, 20},
		{"no limit", 0, 2_000, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				rec := newRecorders(t)
				rec.base.SetWriteInterval(tc.interval)
				perSecond := takeTurns(t, rec, tc.holds)
				if perSecond < tc.atLeast {
					t.Errorf("%.1f holds a second, want at least %v", perSecond, tc.atLeast)
				}
				if n := rec.rateLimited.Load(); n != 0 {
					t.Errorf("%d writes refused for the rate", n)
				}
				if len(rec.keys) > 1+2*64 {
					t.Errorf("%d objects written, want at most 129", len(rec.keys))
				}
			})
		})
	}
}

// takeTurns has 8 processes, views of rec, take a queue lock in turn and
// hold it for 5ms, until it has been taken holds times, checking that no
// two hold at once and that fences increase, and returns how many times a
// second it changed hands.
func takeTurns(t *testing.T, rec *recorders, wantHolds int) float64 {
	const contenders, ttl = 8, 4 * time.Second
	var mu sync.Mutex
	var holding, holds int
	var last int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range contenders {
		m := openQueue(t, rec.view(fmt.Sprint("p", i)))
		wg.Go(func() {
			for {
				mu.Lock()
				enough := holds >= wantHolds
				mu.Unlock()
				if enough {
					return
				}
				fence, err := m.Lock(context.Background(), ttl)
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				holding++
				if holding > 1 || fence <= last {
					t.Errorf("fence %d after %d, %d holders", fence, last, holding)
				}
				last, holds = fence, holds+1
				mu.Unlock()
				time.Sleep(5 * time.Millisecond)
				mu.Lock()
				holding--
				mu.Unlock()
				if err := m.Unlock(context.Background()); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	perSecond := float64(holds) / time.Since(start).Seconds()
	t.Logf("%d holds in %v: %.1f a second; %d objects written", holds, time.Since(start).Round(time.Millisecond), perSecond, len(rec.keys))
	return perSecond
}

// TestQueueKindsExclude: a name holds one kind of lock; whichever kind
// comes second fails, naming the other.
func TestQueueKindsExclude(t *testing.T) {
	for _, queueFirst := range []bool{false, true} {
		base := mem.Namespace(fmt.Sprintf("%s-%v", t.Name(), queueFirst))
		base.Reset()
		plain := objsync.NewMutex(view{base, "plain"}, "lock")
		queue := objsync.NewMutex(view{base, "queue"}, "lock", objsync.WithQueue())
		first, second, want := plain, queue, "a plain lock"
		if queueFirst {
			first, second, want = queue, plain, "a queue lock"
		}
		if _, err := first.Lock(context.Background(), time.Second); err != nil {
			t.Fatal(err)
		}
		_, err := second.Lock(context.Background(), time.Second)
		if !errors.Is(err, objsync.ErrNotLock) || !strings.Contains(err.Error(), want) {
			t.Errorf("the second kind's Lock: %v; want ErrNotLock naming %q", err, want)
		}
		if err := first.Unlock(context.Background()); err != nil {
			t.Error(err)
		}
		plain.Close()
		queue.Close()
		base.Reset()
	}
}

// TestQueueDeadWaiter: a waiter cut off in the middle of the queue delays
// the one behind it once its turn comes by the hand-off lease its ticket
// carries (4s), not by its TTL, and the lock goes in order otherwise.
func TestQueueDeadWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorders(t)
		const ttl, handoffLease = 30 * time.Second, 4 * time.Second
		holder := openQueue(t, rec.view("holder"))
		first, err := holder.Lock(context.Background(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		deadView := rec.view("dead")
		dead := openQueue(t, deadView)
		deadCtx, stopDead := context.WithCancel(context.Background())
		deadDone := make(chan error, 1)
		go func() { _, err := dead.Lock(deadCtx, ttl); deadDone <- err }()
		synctest.Wait()
		next := openQueue(t, rec.view("next"))
		got := make(chan int64, 1)
		go func() {
			fence, err := next.Lock(context.Background(), ttl)
			if err != nil {
				t.Error(err)
			}
			got <- fence
		}()
		synctest.Wait()
		if st, err := holder.Inspect(context.Background()); err != nil || st.Waiters != 2 || st.Fence != first {
			t.Fatalf("Inspect with two waiting: %+v, %v", st, err)
		}
		deadView.cut.Store(true)
		stopDead()
		<-deadDone // its leaving fails: it is cut off

		time.Sleep(time.Minute) // a long hold
		start := time.Now()
		if err := holder.Unlock(context.Background()); err != nil {
			t.Fatal(err)
		}
		fence := <-got
		waited := time.Since(start)
		if fence != first+2 {
			t.Errorf("the waiter behind the dead one got fence %d, want %d", fence, first+2)
		}
		// The waiter behind sees the dead one's turn come at its next
		// poll, at most a second later, and counts from there.
		if waited < handoffLease || waited > handoffLease+2*time.Second {
			t.Errorf("the waiter behind the dead one waited %v after the release; want the hand-off lease of %v and a little more", waited, handoffLease)
		}
		if err := next.Unlock(context.Background()); err != nil {
			t.Error(err)
		}
	})
}

// TestQueueUncontendedCost: an uncontended Lock and Unlock of a queue lock
// writes twice (the ticket, the done slot) and reads the ticket before the
// release (Break may have ended its turn), lap after lap of the slots: the
// slots written over are known, empty on the first lap, then as this
// process left them. On a store that limits writes the ticket slot is read
// too (a guess that failed there could draw a 429).
func TestQueueUncontendedCost(t *testing.T) {
	for _, tc := range []struct {
		name      string
		interval  time.Duration
		wantReads float64
	}{
		{"no limit", 0, 1},
		{"one write a second", time.Second, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				base := mem.Namespace(t.Name())
				base.Reset()
				defer base.Reset()
				base.SetWriteInterval(tc.interval)
				counted := countstore.New(base)
				m := objsync.NewMutex(counted, "lock", objsync.WithQueue())
				defer m.Close()
				cycle := func() {
					if _, err := m.Lock(context.Background(), 4*time.Second); err != nil {
						t.Fatal(err)
					}
					if err := m.Unlock(context.Background()); err != nil {
						t.Fatal(err)
					}
				}
				cycle() // the marker is written once
				before := counted.Counts()
				const cycles = 200 // three laps of the 64 slots
				for range cycles {
					cycle()
				}
				c := counted.Counts().Sub(before)
				reads, writes := float64(c.ReadRequests())/cycles, float64(c.WriteRequests())/cycles
				t.Logf("per Lock+Unlock: %.2f reads, %.2f writes", reads, writes)
				if writes != 2 || reads != tc.wantReads {
					t.Errorf("per Lock+Unlock: %.2f reads, %.2f writes; want %v and 2", reads, writes, tc.wantReads)
				}
			})
		})
	}
}

// TestQueueDeadWaitersAfterRelease: two dead waiters between a holder with
// a long TTL and a live waiter. After the release, the waiter gets the
// lock after the two dead ones' hand-off leases (4s each), not after the
// holder's TTL, which it had seen the head hold for when it last looked.
func TestQueueDeadWaitersAfterRelease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorders(t)
		const ttl = 10 * time.Minute
		holder := openQueue(t, rec.view("holder"))
		if _, err := holder.Lock(context.Background(), ttl); err != nil {
			t.Fatal(err)
		}
		var cuts []func()
		for _, name := range []string{"dead1", "dead2"} {
			v := rec.view(name)
			d := openQueue(t, v)
			ctx, stop := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { _, err := d.Lock(ctx, ttl); done <- err }()
			synctest.Wait()
			cuts = append(cuts, func() { v.cut.Store(true); stop(); <-done })
		}
		next := openQueue(t, rec.view("next"))
		got := make(chan error, 1)
		go func() { _, err := next.Lock(context.Background(), ttl); got <- err }()
		synctest.Wait()
		for _, cut := range cuts {
			cut()
		}
		time.Sleep(time.Minute) // a hold with renewals
		start := time.Now()
		if err := holder.Unlock(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited > 12*time.Second {
			t.Errorf("the waiter got the lock %v after the release; want two hand-off leases of 4s and a little more", waited)
		}
		next.Unlock(context.Background())
	})
}

// lateTicketAnswer lands the first ticket write, and answers it with a
// retryable error only after a pause: a lost answer, or a process frozen
// while it waited for it.
type lateTicketAnswer struct {
	*writeRecorder
	done atomic.Bool
}

func (s *lateTicketAnswer) Write(ctx context.Context, key string, data []byte, v driver.Version) (driver.Version, error) {
	nv, err := s.writeRecorder.Write(ctx, key, data, v)
	if err == nil && strings.Contains(key, ".queue/t") && s.done.CompareAndSwap(false, true) {
		time.Sleep(10 * time.Second)
		return "", driver.Retryable(errors.New("test: answer lost"))
	}
	return nv, err
}

// TestQueueReadBackAbandoned: x's ticket lands but its answer comes 10s
// late; meanwhile its turn comes and the waiter behind it, y, ends it after
// its hand-off lease and holds. x, reading its ticket back, must not take
// the abandoned ticket for a live one and hold beside y.
func TestQueueReadBackAbandoned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorders(t)
		const ttl = 30 * time.Second
		holder := openQueue(t, rec.view("holder"))
		if _, err := holder.Lock(context.Background(), ttl); err != nil {
			t.Fatal(err)
		}
		x := openQueue(t, &lateTicketAnswer{writeRecorder: rec.view("x")})
		xCtx, stopX := context.WithCancel(context.Background())
		defer stopX()
		xGot := make(chan int64, 1)
		go func() {
			fence, _ := x.Lock(xCtx, ttl)
			xGot <- fence
		}()
		time.Sleep(100 * time.Millisecond) // x's ticket has landed
		y := openQueue(t, rec.view("y"))
		yGot := make(chan int64, 1)
		go func() {
			fence, err := y.Lock(context.Background(), ttl)
			if err != nil {
				t.Error(err)
			}
			yGot <- fence
		}()
		time.Sleep(100 * time.Millisecond)
		if err := holder.Unlock(context.Background()); err != nil {
			t.Fatal(err)
		}
		var fy int64
		select {
		case fy = <-yGot:
		case fx := <-xGot:
			t.Fatalf("x got fence %d before y, whose turn came first", fx)
		}
		select {
		case fx := <-xGot:
			if fx != 0 {
				t.Errorf("two holders: x with fence %d (Err %v), y with fence %d (Err %v)", fx, x.Err(), fy, y.Err())
			}
		case <-time.After(20 * time.Second):
			// x still waits, behind y: right.
		}
		y.Unlock(context.Background())
		stopX()
	})
}

// hookedView runs hook (once, when armed) right after a read of key has
// returned, before the caller sees the result.
type hookedView struct {
	*writeRecorder
	key   string
	armed atomic.Bool
	hook  func()
}

func (h *hookedView) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	data, v, err := h.writeRecorder.Read(ctx, key)
	if key == h.key && h.armed.CompareAndSwap(true, false) {
		h.hook()
	}
	return data, v, err
}

// TestQueueReusedHeadReadLease (found by review): waiter A's walks reused
// a read of the head's ticket up to a poll old, and counted A's lease from
// the start of the last walk that "showed" its turn not come, though the
// head had been ended before that walk began. B, which read A's ticket right
// after the head's turn ended, ends A's turn TTL+1% after that read; A
// (cut off after it got the lock) still believes it holds then.
//
// H holds ticket 1 and dies. B's process saw H at 0.1s (a Lock that gave
// up, leaving ticket 2). A joins at 20s (ticket 3). At A's first store
// read of H's ticket after 31s (instant X), B's process Locks again: it
// ends H's turn (seen unchanged since 0.1s), reads A's ticket at X and
// joins behind it (ticket 4).
func TestQueueReusedHeadReadLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorders(t)
		const ttl = 30 * time.Second
		bg := context.Background()
		start := time.Now()

		hv := rec.view("H")
		h := openQueue(t, hv)
		if _, err := h.Lock(bg, ttl); err != nil {
			t.Fatal(err)
		}
		hv.cut.Store(true) // H is dead

		time.Sleep(100 * time.Millisecond)
		b := openQueue(t, rec.view("B"))
		short, cancel := context.WithTimeout(bg, 10*time.Millisecond)
		if _, err := b.Lock(short, ttl); err == nil {
			t.Fatal("B's short Lock got the lock")
		}
		cancel()

		time.Sleep(20 * time.Second)
		av := &hookedView{writeRecorder: rec.view("A"), key: "lock.queue/t01"}
		a := openQueue(t, av)
		var breakAt time.Time
		bGot := make(chan int64, 1)
		av.hook = func() {
			breakAt = time.Now()
			go func() {
				f, err := b.Lock(bg, ttl)
				if err != nil {
					t.Error(err)
				}
				bGot <- f
			}()
		}
		aGot := make(chan int64, 1)
		go func() {
			f, err := a.Lock(bg, ttl)
			if err != nil {
				t.Error(err)
			}
			aGot <- f
		}()
		time.Sleep(11 * time.Second) // B's process has seen H unchanged for > TTL+1%
		av.armed.Store(true)

		fa := <-aGot
		aAt := time.Now()
		av.cut.Store(true) // A is cut off: its lease runs out from its own clock
		fb := <-bGot
		bAt := time.Now()
		aErr := a.Err()
		t.Logf("X=%v; A got fence %d at X+%v; B got fence %d at X+%v; A.Err then: %v",
			breakAt.Sub(start), fa, aAt.Sub(breakAt), fb, bAt.Sub(breakAt), aErr)
		if aErr == nil {
			for a.Err() == nil {
				time.Sleep(time.Millisecond)
			}
			t.Errorf("two holders: A (fence %d) still holds by its Err when B got fence %d, for %v more", fa, fb, time.Since(bAt))
		}
		b.Unlock(bg)
	})
}

// TestQueueLostJoinAnswerAdopted (found by review): on a free queue lock,
// a Lock's ticket write lands but its answer is lost, and the read back
// fails (3 tries). Lock retries, and
// must find ticket 1 its own and hold it, not take ticket 2 behind it and
// wait out its own orphan's full TTL.
func TestQueueLostJoinAnswerAdopted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorders(t)
		const ttl = time.Minute
		var wrote atomic.Bool
		var readFails atomic.Int32
		rec.base.SetFaults(func(op mem.Op, key string) mem.Fault {
			if key != "lock.queue/t01" {
				return mem.Fault{}
			}
			if op == mem.OpWrite && wrote.CompareAndSwap(false, true) {
				return mem.Fault{Err: driver.Retryable(errors.New("answer lost")), Applied: true}
			}
			if op == mem.OpRead && wrote.Load() && readFails.Add(1) <= 3 {
				return mem.Fault{Err: driver.Retryable(errors.New("read failed"))}
			}
			return mem.Fault{}
		})
		lockFreeAtOnce(t, openQueue(t, rec.view("A")), ttl)
	})
}

// lockFreeAtOnce locks m, a queue lock that nobody else holds or waits
// for, with ttl, and fails the test if that took half the TTL or more: the
// Lock waited behind a ticket of its own.
func lockFreeAtOnce(t *testing.T, m *objsync.Mutex, ttl time.Duration) {
	t.Helper()
	start := time.Now()
	fence, err := m.Lock(context.Background(), ttl)
	took := time.Since(start)
	t.Logf("fence %d, err %v, after %v", fence, err, took)
	if took > ttl/2 {
		t.Errorf("Lock of a free lock took %v (fence %d): it waited behind its own ticket", took, fence)
	}
	m.Unlock(context.Background())
}

// heldBackTicket fails the first write of ticket slot key at once, as a
// request the network held back, and lets it land just before the next
// write to that slot (conditional on the version it named).
type heldBackTicket struct {
	*writeRecorder
	key  string
	mu   sync.Mutex
	held func()
	used bool
}

func (s *heldBackTicket) Write(ctx context.Context, key string, data []byte, v driver.Version) (driver.Version, error) {
	if key == s.key {
		s.mu.Lock()
		if !s.used {
			s.used = true
			s.held = func() { s.writeRecorder.Write(context.Background(), key, data, v) }
			s.mu.Unlock()
			return "", driver.Retryable(errors.New("test: held back"))
		}
		if h := s.held; h != nil {
			s.held = nil
			s.mu.Unlock()
			h() // the held-back write lands first
		} else {
			s.mu.Unlock()
		}
	}
	return s.writeRecorder.Write(ctx, key, data, v)
}

// TestQueueHeldBackJoinOrphan (found by review): a Lock on a free queue
// lock writes ticket 1; the write is reported failed (read back: not
// there) but lands later, just before the Lock writes ticket 1 again. The
// Lock must find ticket 1 its own and keep it, not queue behind it and
// wait a whole TTL for its own orphan.
func TestQueueHeldBackJoinOrphan(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorders(t)
		const ttl = time.Minute
		lockFreeAtOnce(t, openQueue(t, &heldBackTicket{writeRecorder: rec.view("A"), key: "lock.queue/t01"}), ttl)
	})
}

// TestQueueEndLastTurnReleased (found by review): B waited behind A, so
// its process recorded A's ticket as the head. A released, B held and
// released. More than a TTL later, B's next Lock must not write A's
// ticket abandoned: a ticket seen settled is no head to end.
func TestQueueEndLastTurnReleased(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorders(t)
		const ttl = 10 * time.Second
		bg := context.Background()
		a := openQueue(t, rec.view("A"))
		if _, err := a.Lock(bg, ttl); err != nil {
			t.Fatal(err)
		}
		b := openQueue(t, rec.view("B"))
		got := make(chan error, 1)
		go func() { _, err := b.Lock(bg, ttl); got <- err }()
		time.Sleep(2 * time.Second)
		if err := a.Unlock(bg); err != nil {
			t.Fatal(err)
		}
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		b.Unlock(bg)
		time.Sleep(2 * ttl)
		data, _, _ := rec.base.Read(bg, "lock.queue/t01")
		before := string(data)
		if _, err := b.Lock(bg, ttl); err != nil {
			t.Fatal(err)
		}
		data, _, _ = rec.base.Read(bg, "lock.queue/t01")
		if string(data) != before {
			t.Errorf("B's Lock rewrote ticket 1, released long ago:\nbefore %s\nafter  %s", before, data)
		}
		b.Unlock(bg)
	})
}

// TestQueueNoRenewalHandoffLease (found by review): with WithoutRenewal, "a hold ends when
// its TTL runs out (less the safety margin)". A queue waiter whose turn
// comes holds on its ticket's hand-off lease, and nothing lengthens it.
func TestQueueNoRenewalHandoffLease(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorders(t)
		const ttl = 30 * time.Second
		bg := context.Background()
		a := openQueue(t, rec.view("A"))
		if _, err := a.Lock(bg, ttl); err != nil {
			t.Fatal(err)
		}
		b := objsync.NewMutex(rec.view("B"), "lock", objsync.WithQueue(), objsync.WithoutRenewal())
		defer b.Close()
		got := make(chan error, 1)
		go func() { _, err := b.Lock(bg, ttl); got <- err }()
		time.Sleep(time.Second)
		a.Unlock(bg)
		if err := <-got; err != nil {
			t.Fatal(err)
		}
		start := time.Now()
		<-b.Done()
		if held := time.Since(start); held < ttl/2 {
			t.Errorf("B (WithoutRenewal, ttl %v) held for %v only: %v", ttl, held, b.Err())
		}
	})
}

// TestQueueTailGuessOvershoot (found by review): P took tickets 1 and 33 (32 apart, others
// took the rest); the queue is then idle. P's next Lock guesses the tail
// 31 tickets ahead; it must find the tail by halving, not walk back one
// read per slot.
func TestQueueTailGuessOvershoot(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	defer base.Reset()
	bg := context.Background()
	counted := countstore.New(base)
	p := objsync.NewMutex(counted, "lock", objsync.WithQueue())
	defer p.Close()
	q := objsync.NewMutex(view{base, "q"}, "lock", objsync.WithQueue())
	defer q.Close()
	cycle := func(m *objsync.Mutex) int64 {
		f, err := m.Lock(bg, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if err := m.Unlock(bg); err != nil {
			t.Fatal(err)
		}
		return f
	}
	cycle(p)
	for range 31 {
		cycle(q)
	}
	if f := cycle(p); f != 33 {
		t.Fatalf("fence %d", f)
	}
	before := counted.Counts()
	f := cycle(p)
	c := counted.Counts().Sub(before)
	t.Logf("fence %d: %d reads, %d writes", f, c.ReadRequests(), c.WriteRequests())
	if c.ReadRequests() > 12 {
		t.Errorf("an uncontended Lock+Unlock read %d objects", c.ReadRequests())
	}
}

// TestQueueUnlockAfterBreak: Unlock by a holder whose turn Break ended,
// before a renewal told it, returns ErrLockLost and leaves the next
// holder, and the laps of the slots after, alone.
func TestQueueUnlockAfterBreak(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorders(t)
		bg := context.Background()
		a, b, c := openQueue(t, rec.view("A")), openQueue(t, rec.view("B")), openQueue(t, rec.view("C"))
		first, err := a.Lock(bg, time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		got := make(chan int64, 1)
		go func() {
			fence, err := c.Lock(bg, time.Minute)
			if err != nil {
				t.Error(err)
			}
			got <- fence
		}()
		synctest.Wait()
		if _, err := b.Break(bg); err != nil {
			t.Fatal(err)
		}
		if err := a.Unlock(bg); !errors.Is(err, objsync.ErrLockLost) {
			t.Fatalf("Unlock after Break = %v, want ErrLockLost", err)
		}
		if fence := <-got; fence != first+1 {
			t.Fatalf("the waiter got fence %d, want %d", fence, first+1)
		}
		time.Sleep(time.Second)
		if err := c.Err(); err != nil {
			t.Fatalf("the next holder lost its lock: %v", err)
		}
		if err := c.Unlock(bg); err != nil {
			t.Fatal(err)
		}
		// Around the slots twice, from two processes in turn.
		for i := range 130 {
			m := []*objsync.Mutex{a, b}[i%2]
			if _, err := m.Lock(bg, time.Minute); err != nil {
				t.Fatalf("Lock %d: %v", i, err)
			}
			if err := m.Unlock(bg); err != nil {
				t.Fatalf("Unlock %d: %v", i, err)
			}
		}
	})
}

// slowTicketRead is a process's view of a store in which reads of key
// take a second, and which closes wrote when a write of doneKey succeeds.
type slowTicketRead struct {
	*writeRecorder
	key, doneKey string
	wrote        chan struct{}
}

func (v *slowTicketRead) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if key == v.key {
		time.Sleep(time.Second)
	}
	return v.writeRecorder.Read(ctx, key)
}

func (v *slowTicketRead) Write(ctx context.Context, key string, data []byte, ver driver.Version) (driver.Version, error) {
	nv, err := v.writeRecorder.Write(ctx, key, data, ver)
	if key == v.doneKey && err == nil {
		close(v.wrote)
	}
	return nv, err
}

// TestQueueUnlockAfterSlotTakenOver (found by review): an Unlock that
// wrote the done slot at the same time as it read its ticket, to learn of
// a Break, could have the read answered after the release had landed and
// after a joiner had taken ticket n+64 over the slot (tickets n+1 to n+63
// taken and left): it reported ErrLockLost for a hold nobody broke.
func TestQueueUnlockAfterSlotTakenOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		rec := newRecorders(t)
		bg := context.Background()
		av := &slowTicketRead{writeRecorder: rec.view("A")}
		a := openQueue(t, av)
		if first, err := a.Lock(bg, time.Minute); err != nil || first != 1 {
			t.Fatalf("A's Lock: %d, %v", first, err)
		}
		// Tickets 2 to 64, taken by Locks that give up and leave.
		w := openQueue(t, rec.view("W"))
		for i := 2; i <= 64; i++ {
			ctx, cancel := context.WithTimeout(bg, 100*time.Millisecond)
			if _, err := w.Lock(ctx, time.Minute); err == nil {
				t.Fatalf("W's Lock %d succeeded", i)
			}
			cancel()
		}
		av.key, av.doneKey, av.wrote = "lock.queue/t01", "lock.queue/d01", make(chan struct{})
		unlocked := make(chan error, 1)
		go func() { unlocked <- a.Unlock(bg) }()
		<-av.wrote
		b := openQueue(t, rec.view("B"))
		if fence, err := b.Lock(bg, time.Minute); err != nil || fence != 65 {
			t.Fatalf("B's Lock: fence %d, %v; want 65", fence, err)
		}
		if err := <-unlocked; err != nil {
			t.Errorf("A's Unlock of a hold nobody broke, whose release landed: %v", err)
		}
		if err := b.Unlock(bg); err != nil {
			t.Error(err)
		}
	})
}
