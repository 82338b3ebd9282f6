package objsync

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/procid"
	"go.opentelemetry.io/otel/trace"
)

// ErrClosed is returned by the methods of a Mutex after Close.
var ErrClosed = errors.New("objsync: mutex closed")

// Mutex is a lock on one object of a store, shared by every process that
// opens the same location. A Mutex is safe for concurrent use: while one
// goroutine holds it, Lock in another goroutine waits, as with sync.Mutex,
// until Unlock, even if the hold was lost meanwhile.
type Mutex struct {
	store  driver.Store
	key    string
	loc    string
	opts   options
	log    *slog.Logger
	tel    *telemetry
	shared *sharedLock
	proc   holderProcess // this process, as its writes record it (but for WithCgroup's cgroup)
	// own is this Mutex's token: taken by Lock, given back by Unlock. The
	// shared token, by contrast, is given back as soon as a hold ends.
	own chan struct{}

	// closing is cancelled by Close, which stops Locks in progress.
	closing   context.Context
	stopLocks context.CancelFunc
	locking   sync.WaitGroup // Lock calls in progress

	mu     sync.Mutex
	hold   *hold // the current hold, or the last one
	closed bool

	queueReady atomic.Bool // a queue lock's marker was seen
}

// NewMutex returns a Mutex for key in store. It is what Open does after
// the driver has parsed the DSN; use it with a store built by hand. A
// refused option is reported by Lock, TryLock and Campaign.
//
// Mutexes on the same store (the same Store value) and key share their
// polling and their view of the lock; see the package documentation.
func NewMutex(store driver.Store, key string, opts ...Option) *Mutex {
	o := defaultOptions()
	for _, opt := range opts {
		opt(&o)
	}
	loc := store.Location(key)
	if _, ok := store.(driver.AgeReader); o.storeClock && !ok {
		o.refuse("WithStoreClock: the driver of %s cannot tell an object's age by the store's clock (driver.AgeReader)", loc)
	}
	if o.storeClock && o.queue {
		o.refuse("WithStoreClock: not for queue locks, whose turns do not begin with a write of the ticket's object")
	}
	if o.cgroup != "" && !o.noProcessCheck {
		if _, _, err := procid.CgroupPath(o.cgroup); err != nil {
			o.refuse("WithCgroup(%q): %v", o.cgroup, err)
		}
	}
	closing, stopLocks := context.WithCancel(context.Background())
	return &Mutex{
		store:     store,
		key:       key,
		loc:       loc,
		opts:      o,
		log:       o.logger.With("lock", loc),
		tel:       newTelemetry(&o, loc),
		shared:    acquireShared(store, key),
		proc:      o.process(),
		own:       make(chan struct{}, 1),
		closing:   closing,
		stopLocks: stopLocks,
	}
}

// String returns the lock's location, without secrets.
func (m *Mutex) String() string { return m.loc }

// leaseValidity is how long after sending its last successful write a
// holder counts its lease as valid: the TTL less 1% for clock-rate drift
// and 5% for the time between a check of the lease and the work it guards.
func leaseValidity(ttl time.Duration) time.Duration { return ttl - ttl/100 - ttl/20 }

// takeoverAfter is how long a contender must see a held lock unchanged,
// counted from when its read returned, before it takes the lock over: the
// TTL plus 1% for clock-rate drift. ttl is at most MaxTTL, far from
// overflow.
func takeoverAfter(ttl time.Duration) time.Duration { return ttl + ttl/100 }

// leaseTiming says when a hold renews and when it gives up, counted from
// when its last successful write was sent, on this process's monotonic
// clock.
type leaseTiming struct {
	ttl time.Duration
	// lossAfter is when a hold that could not renew ends as lost: the
	// notice (5% of the TTL by default) before its lease ends.
	lossAfter time.Duration
	// renewEvery is the renewal cadence, a third of lossAfter: two more
	// tries fit before the hold must be given up.
	renewEvery time.Duration
	// fresh is the longest a write that takes the lock may take to be
	// answered: half of lossAfter. A write answered later does not make a
	// hold; Lock writes again, as a renewal, until one is answered in time.
	fresh time.Duration
}

func (o *options) timing(ttl time.Duration) leaseTiming {
	notice := ttl / 20
	if o.notice >= 0 {
		notice = o.notice
	}
	loss := leaseValidity(ttl) - notice
	return leaseTiming{ttl: ttl, lossAfter: loss, renewEvery: loss / 3, fresh: loss / 2}
}

// RenewInterval is how often a hold on a lease of ttl renews it, with the
// default loss notice: one conditional write each time, which is what a
// lock held continuously costs.
func RenewInterval(ttl time.Duration) time.Duration {
	o := defaultOptions()
	return o.timing(ttl).renewEvery
}

// readTries is how many times one read is tried before a transient error
// is passed up.
const readTries = 3

// tryLockRounds is how many writes or reads that fail transiently, or
// writes answered too late, TryLock makes before it returns.
const tryLockRounds = 3

// CheckTTL reports whether Lock accepts ttl as a lease: a whole number of
// milliseconds from MinTTL to MaxTTL. Lock, TryLock and Campaign return
// this error for a ttl they refuse.
func CheckTTL(ttl time.Duration) error {
	if ttl < MinTTL {
		return fmt.Errorf("objsync: ttl %v is below the minimum %v", ttl, MinTTL)
	}
	if ttl > MaxTTL {
		return fmt.Errorf("objsync: ttl %v is above the maximum %v", ttl, MaxTTL)
	}
	if ttl%time.Millisecond != 0 {
		return fmt.Errorf("objsync: ttl %v is not a whole number of milliseconds", ttl)
	}
	return nil
}

