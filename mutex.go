package objsync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/objsync/objsync/driver"
)

// ErrClosed is returned by the methods of a Mutex after Close.
var ErrClosed = errors.New("objsync: mutex closed")

// Mutex is a lock on one object of a store, shared by every process that
// opens the same location. A Mutex is safe for concurrent use: while one
// goroutine holds it, Lock in another goroutine waits, as with sync.Mutex.
type Mutex struct {
	store  driver.Store
	key    string
	loc    string
	opts   options
	log    *slog.Logger
	shared *sharedLock

	mu     sync.Mutex
	hold   *hold // the current hold, or the last one
	closed bool
}

// NewMutex returns a Mutex for key in store. It is what Open does after
// the driver has parsed the DSN; use it with a store built by hand.
func NewMutex(store driver.Store, key string, opts ...Option) *Mutex {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	if o.minBackoff <= 0 {
		o.minBackoff = defaultOptions().minBackoff
	}
	o.maxBackoff = max(o.maxBackoff, o.minBackoff)
	loc := store.Location(key)
	return &Mutex{
		store:  store,
		key:    key,
		loc:    loc,
		opts:   o,
		log:    o.logger.With("lock", loc),
		shared: acquireShared(loc),
	}
}

// String returns the lock's location, without secrets.
func (m *Mutex) String() string { return m.loc }

// leaseValidity is how long after sending its last successful write a
// holder counts its lease as valid: the TTL less 1% for clock-rate drift
// and 5% for the time between a check of the lease and the work it guards.
func leaseValidity(ttl time.Duration) time.Duration { return ttl - ttl/100 - ttl/20 }

// lossNotice is how long after sending its last successful write a holder
// that could not renew ends its hold as lost: 5% of the TTL before its
// lease ends, so that work watching Done stops in time.
func lossNotice(ttl time.Duration) time.Duration { return leaseValidity(ttl) - ttl/20 }

// takeoverAfter is how long a contender must see a held lock unchanged,
// counted from when its read returned, before it takes the lock over: the
// TTL plus 1% for clock-rate drift.
func takeoverAfter(ttl time.Duration) time.Duration { return ttl + ttl/100 }

// readTries is how many times one read is tried before a transient error
// is passed up.
const readTries = 3

// CheckTTL reports whether Lock accepts ttl as a lease: a whole number of
// milliseconds, at least MinTTL. Lock, TryLock and Campaign return this
// error for a ttl they refuse.
func CheckTTL(ttl time.Duration) error {
	if ttl < MinTTL {
		return fmt.Errorf("objsync: ttl %v is below the minimum %v", ttl, MinTTL)
	}
	if ttl%time.Millisecond != 0 {
		return fmt.Errorf("objsync: ttl %v is not a whole number of milliseconds", ttl)
	}
	return nil
}

func (m *Mutex) newBackoff() backoff {
	return backoff{min: m.opts.minBackoff, max: m.opts.maxBackoff}
}

// Lock acquires the lock, waiting as long as ctx allows, and returns the
// hold's fencing token. The lease lasts ttl and renews itself in the
// background until Unlock (unless WithoutRenewal was given). ctx bounds
// the wait only: the hold outlives it.
func (m *Mutex) Lock(ctx context.Context, ttl time.Duration) (fence int64, err error) {
	h, err := m.lock(ctx, ttl, m.opts.value, true)
	if err != nil {
		return 0, err
	}
	return h.fence, nil
}

// TryLock acquires the lock if it is free, or held by a holder this
// process has seen stop renewing for longer than its TTL, and returns at
// once with ok false otherwise.
func (m *Mutex) TryLock(ctx context.Context, ttl time.Duration) (ok bool, fence int64, err error) {
	h, err := m.lock(ctx, ttl, m.opts.value, false)
	if err != nil || h == nil {
		return false, 0, err
	}
	return true, h.fence, nil
}

