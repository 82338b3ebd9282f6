package objsync

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/objsync/objsync/driver"
)

// sharedLock is what the Mutexes of one process share about one lock
// location: a local token, so that only one goroutine at a time acquires or
// holds the lock and only one polls the store for it, and this process's
// view of the lock.
type sharedLock struct {
	token chan struct{} // holds a value while a goroutine acquires or holds

	mu     sync.Mutex
	last   *snapshot      // the latest state this process read or wrote
	seen   driver.Version // the version whose unchanged time is being counted
	seenAt time.Time      // when the first read returning seen returned
	refs   int
}

var (
	sharedMu sync.Mutex
	shared   = map[string]*sharedLock{}
)

// acquireShared returns the shared state of the lock at loc and counts a
// reference to it; releaseShared drops the reference.
func acquireShared(loc string) *sharedLock {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	s := shared[loc]
	if s == nil {
		s = &sharedLock{token: make(chan struct{}, 1)}
		shared[loc] = s
	}
	s.refs++
	return s
}

func releaseShared(loc string, s *sharedLock) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s.refs--; s.refs == 0 {
		delete(shared, loc)
	}
}

// enter takes the local token, waiting for the goroutine that has it to
// release the lock. Go hands a freed channel slot to waiters in order, so
// the next local waiter tries at once while remote ones are still asleep.
func (s *sharedLock) enter(ctx context.Context) error {
	select {
	case s.token <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *sharedLock) tryEnter() bool {
	select {
	case s.token <- struct{}{}:
		return true
	default:
		return false
	}
}

func (s *sharedLock) leave() { <-s.token }

// observed records a state returned by a read that returned at the given
// instant, and starts counting how long its version stays unchanged.
func (s *sharedLock) observed(snap *snapshot, returned time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = snap
	if snap.version != s.seen || s.seenAt.IsZero() {
		s.seen, s.seenAt = snap.version, returned
	}
}

// wrote records a state this process wrote itself.
func (s *sharedLock) wrote(snap *snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = snap
}

// lastFree returns the latest known state if it is free or absent: the
// starting point of an acquisition that needs no read. A known held state
// is not returned, since it may be stale.
func (s *sharedLock) lastFree() *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil || (s.last.exists && s.last.obj.held()) {
		return nil
	}
	return s.last
}

// unchanged returns how long reads have returned snap's version.
func (s *sharedLock) unchanged(snap *snapshot) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	if snap.version != s.seen {
		return 0
	}
	return time.Since(s.seenAt)
}

// backoff yields capped, doubling, jittered waits.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur = min(2*b.cur, b.max)
	}
	// Equal jitter: never less than half the step, so waits still grow.
	half := b.cur / 2
	return half + rand.N(b.cur-half+1)
}

// wait sleeps for the next backoff step, but no longer than atMost when
// atMost is positive, and returns early with ctx's error.
func (b *backoff) wait(ctx context.Context, atMost time.Duration) error {
	d := b.next()
	if atMost > 0 && atMost < d {
		d = atMost
	}
	return sleep(ctx, d)
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