// checkLease checks the options and ttl of an acquisition.
func (m *Mutex) checkLease(ttl time.Duration) error {
	if m.opts.err != nil {
		return m.opts.err
	}
	if err := CheckTTL(ttl); err != nil {
		return err
	}
	if n := m.opts.notice; n > MaxLossNotice(ttl) {
		return fmt.Errorf("objsync: a loss notice of %v does not fit ttl %v: at most %v (see WithLossNotice)", n, ttl, MaxLossNotice(ttl))
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
//
// Lock returns only a hold whose lease is well in force: the write that
// took the lock was answered within half the time to the loss notice (so
// within 44.5% of the TTL by default). If the store answers later, Lock
// writes again, as a renewal, until a write is answered in time or ctx
// ends; a Lock that gives up frees the lock if one of its writes landed.
//
// Lock retries a store that fails transiently. It gives up and returns the
// store's error when the store has not answered its first few reads (a
// wrong endpoint or a missing network is reported within a second or so),
// or when reads have failed for longer than the longest lease Lock has
// seen on the lock, its own ttl included: an outage shorter than that is
// ridden out.
func (m *Mutex) Lock(ctx context.Context, ttl time.Duration) (fence int64, err error) {
	h, err := m.lockTraced(ctx, "objsync.Lock", ttl, m.opts.value, true, false)
	if err != nil {
		return 0, err
	}
	return h.fence, nil
}

// TryLock acquires the lock if it is free, or held by a holder this
// process has seen stop renewing for longer than its TTL, and returns at
// once with ok false otherwise. It makes a few tries at most when the
// store fails or answers late, and then returns the error.
func (m *Mutex) TryLock(ctx context.Context, ttl time.Duration) (ok bool, fence int64, err error) {
	h, err := m.lockTraced(ctx, "objsync.TryLock", ttl, m.opts.value, false, false)
	if err != nil || h == nil {
		return false, 0, err
	}
	return true, h.fence, nil
}

// lock acquires the lock; with confirm, a hold handed over by another's
// release is written once before it is returned, so that the holder has
// been seen writing (Campaign: a leader is seen alive).
func (m *Mutex) lock(ctx context.Context, ttl time.Duration, value string, wait, confirm bool) (*hold, error) {
	if err := m.checkLease(ttl); err != nil {
		return nil, err
	}
	if confirm && m.opts.queue {
		return nil, fmt.Errorf("objsync: %s: elections need a plain lock, not one opened WithQueue", m.loc)
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, ErrClosed
	}
	m.locking.Add(1)
	m.mu.Unlock()
	defer m.locking.Done()
	// Close cancels ctx: a Lock in progress then returns ErrClosed.
	ctx, cancel := context.WithCancel(ctx)
	defer context.AfterFunc(m.closing, cancel)()
	defer cancel()

	if !m.enter(ctx, wait) {
		if !wait {
			return nil, nil // another goroutine of this process has or wants it
		}
		return nil, m.ctxErr(ctx.Err())
	}
	acquire := m.acquire
	if m.opts.queue {
		acquire = m.acquireQueue
	}
	h, err := acquire(ctx, ttl, value, wait)
	if h == nil {
		m.shared.leave()
		<-m.own
		if m.closing.Err() != nil {
			return nil, ErrClosed
		}
		return nil, err
	}
	// Renewals' spans link to the span of the call that took the lock.
	h.lockSpan = trace.SpanContextFromContext(ctx)
	// drop gives up a hold that will not be returned after all.
	drop := func() {
		if m.opts.queue {
			m.leaveQueue(ctx, h.a)
		} else {
			m.abandon(ctx, h.a, ttl)
		}
		h.leave()
		<-m.own
	}
	if confirm && h.snap.obj.Handed {
		// Before the renewals start, which would race with it. A failure
		// is the renewals' to retry, unless it ended the hold.
		if err := h.update(ctx, nil); err != nil && h.Err() != nil {
			drop()
			return nil, h.Err()
		}
	}
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		h.end(ErrClosed, "")
		drop()
		return nil, ErrClosed
	}
	m.hold = h
	m.mu.Unlock()
	go h.run()
	m.log.Debug("objsync: acquired", "fence", h.fence, "ttl", ttl)
	return h, nil
}

// enter takes this Mutex's token and then the shared one, waiting for them
// if wait is true. It reports whether it has both.
func (m *Mutex) enter(ctx context.Context, wait bool) bool {
	if !wait {
		if !tryTake(m.own) {
			return false
		}
		if !m.shared.tryEnter() {
			<-m.own
			return false
		}
		return true
	}
	if take(ctx, m.own) != nil {
		return false
	}
	if m.shared.enter(ctx) != nil {
		<-m.own
		return false
	}
	return true
}

// attempt is one acquisition: a holder id, a counter of the writes made
// under it, and when each was sent. When the answer to a write is lost and
// a later read shows it landed, the send time sets the lease.
type attempt struct {
	id    string
	proc  holderProcess // the process, as this attempt's writes record it
	seq   int64
	sent  map[int64]time.Time
	joins map[int64]bool // the numbers of writes that joined a queue
	// ticket is the queue lock ticket this attempt last tried to take;
	// seenTTL the longest lease of the tickets it read, which it rides out
	// an outage for.
	ticket  int64
	seenTTL time.Duration
	// notYet is when the last request was sent whose answer showed the
	// lock not yet handed to this attempt: a hand-off landed after it.
	notYet time.Time
}

func newAttempt(proc holderProcess) *attempt {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		panic(err) // crypto/rand does not fail on supported platforms
	}
	return &attempt{id: hex.EncodeToString(b[:]), proc: proc, sent: map[int64]time.Time{}, joins: map[int64]bool{}}
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

// process returns this process as the lock objects it writes record it:
// without what identifies it for the same-machine check if
// WithoutProcessCheck was given.
func (o *options) process() holderProcess {
	p := holderProcess{Host: hostname, PID: os.Getpid()}
	if id := procid.Self(); id.Known() && id.Host == hostname && !o.noProcessCheck {
		p.Process = &processID{Boot: id.Boot, PIDNS: id.PIDNS, TimeNS: id.TimeNS, Start: id.Start, Group: o.group, CgroupNS: id.CgroupNS}
	}
	return p
}

// process returns this process as an acquisition's writes record it: with
// WithCgroup's cgroup as it is now, by path and id, so that a cgroup made
// again at the path since NewMutex is the one recorded.
func (m *Mutex) process() (holderProcess, error) {
	p := m.proc
	if m.opts.cgroup == "" || p.Process == nil {
		return p, nil
	}
	rel, id, err := procid.CgroupPath(m.opts.cgroup)
	if err != nil {
		return p, fmt.Errorf("objsync: %s: WithCgroup: %w", m.loc, err)
	}
	q := *p.Process
	q.Cgroup, q.CgroupID = rel, id
	p.Process = &q
	return p, nil
}

// acquire runs the acquisition protocol with the local tokens held. It
// returns a nil hold when wait is false and the lock is taken.
func (m *Mutex) acquire(ctx context.Context, ttl time.Duration, value string, wait bool) (*hold, error) {
	proc, err := m.process()
	if err != nil {
		return nil, err
	}
	a := newAttempt(proc)
	// Every way out without a hold goes through giveUp, in case one of
	// this attempt's writes landed although its answer was lost.
	giveUp := func(err error) (*hold, error) {
		m.abandon(ctx, a, ttl)
		return nil, err
	}
	timing := m.opts.timing(ttl)
	b := m.newBackoff()
	// TryLock gives up after a few transient failures or late answers;
	// lastErr says why.
	rounds, lateAnswers := 0, 0
	var lastErr error
	tooMany := func(err error) bool {
		lastErr = err
		rounds++
		return !wait && rounds >= tryLockRounds
	}
	out := outage{patience: ttl}
	queued := queuePacer{m: m}
	// Start from this process's last state if it is free: after our own
	// Unlock that makes an uncontended Lock a single write.
	cur := m.shared.lastFree()
	if cur == nil && wait {
		cur = m.shared.recentHandoff(m.opts.minBackoff)
	}
	for {
		if cur == nil {
			var err error
			sent := time.Now()
			if cur, err = m.read(ctx); err != nil {
				if ctx.Err() != nil {
					return giveUp(m.ctxErr(ctx.Err()))
				}
				if !driver.IsRetryable(err) || tooMany(err) {
					return giveUp(err)
				}
				if gone := out.failed(err); gone != nil {
					return giveUp(gone)
				}
				if err := b.wait(ctx, 0); err != nil {
					return giveUp(m.ctxErr(err))
				}
				continue
			}
			out.answered()
			if cur.exists {
				out.patience = max(out.patience, cur.obj.ttl())
			}
			if !a.owns(cur) {
				a.notYet = sent
			}
		}
		switch {
		case a.owns(cur):
			// Our write landed: the lease counts from when it was sent.
			// Or a release handed us the lock: the hand-off lease it wrote
			// counts from our last request that did not see it yet.
			since, lease, handed := a.sent[cur.obj.Seq], timing, a.joins[cur.obj.Seq]
			if handed {
				queued.handed()
				since, lease = a.notYet, m.opts.timing(min(cur.obj.ttl(), ttl))
			}
			late := time.Since(since)
			// Without renewals nothing would lengthen a short hand-off
			// lease to the caller's TTL: write it first.
			if late <= lease.fresh && (lease.ttl == ttl || m.opts.renew) {
				return m.newHold(a, cur, since, lease, timing), nil
			}
			// Too little of the lease is left to hand it to the caller.
			// Write again, as a renewal would, for a fresh lease.
			if handed {
				m.log.Debug("objsync: handed the lock after a long wait; renewing before holding", "waited", late)
				break
			}
			m.log.Warn("objsync: the store answered too late for the lease; writing again", "after", late, "limit", timing.fresh, "ttl", ttl)
			if tooMany(fmt.Errorf("objsync: %s: the store answered a write after %v, and a lease of %v needs an answer within %v; a longer ttl would do", m.loc, late, ttl, timing.fresh)) {
				return giveUp(lastErr)
			}
			// A store that stays this slow would have this attempt keep
			// the lock from everyone without ever holding it: after a few
			// late answers, free it and start again later.
			if lateAnswers++; lateAnswers >= tryLockRounds {
				m.abandon(ctx, a, ttl)
				a, lateAnswers = newAttempt(proc), 0
				if err := b.wait(ctx, 0); err != nil {
					return giveUp(m.ctxErr(err))
				}
				cur = nil
				continue
			}
		case cur.exists && cur.obj.held():
			seen := m.unchanged(cur)
			left := takeoverAfter(cur.obj.ttl()) - seen
			if left > 0 && cur.obj.ended() {
				m.log.Info("objsync: taking over a lock whose holder's process has ended", "holder", cur.obj.Holder, "pid", cur.obj.PID, "fence", cur.obj.Fence)
				left = 0
			}
			if left > 0 {
				if !wait {
					return giveUp(lastErr)
				}
				pos := cur.obj.position(a.id)
				if pos < 0 && len(cur.obj.Queue) < maxQueue && seen < joinWithin(cur.obj.ttl()) && !deadlineWithin(ctx, joinDeadline) {
					// Join the queue, so that a release hands us the lock
					// in turn.
					joined, err := m.join(ctx, a, cur, value, ttl)
					switch {
					case err == nil:
						cur, pos = joined, len(joined.obj.Queue)-1
					case errors.Is(err, driver.ErrPrecondition):
						cur = nil // someone wrote first: read and try again
						continue
					case ctx.Err() != nil:
						return giveUp(m.ctxErr(ctx.Err()))
					case driver.IsRetryable(err):
						// It may have landed: the next read tells.
						m.log.Debug("objsync: joining the queue failed, will read back", "err", err)
					default:
						return giveUp(fmt.Errorf("objsync: %w", err))
					}
				}
				m.log.Debug("objsync: waiting", "holder", cur.obj.Holder, "fence", cur.obj.Fence, "place", pos, "expires_in", left)
				var err error
				if pos < 0 {
					err = b.wait(ctx, left)
				} else {
					// Often enough to take a hand-off well within its
					// short lease.
					err = queued.wait(ctx, queueSpot{cur.obj.Holder, pos}, min(left, m.opts.handoffPoll(ttl)))
				}
				if err != nil {
					return giveUp(m.ctxErr(err))
				}
				cur = nil
				continue
			}
			m.log.Info("objsync: taking over an expired lock", "holder", cur.obj.Holder, "fence", cur.obj.Fence, "unchanged", takeoverAfter(cur.obj.ttl())-left)
		}
		obj, err := m.acquiringState(a, cur, value, ttl)
		if err != nil {
			return giveUp(err)
		}
		v, err := m.write(ctx, m.key, obj.encode(), cur.version)
		switch {
		case err == nil:
			cur = &snapshot{exists: true, version: v, obj: obj}
			m.shared.wrote(cur)
			continue // ours now: was it answered in time?
		case errors.Is(err, driver.ErrPrecondition):
			// Someone else wrote first; see who.
		case ctx.Err() != nil:
			return giveUp(m.ctxErr(ctx.Err()))
		case driver.IsRetryable(err):
			// The write may have landed; the next read tells.
			m.log.Debug("objsync: acquisition write failed, will read back", "err", err)
			if tooMany(fmt.Errorf("objsync: %w", err)) {
				return giveUp(lastErr)
			}
			if err := b.wait(ctx, 0); err != nil {
				return giveUp(m.ctxErr(err))
			}
		default:
			return giveUp(fmt.Errorf("objsync: %w", err))
		}
		cur = nil
	}
}

// handoffPoll is the longest a waiter in a lock's queue sleeps between
// polls: an eighth of its TTL, and at most the maximum backoff.
func (o *options) handoffPoll(ttl time.Duration) time.Duration { return min(o.maxBackoff, ttl/8) }

// minHandoffTTL is the shortest hand-off lease: with less, a handed
// waiter on a loaded store lost its first renewal (100ms, MinIO in CI).
const minHandoffTTL = time.Second

// handoffTTL is the lease that a waiter asks a release to hand it, shorter
// than its TTL so that a waiter that died in the queue holds up the others
// for that long only: four of its polls, so that it sees a hand-off well
// within the lease (and holds without a write), and at least a second, and
// room for the loss notice. Its first renewal writes the full TTL.
func (o *options) handoffTTL(ttl time.Duration) time.Duration {
	h := max(4*o.handoffPoll(ttl), minHandoffTTL, 2*o.notice)
	return min(h.Truncate(time.Millisecond), ttl)
}

// outage tracks a store that fails while Lock waits. Lock rides out a
// store that stops answering for the longest lease it has seen
// (patience), so that an outage no longer than a TTL does not end a wait;
// a store that never answered gets readTries tries, so that a wrong
// endpoint is reported at once.
type outage struct {
	patience          time.Duration
	since, lastAnswer time.Time
	unanswered        int
}

// answered records a request the store answered.
func (o *outage) answered() { o.lastAnswer, o.since = time.Now(), time.Time{} }

// failed records a transient failure, and returns the error to give up
// with, or nil to ride it out.
func (o *outage) failed(err error) error {
	if o.since.IsZero() {
		o.since = time.Now()
	}
	if o.lastAnswer.IsZero() {
		if o.unanswered++; o.unanswered < readTries {
			return nil
		}
		return fmt.Errorf("%w; the store did not answer %d reads", err, o.unanswered*readTries)
	}
	if gone := time.Since(o.since); gone > o.patience {
		return fmt.Errorf("%w; the store has failed for %v, longer than a lease of %v", err, gone.Round(time.Millisecond), o.patience)
	}
	return nil
}

// joinWithin is how long after it first saw a holder's state a waiter may
// join the queue: an eighth of the holder's TTL, before the holder renews
// (a third of the time to the loss notice, at least 0.147×TTL). Joins and
// departures cannot then crowd out a renewal, however many waiters come
// and go; a waiter that comes later polls until it sees the renewal and
// joins then.
func joinWithin(ttl time.Duration) time.Duration { return ttl / 8 }

// joinDeadline: a Lock whose context ends sooner than this does not join
// the queue. A join still on its way when the Lock gives up may land after
// the Lock has left (a store that applies a request after the client has
// stopped waiting for it): the lock is then handed to a waiter that is
// gone, and waits out its TTL.
const joinDeadline = time.Second

// deadlineWithin reports whether ctx ends within d.
func deadlineWithin(ctx context.Context, d time.Duration) bool {
	deadline, ok := ctx.Deadline()
	return ok && time.Until(deadline) < d
}

// join writes cur with a at the end of its queue, conditional on cur's
// version, and returns the state written. An error wrapping
// driver.ErrPrecondition means someone wrote first; after any other, the
// write may have landed.
func (m *Mutex) join(ctx context.Context, a *attempt, cur *snapshot, value string, ttl time.Duration) (*snapshot, error) {
	seq := a.next(time.Now())
	a.joins[seq] = true
	obj := cur.obj.joined(waiter{Holder: a.id, Seq: seq, TTLMillis: m.opts.handoffTTL(ttl).Milliseconds(), Value: value, holderProcess: a.proc})
	v, err := m.write(ctx, m.key, obj.encode(), cur.version)
	if err != nil {
		return nil, err
	}
	a.notYet = a.sent[seq]
	return &snapshot{exists: true, version: v, obj: obj}, nil
}

// queueSpot is a waiter's place in a queue: behind which holder, how far.
type queueSpot struct {
	holder string
	pos    int
}

// queuePacer paces the polls of a waiter in the queue. Each poll is a
// read, billed on most stores. A waiter sleeps for its place times the
// fastest the queue has lately moved on by one place, as this process has
// seen it, and then polls at half that pace, eight times, and then ever
// less often, doubling up to the maximum backoff while its place stays the
// same: a long hold costs each waiter at most one read per maximum backoff
// (1s by default). The fastest, not the average: a waiter's own polls make
// the queue seem to move slower than it does, and an average fed by them
// would slow the queue down to match it. Until this process has seen the
// queue move, the first waiter polls at a quarter of the minimum backoff,
// and the one at place p (from 0) at p times the minimum backoff.
type queuePacer struct {
	m      *Mutex
	spot   queueSpot // the place last seen
	since  time.Time // when it was first seen
	steady int       // polls left at step before backing off
	step   time.Duration
	b      backoff
}

// steadyPolls is how many polls a waiter makes at its pace before it
// backs off.
const steadyPolls = 8

func (p *queuePacer) wait(ctx context.Context, spot queueSpot, atMost time.Duration) error {
	if spot != p.spot {
		now := time.Now()
		if moved := p.spot.pos - spot.pos; !p.since.IsZero() && moved > 0 {
			p.m.shared.queueMoved(now.Sub(p.since) / time.Duration(moved))
		}
		p.spot, p.since = spot, now
		o := p.m.opts
		step, first := max(o.minBackoff/4, time.Millisecond), time.Duration(0)
		switch every := p.m.shared.handoffEvery(); {
		case every > 0:
			first, step = saturatingMul(every, spot.pos), max(min(step, every/2), time.Millisecond)
		case spot.pos > 0:
			step = saturatingMul(o.minBackoff, spot.pos)
		}
		p.steady, p.step = steadyPolls, min(step, o.maxBackoff)
		p.b = backoff{min: p.step, max: o.maxBackoff}
		if first > 0 {
			return sleep(ctx, min(first, o.maxBackoff, atMost))
		}
	}
	if p.steady > 0 {
		p.steady--
		return sleep(ctx, min(p.step, atMost))
	}
	return p.b.wait(ctx, atMost)
}

// handed records that the lock was handed to this waiter.
func (p *queuePacer) handed() {
	if !p.since.IsZero() {
		p.m.shared.queueMoved(time.Since(p.since) / time.Duration(p.spot.pos+1))
	}
}

// saturatingMul returns d×n, or the largest duration if that overflows.
func saturatingMul(d time.Duration, n int) time.Duration {
	if n > 0 && d > math.MaxInt64/time.Duration(n) {
		return math.MaxInt64
	}
	return d * time.Duration(n)
}

// acquiringState is the held state that attempt a writes over cur: the
// next fence, or, over a state of a's own, the same hold written again.
func (m *Mutex) acquiringState(a *attempt, cur *snapshot, value string, ttl time.Duration) (lockObject, error) {
	now := time.Now()
	if a.owns(cur) {
		// With the caller's TTL: a hand-off wrote a shorter one.
		obj := cur.obj
		obj.Seq, obj.TTLMillis, obj.WrittenAt, obj.Handed = a.next(now), ttl.Milliseconds(), now.UTC(), false
		return obj, nil
	}
	if cur.fence() == math.MaxInt64 {
		return lockObject{}, fmt.Errorf("objsync: %s: fence %d is the largest there is: the lock cannot be taken again", m.loc, cur.fence())
	}
	obj := lockObject{
		Format: lockFormat, State: stateHeld, Holder: a.id, Fence: cur.fence() + 1,
		Seq: a.next(now), TTLMillis: ttl.Milliseconds(), Value: value,
		holderProcess: a.proc, AcquiredAt: now.UTC(), WrittenAt: now.UTC(),
	}
	if cur.exists {
		obj.Prev, obj.PrevSeq = cur.obj.Holder, cur.obj.Seq
	}
	return obj, nil
}

// ctxErr is the error of a Lock that stopped waiting: ErrClosed after
// Close, otherwise err, ctx's error, naming the lock.
func (m *Mutex) ctxErr(err error) error {
	if m.closing.Err() != nil {
		return ErrClosed
	}
	return fmt.Errorf("objsync: lock %s: %w", m.loc, err)
}

// read returns the lock's current state, trying a transient failure a few
// times, and records it in this process's view.
func (m *Mutex) read(ctx context.Context) (*snapshot, error) {
	snap, returned, err := m.readKey(ctx, m.key, decodeLock)
	if err != nil {
		return nil, err
	}
	m.shared.observed(snap, returned)
	return snap, nil
}

// readKey reads the object at key, decoded by decode, trying a transient
// failure a few times, and returns it with when its read returned.
func (m *Mutex) readKey(ctx context.Context, key string, decode func([]byte) (lockObject, error)) (*snapshot, time.Time, error) {
	b := m.newBackoff()
	for try := 1; ; try++ {
		data, v, age, err := m.readAge(ctx, key)
		returned := time.Now()
		switch {
		case err == nil:
			obj, derr := decode(data)
			if derr != nil {
				return nil, returned, fmt.Errorf("objsync: %s: %w", m.store.Location(key), derr)
			}
			snap := &snapshot{exists: true, version: v, obj: obj}
			if age > 0 {
				snap.since = returned.Add(-age)
			}
			return snap, returned, nil
		case errors.Is(err, driver.ErrNotExist):
			return &snapshot{}, returned, nil
		case driver.IsRetryable(err) && try < readTries && ctx.Err() == nil:
			if b.wait(ctx, 0) == nil {
				continue
			}
			fallthrough
		default:
			return nil, returned, fmt.Errorf("objsync: %w", err)
		}
	}
}

// unchangedBy is sharedLock.unchangedBy for this Mutex: without
// WithStoreClock the store's clock does not count, whatever other Mutexes
// of the process read.
func (m *Mutex) unchangedBy(snap *snapshot) (watched, byStore time.Duration) {
	watched, byStore = m.shared.unchangedBy(snap)
	if !m.opts.storeClock {
		byStore = 0
	}
	return watched, byStore
}

// unchanged returns how long snap's state has been unchanged, for the
// takeover rule: by this process's clock, or, WithStoreClock, by the
// store's if that says longer.
func (m *Mutex) unchanged(snap *snapshot) time.Duration {
	watched, byStore := m.unchangedBy(snap)
	return max(watched, byStore)
}

// readAge reads the object at key, with its age by the store's clock if
// the Mutex was opened WithStoreClock (else 0).
func (m *Mutex) readAge(ctx context.Context, key string) (data []byte, v driver.Version, age time.Duration, err error) {
	defer func() { m.tel.request(ctx, opRead, err) }()
	if ages, ok := m.store.(driver.AgeReader); ok && m.opts.storeClock {
		return ages.ReadAge(ctx, key)
	}
	data, v, err = m.store.Read(ctx, key)
	return data, v, 0, err
}

// write is the store's Write, recorded for telemetry.
func (m *Mutex) write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	v, err := m.store.Write(ctx, key, data, ifVersion)
	op := opReplace
	if ifVersion == "" {
		op = opCreate
	}
	m.tel.request(ctx, op, err)
	return v, err
}