func (m *Mutex) lock(ctx context.Context, ttl time.Duration, value string, wait bool) (*hold, error) {
	if err := CheckTTL(ttl); err != nil {
		return nil, err
	}
	if m.isClosed() {
		return nil, ErrClosed
	}
	if wait {
		if err := m.shared.enter(ctx); err != nil {
			return nil, m.ctxErr(err)
		}
	} else if !m.shared.tryEnter() {
		return nil, nil // another goroutine of this process has or wants it
	}
	h, err := m.acquire(ctx, ttl, value, wait)
	if h == nil {
		m.shared.leave()
		return nil, err
	}
	m.mu.Lock()
	m.hold = h
	m.mu.Unlock()
	go h.run()
	m.log.Debug("objsync: acquired", "fence", h.fence, "ttl", ttl)
	return h, nil
}

// attempt is one acquisition: a holder id, a counter of the writes made
// under it, and when each was sent. When the answer to a write is lost and
// a later read shows it landed, the send time sets the lease.
type attempt struct {
	id   string
	seq  int64
	sent map[int64]time.Time
}

func newAttempt() *attempt {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return &attempt{id: hex.EncodeToString(b[:]), sent: map[int64]time.Time{}}
}

// next numbers a write about to be sent at the given instant.
func (a *attempt) next(now time.Time) int64 {
	a.seq++
	a.sent[a.seq] = now
	return a.seq
}

// owns reports whether snap is a held state written under this attempt.
func (a *attempt) owns(snap *snapshot) bool {
	return snap.exists && snap.obj.Holder == a.id && snap.obj.held()
}

var hostname, _ = os.Hostname()

// acquire runs the acquisition protocol with the local token held. It
// returns a nil hold when wait is false and the lock is taken.
func (m *Mutex) acquire(ctx context.Context, ttl time.Duration, value string, wait bool) (*hold, error) {
	a := newAttempt()
	// Every way out without a hold goes through giveUp, in case one of
	// this attempt's writes landed although its answer was lost.
	giveUp := func(err error) (*hold, error) {
		m.abandon(a, ttl)
		return nil, err
	}
	b := m.newBackoff()
	transient := 0
	// Start from this process's last state if it is free: after our own
	// Unlock that makes an uncontended Lock a single write.
	cur := m.shared.lastFree()
	for {
		if cur == nil {
			var err error
			if cur, err = m.read(ctx); err != nil {
				if transient++; !driver.IsRetryable(err) || (!wait && transient >= readTries) {
					return giveUp(err)
				}
				if err := b.wait(ctx, 0); err != nil {
					return giveUp(m.ctxErr(err))
				}
				continue
			}
		}
		if a.owns(cur) {
			// A write whose answer was lost had landed.
			return m.newHold(a, cur, ttl), nil
		}
		if cur.exists && cur.obj.held() {
			left := takeoverAfter(cur.obj.ttl()) - m.shared.unchanged(cur)
			if left > 0 {
				if !wait {
					return giveUp(nil)
				}
				m.log.Debug("objsync: waiting", "holder", cur.obj.Holder, "fence", cur.obj.Fence, "expires_in", left)
				if err := b.wait(ctx, left); err != nil {
					return giveUp(m.ctxErr(err))
				}
				cur = nil
				continue
			}
			m.log.Info("objsync: taking over an expired lock", "holder", cur.obj.Holder, "fence", cur.obj.Fence, "unchanged", takeoverAfter(cur.obj.ttl())-left)
		}
		now := time.Now()
		obj := lockObject{
			Format: lockFormat, State: stateHeld, Holder: a.id, Fence: cur.fence() + 1,
			Seq: a.next(now), TTLMillis: ttl.Milliseconds(), Value: value,
			Host: hostname, PID: os.Getpid(), AcquiredAt: now.UTC(), WrittenAt: now.UTC(),
		}
		v, err := m.store.Write(ctx, m.key, obj.encode(), cur.version)
		switch {
		case err == nil:
			snap := &snapshot{exists: true, version: v, obj: obj}
			m.shared.wrote(snap)
			return m.newHold(a, snap, ttl), nil
		case errors.Is(err, driver.ErrPrecondition):
			// Someone else wrote first; see who.
		case ctx.Err() != nil:
			return giveUp(m.ctxErr(ctx.Err()))
		case driver.IsRetryable(err):
			// The write may have landed; the next read tells.
			m.log.Debug("objsync: acquisition write failed, will read back", "err", err)
			if err := b.wait(ctx, 0); err != nil {
				return giveUp(m.ctxErr(err))
			}
		default:
			return giveUp(fmt.Errorf("objsync: %w", err))
		}
		cur = nil
	}
}

