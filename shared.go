package objsync

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/objsync/objsync/driver"
)

// sharedLock is what the Mutexes of one process share about one lock: a
// local token, so that only one goroutine at a time acquires or holds the
// lock and only one polls the store for it, and this process's view of the
// lock.
type sharedLock struct {
	id    sharedID
	token chan struct{} // holds a value while a goroutine acquires or holds

	mu     sync.Mutex
	last   *snapshot // the latest state this process read or wrote
	seen   stateKey  // the state whose unchanged time is being counted
	seenAt time.Time // when the first read returning seen returned
	// storeSince is the earliest instant of this process's monotonic
	// clock before which, by the store's clock, seen was written (reads
	// WithStoreClock), or zero.
	storeSince time.Time
	refs       int       // 0 for a sharedLock that is not in the table
	handoff    *snapshot // the last hand-off this process wrote
	handoffAt  time.Time // when it was answered
	// every estimates how fast the lock's queue moves on by one place,
	// as this process's waiters have seen it; 0 until one has.
	every time.Duration
	// tail is the last ticket of a queue lock this process took; 0 until
	// it has. gap is how many were taken from its ticket before to it.
	// taken is the last ticket it has seen taken, by itself or another.
	tail, gap, taken int64
	// settledTo is a queue lock ticket up to which every ticket has
	// settled, as this process has seen, and left the tickets after it
	// seen left: both stay so, and spare waiters the reads.
	settledTo int64
	left      map[int64]bool
	// lapEnds holds, by slot object key, the last state of a queue
	// lock's slot this process read or wrote that stays until the slot's
	// next lap: a settling in a done slot, a ticket of its own it
	// released, or one abandoned. The next lap's write is conditional on
	// it without reading it first; if it is stale, that write fails and
	// the writer reads. At most two entries a slot.
	lapEnds map[string]*snapshot
	// turn is the ticket whose turn this process last saw come, in the
	// state first seen then, and since when; last is the latest read of
	// it in that state, nil once a write conditional on it was made.
	turn struct {
		fence int64
		key   stateKey
		at    time.Time
		last  *snapshot
	}
}

// sharedID is what makes two Mutexes share: the same store and key. The
// store is compared as a value (the same pointer, for every driver here),
// never by its Location, which is only a message for people.
type sharedID struct {
	store driver.Store
	key   string
}

var (
	sharedMu sync.Mutex
	shared   = map[sharedID]*sharedLock{}
)

// acquireShared returns the shared state of the lock at key in store and
// counts a reference to it; releaseShared drops the reference. A store
// whose values cannot be compared shares nothing.
func acquireShared(store driver.Store, key string) *sharedLock {
	id := sharedID{store, key}
	if !canCompare(store) {
		return &sharedLock{id: id, token: make(chan struct{}, 1)}
	}
	sharedMu.Lock()
	defer sharedMu.Unlock()
	s := shared[id]
	if s == nil {
		s = &sharedLock{id: id, token: make(chan struct{}, 1)}
		shared[id] = s
	}
	s.refs++
	return s
}

func releaseShared(s *sharedLock) {
	sharedMu.Lock()
	defer sharedMu.Unlock()
	if s.refs == 0 {
		return // never in the table
	}
	if s.refs--; s.refs == 0 {
		delete(shared, s.id)
	}
}

// canCompare reports whether v can be a map key: == on an interface panics
// when its dynamic type cannot be compared.
func canCompare(v any) (ok bool) {
	defer func() {
		if recover() != nil {
			ok = false
		}
	}()
	return v == v
}

// enter takes the local token, waiting for the goroutine that has it to
// release the lock. Go hands a freed channel slot to waiters in order, so
// the next local waiter tries at once while remote ones are still asleep.
func (s *sharedLock) enter(ctx context.Context) error { return take(ctx, s.token) }

func (s *sharedLock) tryEnter() bool { return tryTake(s.token) }