// release writes the free state, signed with a's holder id, over snap. It
// returns nil once the lock is free by one of its writes; an error wrapping
// ErrLockLost if someone else replaced snap's holder first; and one
// wrapping ErrOutcomeUnknown if a write whose answer was lost may have
// freed the lock before others wrote.
func (m *Mutex) release(ctx context.Context, a *attempt, snap *snapshot) error {
	b := m.newBackoff()
	// The sequence numbers of free states sent whose answer was lost: an
	// acquisition over one of them names it as the state it replaced.
	var unanswered []int64
	var sent []int64 // every release sent: a state that names one follows it
	for {
		now := time.Now()
		seq := a.next(now)
		sent = append(sent, seq)
		obj := released(a.id, seq, snap, now)
		v, err := m.write(ctx, m.key, obj.encode(), snap.version)
		if err == nil {
			if written := (&snapshot{exists: true, version: v, obj: obj}); obj.held() {
				m.shared.handedOff(written)
			} else {
				m.shared.wrote(written)
			}
			return nil
		}
		if !errors.Is(err, driver.ErrPrecondition) {
			unanswered = append(unanswered, seq)
			err = fmt.Errorf("objsync: release %s: %w", m.loc, err)
		} else {
			err = nil
		}
		// Settle by reading, whatever the error: even one that is not
		// transient (a directory's fsync after a rename) may follow a
		// write that landed.
		cur, rerr := m.read(ctx)
		switch {
		case rerr != nil:
			if ctx.Err() != nil || !driver.IsRetryable(rerr) {
				return errors.Join(err, rerr)
			}
		case cur.exists && cur.obj.Holder == a.id && !cur.obj.held():
			return nil // a release whose answer was lost had landed
		case slices.ContainsFunc(sent, func(seq int64) bool { return cur.follows(a.id, seq) }):
			return nil // it had landed, and someone has taken the lock since
		case a.owns(cur) || cur.key() == snap.key():
			// Still the state to free (perhaps with waiters joined, or a
			// renewal of ours that landed late): write again, unless the
			// error said not to.
			snap = cur
			if err != nil && !driver.IsRetryable(err) {
				return err
			}
		case len(unanswered) > 0 && !(cur.exists && cur.obj.Prev == a.id) && !cur.follows(snap.obj.Holder, snap.obj.Seq) &&
			!(cur.exists && cur.obj.held() && cur.obj.Holder == snap.obj.Holder):
			// Someone wrote after a state that is neither ours nor the
			// one we were freeing: perhaps after our free state.
			return fmt.Errorf("%w: a release of %s was sent and its answer lost, and the lock is now %s: whether the release landed first cannot be told", ErrOutcomeUnknown, m.loc, describeOther(cur))
		default:
			return fmt.Errorf("%w: %s: %s", ErrLockLost, m.loc, describeOther(cur))
		}
		if err != nil || rerr != nil {
			if err := b.wait(ctx, 0); err != nil {
				return fmt.Errorf("objsync: release %s: %w", m.loc, err)
			}
		}
	}
}