func (m *Mutex) ctxErr(err error) error {
	return fmt.Errorf("objsync: lock %s: %w", m.loc, err)
}

// read returns the lock's current state, trying a transient failure a few
// times, and records it in this process's view.
func (m *Mutex) read(ctx context.Context) (*snapshot, error) {
	b := m.newBackoff()
	for try := 1; ; try++ {
		data, v, err := m.store.Read(ctx, m.key)
		returned := time.Now()
		var snap *snapshot
		switch {
		case err == nil:
			obj, derr := decodeLock(data)
			if derr != nil {
				return nil, fmt.Errorf("objsync: %s: %w", m.loc, derr)
			}
			snap = &snapshot{exists: true, version: v, obj: obj}
		case errors.Is(err, driver.ErrNotExist):
			snap = &snapshot{}
		case driver.IsRetryable(err) && try < readTries && ctx.Err() == nil:
			if b.wait(ctx, 0) == nil {
				continue
			}
			fallthrough
		default:
			return nil, fmt.Errorf("objsync: %w", err)
		}
		m.shared.observed(snap, returned)
		return snap, nil
	}
}

// release writes the free state, signed with a's holder id, over snap. It
// returns nil once the lock is free, and ErrLockLost if someone else's
// state is there.
func (m *Mutex) release(ctx context.Context, a *attempt, snap *snapshot) error {
	b := m.newBackoff()
	for {
		now := time.Now()
		obj := snap.obj
		obj.State, obj.Holder, obj.Seq, obj.WrittenAt = stateFree, a.id, a.next(now), now.UTC()
		v, err := m.store.Write(ctx, m.key, obj.encode(), snap.version)
		if err == nil {
			m.shared.wrote(&snapshot{exists: true, version: v, obj: obj})
			return nil
		}
		if !errors.Is(err, driver.ErrPrecondition) {
			if ctx.Err() != nil || !driver.IsRetryable(err) {
				return fmt.Errorf("objsync: unlock: %w", err)
			}
			if err := b.wait(ctx, 0); err != nil {
				return fmt.Errorf("objsync: unlock %s: %w", m.loc, err)
			}
		}
		cur, err := m.read(ctx)
		switch {
		case err != nil:
			if ctx.Err() != nil || !driver.IsRetryable(err) {
				return fmt.Errorf("objsync: unlock: %w", err)
			}
		case cur.exists && cur.obj.Holder == a.id && !cur.obj.held():
			return nil // a release whose answer was lost had landed
		case a.owns(cur):
			snap = cur // a renewal landed late: release over it
		default:
			return fmt.Errorf("%w: %s: %s", ErrLockLost, m.loc, describeOther(cur))
		}
	}
}

// abandon frees the lock if a write of an acquisition that is being given
// up landed after all, so that no hold is left that nobody renews. It does
// nothing if the acquisition wrote nothing.
func (m *Mutex) abandon(a *attempt, ttl time.Duration) {
	if a.seq == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), leaseValidity(ttl))
	defer cancel()
	if cur, err := m.read(ctx); err == nil && a.owns(cur) {
		if err := m.release(ctx, a, cur); err != nil {
			m.log.Warn("objsync: could not free an abandoned acquisition; it expires after its ttl", "err", err)
		}
	}
}

func describeOther(cur *snapshot) string {
	switch {
	case !cur.exists:
		return "the lock object is gone"
	case cur.obj.held():
		return fmt.Sprintf("held by %s (fence %d, value %q, host %s, pid %d)", cur.obj.Holder, cur.obj.Fence, cur.obj.Value, cur.obj.Host, cur.obj.PID)
	default:
		return fmt.Sprintf("freed by %s", cur.obj.Holder)
	}
}

