package objsync_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/countstore"
	"github.com/objsync/objsync/internal/locktest"
	"github.com/objsync/objsync/internal/s3compat"
	"github.com/objsync/objsync/mem"
)

// TestHandOffSettledAsPrecondition: the s3 and minio drivers settle a 5xx
// answer to a write by reading the object back, and answer
// ErrPrecondition when another state is in place, which after a hand-off
// may be a waiter that joined the handed state at once. Unlock must learn
// from the hand-off that its release landed, whatever the error said (it
// returned ErrLockLost).
func TestHandOffSettledAsPrecondition(t *testing.T) {
	base := mem.Namespace(t.Name())
	base.Reset()
	defer base.Reset()

	var hook atomic.Pointer[func()]
	serverErr := errors.New("500 InternalError")
	holderStore := writeVia{Store: base, name: "holder", write: func(ctx context.Context, key string, data []byte, v driver.Version) (driver.Version, error) {
		put := func(ctx context.Context) (driver.Version, error) {
			nv, err := base.Write(ctx, key, data, v)
			if err != nil {
				return "", err
			}
			if h := hook.Swap(nil); h != nil {
				(*h)() // the write has landed; its answer is a 5xx
				return "", serverErr
			}
			return nv, nil
		}
		answer := func(err error) s3compat.Answer {
			if errors.Is(err, serverErr) {
				return s3compat.ServerError
			}
			return s3compat.Other
		}
		read := func(ctx context.Context) ([]byte, driver.Version, error) { return base.Read(ctx, key) }
		nv, err := s3compat.Write(ctx, data, v, put, answer, read)
		if err != nil && !errors.Is(err, driver.ErrPrecondition) {
			err = driver.Retryable(err)
		}
		return nv, err
	}}
	holder := objsync.NewMutex(holderStore, "lock")
	defer holder.Close()
	first, err := holder.Lock(context.Background(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	fast := objsync.WithBackoff(time.Millisecond, 10*time.Millisecond)
	next := objsync.NewMutex(view{base, "next"}, "lock", fast)
	defer next.Close()
	got := make(chan error, 1)
	go func() { _, err := next.Lock(context.Background(), time.Minute); got <- err }()
	locktest.WaitWaiters(t, holder, 1)

	third := objsync.NewMutex(view{base, "third"}, "lock", fast)
	defer third.Close()
	thirdDone := make(chan error, 1)
	joinAfterHandOff := func() {
		go func() { _, err := third.Lock(context.Background(), time.Minute); thirdDone <- err }()
		locktest.WaitWaiters(t, next, 1)
	}
	hook.Store(&joinAfterHandOff)
	err = holder.Unlock(context.Background())
	if e := <-got; e != nil {
		t.Fatal(e)
	}
	if err != nil || next.Fence() != first+1 {
		t.Fatalf("Unlock = %v, and the waiter holds fence %d; want nil, and fence %d handed to the waiter", err, next.Fence(), first+1)
	}
	if err := next.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-thirdDone; err != nil {
		t.Fatal(err)
	}
	third.Unlock(context.Background())
}

// writeVia is a process's view of a store whose writes go through write.
type writeVia struct {
	driver.Store
	name  string
	write func(ctx context.Context, key string, data []byte, v driver.Version) (driver.Version, error)
}

func (w writeVia) Location(key string) string { return w.Store.Location(key) + "#" + w.name }

func (w writeVia) Write(ctx context.Context, key string, data []byte, v driver.Version) (driver.Version, error) {
	return w.write(ctx, key, data, v)
}

// TestShortTTLWaiterKeepsItsTurn: a waiter polls at least every eighth of
// its own TTL, so that the lock handed to it is not taken over by the one
// behind before it notices. With a TTL of 300ms and the default backoff
// (1s at most), after a long hold, the waiter behind took the lock over
// in 3 to 6 runs of 20.
func TestShortTTLWaiterKeepsItsTurn(t *testing.T) {
	for run := range 20 {
		synctest.Test(t, func(t *testing.T) {
			base := mem.Namespace(fmt.Sprintf("%s-%d", t.Name(), run))
			base.Reset()
			defer base.Reset()
			holder := objsync.NewMutex(view{base, "holder"}, "lock")
			defer holder.Close()
			first, err := holder.Lock(context.Background(), 10*time.Second)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			var order []string
			var fences []int64
			var wg sync.WaitGroup
			for i, name := range []string{"A", "B"} {
				m := objsync.NewMutex(view{base, name}, "lock")
				defer m.Close()
				wg.Go(func() {
					fence, err := m.Lock(context.Background(), 300*time.Millisecond)
					if err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					order, fences = append(order, name), append(fences, fence)
					mu.Unlock()
					m.Unlock(context.Background())
				})
				for st := (objsync.State{}); st.Waiters != i+1; st, _ = holder.Inspect(context.Background()) {
					time.Sleep(time.Millisecond)
				}
			}
			time.Sleep(5 * time.Second) // a long hold: the waiters poll slowly
			if err := holder.Unlock(context.Background()); err != nil {
				t.Fatal(err)
			}
			wg.Wait()
			if len(order) != 2 || order[0] != "A" || fences[0] != first+1 {
				t.Fatalf("run %d: the lock went to %v with fences %v; want A first, handed fence %d", run, order, fences, first+1)
			}
		})
	}
}

// TestHandOffAfterLongHold: a waiter handed the lock after a long hold
// holds on the hand-off's short lease, counted from its last poll before
// it, without writing first (it wrote twice before); its first renewal
// writes its own TTL, and from then on it renews at that TTL's pace. A
// contender behind it never takes the lock over.
func TestHandOffAfterLongHold(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const ttl = 10 * time.Second
		base := mem.Namespace(t.Name())
		base.Reset()
		defer base.Reset()
		holder := objsync.NewMutex(view{base, "holder"}, "lock")
		defer holder.Close()
		first, err := holder.Lock(context.Background(), ttl)
		if err != nil {
			t.Fatal(err)
		}
		counted := countstore.New(view{base, "waiter"})
		waiter := objsync.NewMutex(counted, "lock")
		defer waiter.Close()
		handed := make(chan error, 1)
		go func() { _, err := waiter.Lock(context.Background(), ttl); handed <- err }()
		locktest.WaitWaiters(t, holder, 1)
		behind := objsync.NewMutex(view{base, "behind"}, "lock")
		defer behind.Close()
		behindCtx, cancel := context.WithCancel(context.Background())
		defer cancel()
		behindDone := make(chan error, 1)
		go func() { _, err := behind.Lock(behindCtx, ttl); behindDone <- err }()
		locktest.WaitWaiters(t, holder, 2)

		time.Sleep(time.Minute) // a long hold: the waiters poll slowly
		before := counted.Counts()
		if err := holder.Unlock(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := <-handed; err != nil {
			t.Fatal(err)
		}
		if w := counted.Counts().Sub(before).WriteRequests(); w != 0 || waiter.Fence() != first+1 {
			t.Fatalf("handed the lock, the waiter wrote %d times and holds fence %d; want no write, fence %d", w, waiter.Fence(), first+1)
		}
		st, err := waiter.Inspect(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if st.TTL >= ttl {
			t.Fatalf("the hand-off's lease is %v; want one shorter than the TTL of %v", st.TTL, ttl)
		}

		before = counted.Counts()
		time.Sleep(10 * ttl)
		if err := waiter.Err(); err != nil {
			t.Fatalf("the hold ended: %v", err)
		}
		if st, err = waiter.Inspect(context.Background()); err != nil || st.TTL != ttl || st.Fence != first+1 {
			t.Fatalf("state after renewals: %+v, %v; want fence %d with a TTL of %v", st, err, first+1, ttl)
		}
		// A renewal every 2.97s at the full TTL: 34 in 100s (84 at the
		// hand-off's 4s).
		if w := counted.Counts().Sub(before).WriteRequests(); w > 35 {
			t.Errorf("%d renewals in %v: the hold renews at the pace of the hand-off's short lease", w, 10*ttl)
		}
		select {
		case err := <-behindDone:
			t.Fatalf("the contender behind returned %v while the waiter held the lock", err)
		default:
		}
		if err := waiter.Unlock(context.Background()); err != nil {
			t.Fatal(err)
		}
		if err := <-behindDone; err != nil || behind.Fence() != first+2 {
			t.Fatalf("the contender behind: %v, fence %d; want fence %d", err, behind.Fence(), first+2)
		}
	})
}