// released is the state that a release, signed by holder with seq, writes
// over snap: the lock handed to the first waiter of snap's queue, with the
// next fence, or else the free state. A hand-off names the release as the
// state it replaced, so that a releaser whose answer was lost learns from
// it that its write landed.
func released(holder string, seq int64, snap *snapshot, now time.Time) lockObject {
	obj := snap.obj
	obj.WrittenAt = now.UTC()
	if len(obj.Queue) == 0 || obj.Fence == math.MaxInt64 {
		obj.State, obj.Holder, obj.Seq, obj.Queue = stateFree, holder, seq, nil
		return obj
	}
	w := obj.Queue[0]
	return lockObject{
		Format: lockFormat, State: stateHeld, Holder: w.Holder, Fence: obj.Fence + 1, Seq: w.Seq,
		TTLMillis: w.TTLMillis, Prev: holder, PrevSeq: seq, Handed: true,
		Queue: slices.Clone(obj.Queue[1:]), QueueSeq: obj.QueueSeq + 1,
		Value: w.Value, holderProcess: w.holderProcess, AcquiredAt: now.UTC(), WrittenAt: now.UTC(),
	}
}

// abandonWithin bounds the freeing of an abandoned acquisition.
const abandonWithin = 2 * time.Second

// abandon frees the lock if a write of an acquisition that is being given
// up landed after all (or a release handed it the lock), so that no hold
// is left that nobody renews, and takes it out of the queue if it joined
// one. It does nothing if the acquisition wrote nothing. ctx, the context
// of the call that gives up, only carries its values (a span).
func (m *Mutex) abandon(ctx context.Context, a *attempt, ttl time.Duration) {
	if a.seq == 0 {
		return
	}
	// Bounded, so that a Lock, TryLock or Close never waits long past its
	// context for a store that fails: the lock then expires after its TTL,
	// and a waiter left in the queue costs those behind it at most that.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(leaseValidity(ttl), abandonWithin))
	defer cancel()
	b := m.newBackoff()
	for {
		cur, err := m.read(ctx)
		switch {
		case err != nil:
			return
		case a.owns(cur):
			if err := m.release(ctx, a, cur); err != nil {
				m.log.Warn("objsync: could not free an abandoned acquisition; it expires after its ttl", "err", err)
			}
			return
		case !cur.exists || cur.obj.position(a.id) < 0:
			return
		}
		left := cur.obj.without(a.id)
		_, err = m.write(ctx, m.key, left.encode(), cur.version)
		switch {
		case err == nil:
			return
		case ctx.Err() != nil:
			m.log.Warn("objsync: could not leave the queue; a release may hand this attempt the lock, which then expires after its ttl", "err", err)
			return
		case !errors.Is(err, driver.ErrPrecondition):
			if b.wait(ctx, 0) != nil {
				return
			}
		}
	}
}