// Unlock releases the lock with a conditional write of the free state, so
// that it never frees a lock someone else has taken over. It returns
// ErrNotHeld if this Mutex holds no lock, and an error wrapping ErrLockLost
// if the hold had ended before (see Err) or someone else holds the lock.
// Either way this Mutex holds nothing afterwards. If the store cannot be
// reached before ctx ends, the lock is freed by expiry after its TTL.
func (m *Mutex) Unlock(ctx context.Context) error {
	m.mu.Lock()
	h := m.hold
	if h == nil || h.unlocking {
		m.mu.Unlock()
		return ErrNotHeld
	}
	h.unlocking = true
	m.mu.Unlock()

	h.stopRenewal()
	h.writeMu.Lock() // waits for a Proclaim under way
	lost := h.Err()
	err := m.release(ctx, h.a, h.snap)
	h.end(fmt.Errorf("%w: released by Unlock", ErrNotHeld))
	h.writeMu.Unlock()
	m.shared.leave()
	if lost != nil {
		return lost
	}
	if err != nil {
		return err
	}
	m.log.Debug("objsync: released", "fence", h.fence)
	return nil
}

// current returns the hold in force, or nil.
func (m *Mutex) current() *hold {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.hold
}

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

// Done returns a channel that is closed when the current hold ends: by
// Unlock, by Close, or because the lock was lost. Without a hold it returns
// a closed channel. Work done under the lock should stop when it closes.
func (m *Mutex) Done() <-chan struct{} {
	if h := m.current(); h != nil {
		return h.done
	}
	return closedChan
}

// Err returns nil while a hold is in force, and otherwise why the last one
// ended: an error wrapping ErrLockLost if it was lost, ErrNotHeld if it was
// released or none was taken.
func (m *Mutex) Err() error {
	if h := m.current(); h != nil {
		return h.Err()
	}
	return ErrNotHeld
}

// Fence returns the fencing token of the current hold, or 0 without one.
func (m *Mutex) Fence() int64 {
	if h := m.current(); h != nil && h.Err() == nil {
		return h.fence
	}
	return 0
}

// Inspect reads the lock object and returns what it says.
func (m *Mutex) Inspect(ctx context.Context) (State, error) {
	cur, err := m.read(ctx)
	if err != nil {
		return State{}, err
	}
	return m.state(cur), nil
}

func (m *Mutex) state(cur *snapshot) State {
	if !cur.exists {
		return State{}
	}
	o := cur.obj
	return State{
		Exists: true, Held: o.held(), Holder: o.Holder, Value: o.Value, Fence: o.Fence,
		TTL: o.ttl(), Host: o.Host, PID: o.PID, AcquiredAt: o.AcquiredAt, RenewedAt: o.WrittenAt,
		Unchanged: m.shared.unchanged(cur),
	}
}

// Break frees the lock whoever holds it, with a write conditional on the
// state it read, and returns that state. A lock that is free or absent is
// left alone and its state returned with ErrNotHeld.
//
// Break is for people repairing a stuck lock (objsync unlock --force), not
// for programs: the holder learns of it only at its next renewal, and its
// work may still be running until then. Fencing tokens are what protect
// the resource from that holder.
func (m *Mutex) Break(ctx context.Context) (State, error) {
	cur, err := m.read(ctx)
	if err != nil {
		return State{}, err
	}
	st := m.state(cur)
	if !st.Held {
		return st, fmt.Errorf("objsync: break %s: %w", m.loc, ErrNotHeld)
	}
	if err := m.release(ctx, newAttempt(), cur); err != nil {
		if errors.Is(err, ErrLockLost) {
			return st, fmt.Errorf("objsync: break %s: the lock changed while breaking it; nothing was written: %w", m.loc, err)
		}
		return st, err
	}
	m.log.Warn("objsync: lock broken", "holder", st.Holder, "fence", st.Fence)
	return st, nil
}

func (m *Mutex) isClosed() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.closed
}

// Close releases the lock if this Mutex holds it (waiting at most the
// lease for the store), stops its background work and frees what it
// shares with other Mutexes. It returns what Unlock returned, or nil.
func (m *Mutex) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	h := m.hold
	m.mu.Unlock()
	var err error
	if h != nil {
		ctx, cancel := context.WithTimeout(context.Background(), leaseValidity(h.ttl))
		err = m.Unlock(ctx)
		cancel()
	}
	releaseShared(m.loc, m.shared)
	if errors.Is(err, ErrNotHeld) {
		return nil
	}
	return err
}