// take fills token, a channel of capacity one, waiting until it is empty
// or ctx ends.
func take(ctx context.Context, token chan struct{}) error {
	select {
	case token <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// tryTake fills token if it is empty and reports whether it did.
func tryTake(token chan struct{}) bool {
	select {
	case token <- struct{}{}:
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
	if snap.key() != s.seen || s.seenAt.IsZero() {
		s.seen, s.seenAt, s.storeSince = snap.key(), returned, time.Time{}
	}
	// By the store's clock the object, and so the state, may be older.
	if !snap.since.IsZero() && (s.storeSince.IsZero() || snap.since.Before(s.storeSince)) {
		s.storeSince = snap.since
	}
}

// wrote records a state this process wrote itself.
func (s *sharedLock) wrote(snap *snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last = snap
}

// handedOff records a state this process wrote to hand the lock to a
// waiter.
func (s *sharedLock) handedOff(snap *snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.last, s.handoff, s.handoffAt = snap, snap, time.Now()
}

// recentHandoff returns the hand-off this process wrote last if nothing
// newer is known of the lock and it was answered less than d ago: a Lock
// right after an Unlock that handed the lock on can join the queue from
// it, with no read, and is usually right.
func (s *sharedLock) recentHandoff(d time.Duration) *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.last == nil || s.last != s.handoff || time.Since(s.handoffAt) >= d {
		return nil
	}
	return s.last
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

// queueMoved records that a waiter saw the queue move on by one place in
// about d. The estimate follows the fastest: it drops to a faster sample
// at once, and rises by a tenth per sample, so that it can follow a lock
// that became slower, but is not carried up by waiters that poll late.
func (s *sharedLock) queueMoved(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.every == 0 || d < s.every {
		s.every = d
	} else {
		s.every += min(d-s.every, s.every/10)
	}
}

// tookTicket records that this process took ticket n of a queue lock.
func (s *sharedLock) tookTicket(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tail > 0 && n > s.tail {
		s.gap = n - s.tail
	}
	s.tail, s.taken = max(s.tail, n), max(s.taken, n)
}

// lastTaken returns the last ticket of a queue lock this process has seen
// taken, or 0.
func (s *sharedLock) lastTaken() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.taken
}

// sawTaken records that ticket n of a queue lock was seen taken.
func (s *sharedLock) sawTaken(n int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.taken = max(s.taken, n)
}

// knownSettled reports whether ticket k of a queue lock is known to have
// settled, and whether every ticket before it has too.
func (s *sharedLock) knownSettled(k int64) (settled, all bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k <= s.settledTo {
		return true, true
	}
	return s.left[k], false
}

// settledUpTo returns the ticket up to which every ticket of a queue lock
// is known to have settled, or 0.
func (s *sharedLock) settledUpTo() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.settledTo
}

// sawSettled records that every ticket up to k has settled.
func (s *sharedLock) sawSettled(k int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.turn.last != nil && s.turn.fence <= k {
		s.turn.last = nil // settled: its turn is not to be ended
	}
	if k <= s.settledTo {
		return
	}
	s.settledTo = k
	for n := range s.left {
		if n <= k {
			delete(s.left, n)
		}
	}
}

// sawLeft records that ticket k left the queue.
func (s *sharedLock) sawLeft(k int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if k <= s.settledTo {
		return
	}
	if s.left == nil {
		s.left = map[int64]bool{}
	}
	s.left[k] = true
}

// sawLapEnd records snap, read from or written to the queue slot object
// at key, as the state it keeps until the slot's next lap.
func (s *sharedLock) sawLapEnd(key string, snap *snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.lapEnds == nil {
		s.lapEnds = map[string]*snapshot{}
	}
	s.lapEnds[key] = snap
}

// lapEnd returns what sawLapEnd recorded for key if it holds ticket n,
// or nil.
func (s *sharedLock) lapEnd(key string, n int64) *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if snap := s.lapEnds[key]; snap != nil && snap.obj.Fence == n {
		return snap
	}
	return nil
}

// turnSeen records that ticket t of a queue lock was seen with its turn
// come, by a read or walk that ended at the given instant, and returns
// since when this process has seen it so in t's state: the Locks and
// TryLocks of a process that each wait less than a TTL still end the turn
// of a dead holder in the end.
func (s *sharedLock) turnSeen(t *snapshot, at time.Time) time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.turn.fence != t.obj.Fence || s.turn.key != t.key() {
		s.turn.fence, s.turn.key, s.turn.at = t.obj.Fence, t.key(), at
	}
	s.turn.last = t
	return s.turn.at
}

// lastTurn returns the latest read that turnSeen recorded, and since when
// the process has seen that ticket's turn come in that state; nil if none,
// or if forgetTurn dropped it.
func (s *sharedLock) lastTurn() (*snapshot, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.turn.last, s.turn.at
}

// forgetTurn drops the read that turnSeen recorded, if it is t: a write
// conditional on it was made.
func (s *sharedLock) forgetTurn(t *snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.turn.last == t {
		s.turn.last = nil
	}
}

// queueTail guesses the last ticket taken of a queue lock, 0 if this
// process knows of none: as many tickets after its last one as were taken
// between its last two, up to maxGap (in a queue that holds the same
// contenders, each takes a ticket once a round), or the last it has seen
// taken if that is later, and then known is true.
func (s *sharedLock) queueTail(maxGap int64) (guess int64, known bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tail > 0 {
		guess = s.tail + max(min(s.gap, maxGap), 1) - 1
	}
	if s.taken >= guess {
		return s.taken, true
	}
	return guess, false
}

// handoffEvery returns how often the queue moves on by one place, as far
// as this process knows, or 0.
func (s *sharedLock) handoffEvery() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.every
}

// unchangedBy returns how long reads have returned snap's state, by its
// key (changes to the queue alone do not count), and how long it has been
// so by the store's clock, as reads of Mutexes opened WithStoreClock said
// (0 if none did). Only those Mutexes may count the second.
func (s *sharedLock) unchangedBy(snap *snapshot) (watched, byStore time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if snap.key() != s.seen {
		return 0, 0
	}
	if !s.storeSince.IsZero() {
		byStore = time.Since(s.storeSince)
	}
	return time.Since(s.seenAt), byStore
}

// backoff yields capped, doubling, jittered waits.
type backoff struct {
	min, max, cur time.Duration
}

func (b *backoff) next() time.Duration {
	switch {
	case b.cur == 0:
		b.cur = b.min
	case b.cur > b.max/2: // doubling would pass max, or overflow
		b.cur = b.max
	default:
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