func describeOther(cur *snapshot) string {
	switch {
	case !cur.exists:
		return "the lock object is gone"
	case cur.obj.held():
		return fmt.Sprintf("held by %s (fence %d, value %q, host %s, pid %d)", cur.obj.Holder, cur.obj.Fence, cur.obj.Value, cur.obj.Host, cur.obj.PID)
	case cur.obj.State == stateAbandoned:
		return fmt.Sprintf("the turn of queue ticket %d was ended by another (its holder stopped renewing, or Break)", cur.obj.Fence)
	default:
		return fmt.Sprintf("freed by %s", cur.obj.Holder)
	}
}

// Unlock releases the lock with a conditional write of the free state, or
// of the hand-off to the first Lock waiting in the lock's queue, so that
// it never frees a lock someone else has taken over. It returns
// ErrNotHeld if this Mutex holds no lock, and an error wrapping ErrLockLost
// if the hold had ended before (see Err) or someone else had replaced it.
// If a release's answer was lost and others wrote before it could be read
// back, it returns an error wrapping ErrOutcomeUnknown. Either way this
// Mutex holds nothing afterwards. If the store cannot be reached before
// ctx ends, the lock is freed by expiry after its TTL.
func (m *Mutex) Unlock(ctx context.Context) error { return m.unlockTraced(ctx, false) }

