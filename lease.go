package objsync

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/objsync/objsync/driver"
	"go.opentelemetry.io/otel/trace"
)

// hold is one acquisition of the lock, from the write that took it to
// Unlock or loss.
type hold struct {
	m     *Mutex
	a     *attempt
	fence int64
	full  leaseTiming // of the caller's TTL, which every write under the hold carries
	// key is the object the hold writes: the lock's, or a queue lock's
	// ticket; read reads it back.
	key  string
	read func(context.Context) (*snapshot, error)

	// writeMu is held by whoever writes under this hold: the renewals,
	// Proclaim and Unlock, across their store calls. It guards a and
	// snap.
	writeMu sync.Mutex
	snap    *snapshot // the state last written under this hold

	// leaseMu guards sentAt, timing, lastErr and ended. It is never held
	// across a store call, so that the loss deadline fires on time
	// whatever a store call is doing.
	leaseMu  sync.Mutex
	sentAt   time.Time   // when the last successful write was sent
	timing   leaseTiming // of the lease that write gave: full, or a hand-off's
	lastErr  error       // why the last renewal failed, if it did
	deadline *time.Timer // ends the hold at sentAt + timing.lossAfter
	ended    bool        // the deadline is stopped for good

	leaveOnce sync.Once     // gives the shared token back
	released  chan struct{} // closed when Unlock has finished

	unlocking bool // guarded by m.mu

	done    chan struct{}
	endOnce sync.Once
	errMu   sync.Mutex
	err     error
	// Guarded by errMu: the hold is counted in the metrics from heldSince
	// (see startMetering); lostReason says why it was lost, if it was.
	metered    bool
	heldSince  time.Time
	lostReason lostReason
	lockSpan   trace.SpanContext // of the Lock that took it, for renewals' spans

	// byClose: Close ended it. Set by unlock before it calls end, and read
	// only by the end that unlock calls (a loss does not read it).
	byClose bool

	ctx     context.Context // cancelled to stop the renewal goroutine
	cancel  context.CancelFunc
	stopped chan struct{} // closed when the renewal goroutine has exited
}

// newHold makes a hold of snap, a state of the lock object that a wrote or
// was handed, whose lease of the given timing counts from since, and starts
// its loss deadline. full is the timing of the caller's TTL.
func (m *Mutex) newHold(a *attempt, snap *snapshot, since time.Time, lease, full leaseTiming) *hold {
	return m.holdOn(m.key, m.read, a, snap, since, lease, full)
}

// holdOn is newHold for a hold that writes key, read back with read.
func (m *Mutex) holdOn(key string, read func(context.Context) (*snapshot, error), a *attempt, snap *snapshot, since time.Time, lease, full leaseTiming) *hold {
	ctx, cancel := context.WithCancel(context.Background())
	h := &hold{
		m: m, a: a, fence: snap.obj.Fence, full: full, timing: lease, key: key, read: read,
		snap: snap, sentAt: since,
		done: make(chan struct{}), ctx: ctx, cancel: cancel, stopped: make(chan struct{}),
		released: make(chan struct{}),
	}
	h.leaseMu.Lock()
	h.deadline = time.AfterFunc(time.Until(h.sentAt.Add(lease.lossAfter)), h.expire)
	h.leaseMu.Unlock()
	return h
}

// lossAt is the instant, on this process's monotonic clock, at which the
// hold ends as lost unless a write extends it: the notice before its lease
// ends.
func (h *hold) lossAt() time.Time {
	h.leaseMu.Lock()
	defer h.leaseMu.Unlock()
	return h.sentAt.Add(h.timing.lossAfter)
}

// lease returns when the last successful write was sent and the timing
// of the lease it gave.
func (h *hold) lease() (time.Time, leaseTiming) {
	h.leaseMu.Lock()
	defer h.leaseMu.Unlock()
	return h.sentAt, h.timing
}

// extend records a successful write sent at the given instant, which
// carried the caller's TTL.
func (h *hold) extend(sent time.Time) {
	h.leaseMu.Lock()
	defer h.leaseMu.Unlock()
	if sent.After(h.sentAt) {
		h.sentAt, h.timing = sent, h.full
	}
}