// unlockTraced is unlock, traced; byClose says that Close calls it.
func (m *Mutex) unlockTraced(ctx context.Context, byClose bool) error {
	ctx, s := m.tel.start(ctx, "objsync.Unlock")
	fence, err := m.unlock(ctx, byClose)
	if s != nil {
		if fence != 0 {
			s.span.SetAttributes(attrFence.Int64(fence))
		}
		if byClose {
			s.caller = nil // its deadline is Close's own: a failure
		}
		s.end(err)
	}
	return err
}

// unlock is Unlock; it returns the fence of the hold it ended, if any.
func (m *Mutex) unlock(ctx context.Context, byClose bool) (fence int64, _ error) {
	m.mu.Lock()
	h := m.hold
	if h == nil || h.unlocking {
		m.mu.Unlock()
		return 0, ErrNotHeld
	}
	h.unlocking, h.byClose = true, byClose
	m.mu.Unlock()

	defer close(h.released)
	h.stopRenewal()
	h.writeMu.Lock() // waits for a Proclaim under way
	lost := h.Err()
	// Done closes before the release is sent: once it lands, another
	// process may hold the lock.
	h.end(fmt.Errorf("%w: released by Unlock", ErrNotHeld), "")
	var err error
	switch {
	case !m.opts.queue:
		err = m.release(ctx, h.a, h.snap)
	case lost == nil:
		err = m.releaseQueueHold(ctx, h)
	default:
		m.leaveQueue(ctx, h.a) // if its turn was not ended by another
	}
	h.writeMu.Unlock()
	h.leave()
	<-m.own
	if lost != nil {
		return h.fence, lost
	}
	if err != nil {
		return h.fence, err
	}
	m.log.Debug("objsync: released", "fence", h.fence)
	return h.fence, nil
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
// After the process was stopped (SIGSTOP) past the hold's loss deadline,
// Done may close a moment after it resumes; Err knows at once.
func (m *Mutex) Done() <-chan struct{} {
	if h := m.current(); h != nil {
		return h.done
	}
	return closedChan
}

// Err returns nil while a hold is in force, and otherwise why the last one
// ended: an error wrapping ErrLockLost if it was lost, ErrNotHeld if it was
// released or none was taken. It reads the clock, so it reports a loss
// deadline that passed while the process was stopped as soon as it resumes:
// check it right before acting as holder.
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
	if m.opts.queue {
		return m.inspectQueue(ctx)
	}
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
	watched, byStore := m.unchangedBy(cur)
	return State{
		Exists: true, Held: o.held(), Holder: o.Holder, Value: o.Value, Fence: o.Fence,
		TTL: o.ttl(), Host: o.Host, PID: o.PID, AcquiredAt: o.AcquiredAt, RenewedAt: o.WrittenAt,
		Unchanged: watched, StoreAge: byStore, Waiters: len(o.Queue),
		HolderGone: o.held() && o.ended(), HolderRunning: o.held() && o.running(),
	}
}