// expire runs when the loss deadline timer fires: it ends the hold as lost
// unless a write has moved the deadline, and then waits for the new one.
func (h *hold) expire() {
	h.leaseMu.Lock()
	if h.ended {
		h.leaseMu.Unlock()
		return
	}
	left := time.Until(h.sentAt.Add(h.timing.lossAfter))
	if left > 0 {
		h.deadline.Reset(left)
		h.leaseMu.Unlock()
		return
	}
	why, ttl := h.lastErr, h.timing.ttl
	h.leaseMu.Unlock()
	switch {
	case !h.m.opts.renew:
		h.lost(lostExpired, "the lease of %v ran out (renewal is off)", ttl)
	case why != nil:
		h.lost(lostNotRenewed, "could not renew within the lease: %v", why)
	default:
		h.lost(lostNotRenewed, "no renewal was answered within the lease")
	}
}

// Err returns nil while the hold is in force, and why it ended afterwards.
//
// It reads the clock rather than wait for the deadline's timer: a process
// stopped past its deadline (SIGSTOP, a paused VM) resumes with the timer
// overdue, and a holder that checks Err before acting may run before it.
func (h *hold) Err() error {
	err := h.recorded()
	if err == nil && !time.Now().Before(h.lossAt()) {
		h.expire()
		err = h.recorded()
	}
	return err
}

// recorded returns why the hold ended, or nil if nothing has ended it yet.
func (h *hold) recorded() error {
	h.errMu.Lock()
	defer h.errMu.Unlock()
	return h.err
}

// end records why the hold ended, closes done and stops the deadline;
// only the first call counts. Work watching Done must stop before anyone
// else may take the lock: Unlock ends the hold before its release is sent.
func (h *hold) end(err error, why lostReason) {
	h.endOnce.Do(func() {
		// Under errMu, so that whoever Err tells of the end finds Done
		// closed.
		h.errMu.Lock()
		h.err, h.lostReason = err, why
		if h.metered { // counted before Done closes, for those watching it
			h.meterEnd(err, why, h.heldSince)
		}
		close(h.done)
		h.errMu.Unlock()
		h.leaseMu.Lock()
		h.ended = true
		h.deadline.Stop()
		h.leaseMu.Unlock()
		h.cancel()
	})
}

// leave gives the shared token back, once, so that the next local waiter
// of another Mutex goes.
func (h *hold) leave() { h.leaveOnce.Do(h.m.shared.leave) }

// lost ends the hold as lost, lets local waiters go, and returns the error
// it ended with.
func (h *hold) lost(why lostReason, format string, args ...any) error {
	// A store's error names the location too ("could not renew within the
	// lease: LOC: permission denied"): the loss says it once, first.
	cause := strings.Replace(fmt.Sprintf(format, args...), ": "+h.m.loc+": ", ": ", 1)
	err := fmt.Errorf("%w: %s: %s", ErrLockLost, h.m.loc, cause)
	// Ended first, so that an Err racing with this finds the loss; and
	// only the call that ended it reports (the deadline's timer and Err
	// may both get here).
	h.end(err, why)
	h.leave()
	if h.recorded() == err {
		h.m.log.Warn("objsync: lock lost", "fence", h.fence, "err", err)
	}
	return h.Err()
}

// stopRenewal stops the renewal goroutine and waits for it to exit.
func (h *hold) stopRenewal() {
	h.cancel()
	<-h.stopped
}