// Break frees the lock whoever holds it (or hands it to the first waiter
// in its queue), with a write conditional on the state it read, and
// returns that state. A lock that is free or absent is
// left alone and its state returned with ErrNotHeld.
//
// Break is for people repairing a stuck lock (objsync unlock --force), not
// for programs: the holder learns of it only at its next renewal, and its
// work may still be running until then. Fencing tokens are what protect
// the resource from that holder.
func (m *Mutex) Break(ctx context.Context) (State, error) {
	if m.opts.queue {
		return m.breakQueue(ctx)
	}
	cur, err := m.read(ctx)
	if err != nil {
		return State{}, err
	}
	st := m.state(cur)
	if !st.Held {
		return st, fmt.Errorf("objsync: break %s: %w", m.loc, ErrNotHeld)
	}
	if err := m.release(ctx, newAttempt(m.proc), cur); err != nil {
		// A lost answer is settled like any other: ErrLockLost only when
		// no write of the break can land.
		if errors.Is(err, ErrLockLost) {
			return st, fmt.Errorf("objsync: break %s: the lock changed while breaking it; nothing was written: %w", m.loc, err)
		}
		return st, err
	}
	m.log.Warn("objsync: lock broken", "holder", st.Holder, "fence", st.Fence)
	return st, nil
}

// Close stops Locks in progress on this Mutex (they return ErrClosed and
// hold nothing), releases the lock if this Mutex holds it (waiting at most
// the lease for the store), and frees what it shares with other Mutexes.
// It returns what Unlock returned, or nil.
func (m *Mutex) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	m.mu.Unlock()
	m.stopLocks()
	m.locking.Wait()
	var err error
	if h := m.current(); h != nil {
		ctx, cancel := context.WithTimeout(context.Background(), leaseValidity(h.full.ttl))
		err = m.unlockTraced(ctx, true)
		cancel()
		<-h.released // also an Unlock of another goroutine under way
	}
	releaseShared(m.shared)
	if errors.Is(err, ErrNotHeld) {
		return nil
	}
	return err
}