// run renews the lease every timing.renewEvery until the hold ends.
// Without renewal it has nothing to do: the loss deadline ends the hold.
func (h *hold) run() {
	defer close(h.stopped)
	if !h.m.opts.renew {
		return
	}
	for {
		sent, timing := h.lease()
		if sleepUntil(h.ctx, sent.Add(timing.renewEvery)) != nil {
			return
		}
		if h.update(h.ctx, nil) != nil {
			return
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) error {
	return sleep(ctx, time.Until(t))
}

// update writes the held state again, changed by change if it is not nil,
// which also extends the lease. It retries transient failures until the
// loss deadline, reading the object back after every failure to learn
// whether the write landed. It returns nil on success, ctx's error if ctx
// ended first, and the hold's error if the hold ended.
func (h *hold) update(ctx context.Context, change func(*lockObject)) (err error) {
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	if err := h.Err(); err != nil {
		return err
	}
	_, timing := h.lease()
	b := backoff{min: max(timing.ttl/50, time.Millisecond), max: timing.ttl / 10}
	// Only a write of this call carries its change: an earlier one that
	// landed late (a Proclaim that gave up) extends the lease, no more.
	first := h.a.seq + 1
	conflicts := 0
	// An update that needs retries is traced, from its start.
	started, tries := time.Now(), 0
	var requests *requestCount
	if h.m.tel.tracer != nil {
		ctx, requests = withRequestCount(ctx)
	}
	var s *span
	defer func() {
		if s != nil {
			s.span.SetAttributes(attrFence.Int64(h.fence), attrRetries.Int(tries-1))
			s.end(err)
		}
	}()
	for {
		deadline, cancel := context.WithDeadline(ctx, h.lossAt())
		ok, other, err := h.writeOnce(deadline, change, first)
		cancel()
		if tries++; !ok && s == nil && h.m.tel.tracer != nil {
			s = h.m.tel.startCounted(ctx, requests, "objsync.renew",
				trace.WithTimestamp(started), trace.WithLinks(trace.Link{SpanContext: h.lockSpan}))
			s.caller = ctx
		}
		switch {
		case ok:
			return nil
		case errors.Is(err, ErrNotLock):
			return h.lost(lostNotALock, "the lock object was replaced: %v", err)
		case other != nil:
			return h.lost(lostTakenOver, "%s", describeOther(other))
		case h.Err() != nil:
			return h.Err()
		case ctx.Err() != nil:
			return ctx.Err()
		case !time.Now().Before(h.lossAt()):
			return h.lost(lostNotRenewed, "could not renew within the lease: %v", err)
		case errors.Is(err, driver.ErrPrecondition) && conflicts < maxConflicts:
			// Still ours: waiters joined or left the queue. Write again
			// at once over the version just read, before more do.
			conflicts++
			continue
		}
		h.leaseMu.Lock()
		h.lastErr = err
		h.leaseMu.Unlock()
		h.m.log.Debug("objsync: renewal failed, retrying", "fence", h.fence, "err", err)
		if err := sleep(ctx, min(b.next(), time.Until(h.lossAt()))); err != nil {
			return err
		}
	}
}

// maxConflicts is how many times in a row a write under a hold is tried
// again at once when waiters changed the queue under it, before it backs
// off as for any failure.
const maxConflicts = 8

// writeOnce tries one write of the held state and, if its outcome is not
// plainly a success, one read to settle it. It reports success (a write
// numbered first or later landed), or the state of another holder that
// ended this hold, or the error to retry after (wrapping ErrNotLock if the
// object is no longer a lock).
func (h *hold) writeOnce(ctx context.Context, change func(*lockObject), first int64) (ok bool, other *snapshot, err error) {
	now := time.Now()
	obj := h.snap.obj
	obj.Seq, obj.TTLMillis, obj.WrittenAt, obj.Handed = h.a.next(now), h.full.ttl.Milliseconds(), now.UTC(), false
	if change != nil {
		change(&obj)
	}
	v, err := h.m.write(ctx, h.key, obj.encode(), h.snap.version)
	if err == nil {
		h.adopt(&snapshot{exists: true, version: v, obj: obj})
		if h.key == h.m.key {
			h.m.shared.wrote(h.snap)
		}
		return true, nil, nil
	}
	if ctx.Err() != nil {
		return false, nil, err
	}
	if !errors.Is(err, driver.ErrPrecondition) && !driver.IsRetryable(err) {
		return false, nil, err
	}
	cur, rerr := h.read(ctx)
	switch {
	case rerr != nil:
		return false, nil, errors.Join(err, rerr)
	case h.a.owns(cur):
		// Ours. If a write of this hold landed although its answer was
		// lost, the lease runs from when that write was sent.
		landed := cur.obj.Seq >= first
		h.adopt(cur)
		return landed, nil, err
	default:
		return false, cur, nil
	}
}

// adopt makes snap, a state written under this hold, the current one.
// The hand-off a hold began with is not a write of its own: the lease it
// gave counts from before it, and is not extended by it.
func (h *hold) adopt(snap *snapshot) {
	if sent, ok := h.a.sent[snap.obj.Seq]; ok && !h.a.joins[snap.obj.Seq] {
		h.extend(sent)
	}
	h.snap = snap
}
