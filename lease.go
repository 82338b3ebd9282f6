package objsync

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/objsync/objsync/driver"
)

// hold is one acquisition of the lock, from the write that took it to
// Unlock or loss.
type hold struct {
	m     *Mutex
	a     *attempt
	fence int64
	ttl   time.Duration

	// writeMu is held by whoever writes under this hold: the renewals,
	// Proclaim and Unlock. It guards a, snap and sentAt.
	writeMu sync.Mutex
	snap    *snapshot // the state last written under this hold
	sentAt  time.Time // when the write that made snap was sent

	unlocking bool // guarded by m.mu

	done    chan struct{}
	endOnce sync.Once
	errMu   sync.Mutex
	err     error

	ctx     context.Context // cancelled to stop the renewal goroutine
	cancel  context.CancelFunc
	stopped chan struct{} // closed when the renewal goroutine has exited
}

func (m *Mutex) newHold(a *attempt, snap *snapshot, ttl time.Duration) *hold {
	ctx, cancel := context.WithCancel(context.Background())
	return &hold{
		m: m, a: a, fence: snap.obj.Fence, ttl: ttl,
		snap: snap, sentAt: a.sent[snap.obj.Seq],
		done: make(chan struct{}), ctx: ctx, cancel: cancel, stopped: make(chan struct{}),
	}
}

// noticeAt is the instant, on this process's monotonic clock, at which a
// hold that could not renew ends as lost: a guard before its lease ends.
// The caller holds writeMu.
func (h *hold) noticeAt() time.Time { return h.sentAt.Add(lossNotice(h.ttl)) }

// lastSent returns when the last successful write of the hold was sent.
func (h *hold) lastSent() time.Time {
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	return h.sentAt
}

// Err returns nil while the hold is in force, and why it ended afterwards.
func (h *hold) Err() error {
	h.errMu.Lock()
	defer h.errMu.Unlock()
	return h.err
}

// end records why the hold ended and closes done; only the first call
// counts.
func (h *hold) end(err error) {
	h.endOnce.Do(func() {
		h.errMu.Lock()
		h.err = err
		h.errMu.Unlock()
		close(h.done)
	})
}

// lost ends the hold as lost and returns the error it ended with.
func (h *hold) lost(format string, args ...any) error {
	err := fmt.Errorf("%w: %s: %s", ErrLockLost, h.m.loc, fmt.Sprintf(format, args...))
	h.m.log.Warn("objsync: lock lost", "fence", h.fence, "err", err)
	h.end(err)
	return h.Err()
}

// stopRenewal stops the renewal goroutine and waits for it to exit.
func (h *hold) stopRenewal() {
	h.cancel()
	<-h.stopped
}

// run keeps the lease: it renews about every TTL/3 and ends the hold as
// lost when the lease runs out first. Without renewal it only ends the
// hold when the lease runs out.
func (h *hold) run() {
	defer close(h.stopped)
	ctx := h.ctx
	for {
		if !h.m.opts.renew {
			if sleepUntil(ctx, h.lastSent().Add(lossNotice(h.ttl))) == nil {
				h.lost("the lease of %v ran out (renewal is off)", h.ttl)
			}
			return
		}
		if sleepUntil(ctx, h.lastSent().Add(h.ttl/3)) != nil {
			return
		}
		if h.update(ctx, nil) != nil {
			return
		}
	}
}

func sleepUntil(ctx context.Context, t time.Time) error {
	return sleep(ctx, time.Until(t))
}

// update writes the held state again, changed by change if it is not nil,
// which also extends the lease. It retries transient failures until the
// lease runs out, reading the object back after every failure to learn
// whether the write landed. It returns nil on success, ctx's error if ctx
// ended first, and the hold's error if the hold ended.
func (h *hold) update(ctx context.Context, change func(*lockObject)) error {
	h.writeMu.Lock()
	defer h.writeMu.Unlock()
	if err := h.Err(); err != nil {
		return err
	}
	b := backoff{min: max(h.ttl/50, time.Millisecond), max: h.ttl / 10}
	for {
		deadline, cancel := context.WithDeadline(ctx, h.noticeAt())
		ok, other, err := h.writeOnce(deadline, change)
		cancel()
		switch {
		case ok:
			return nil
		case ctx.Err() != nil:
			return ctx.Err()
		case other != nil:
			return h.lost("%s", describeOther(other))
		case !time.Now().Before(h.noticeAt()):
			return h.lost("could not renew within the lease: %v", err)
		}
		h.m.log.Debug("objsync: renewal failed, retrying", "fence", h.fence, "err", err)
		if err := sleep(ctx, min(b.next(), time.Until(h.noticeAt()))); err != nil {
			return err
		}
	}
}

// writeOnce tries one write of the held state and, if its outcome is not
// plainly a success, one read to settle it. It reports success, or the
// state of another holder that ended this hold, or the error to retry
// after.
func (h *hold) writeOnce(ctx context.Context, change func(*lockObject)) (ok bool, other *snapshot, err error) {
	now := time.Now()
	obj := h.snap.obj
	obj.Seq, obj.WrittenAt = h.a.next(now), now.UTC()
	if change != nil {
		change(&obj)
	}
	v, err := h.m.store.Write(ctx, h.m.key, obj.encode(), h.snap.version)
	if err == nil {
		h.adopt(&snapshot{exists: true, version: v, obj: obj})
		h.m.shared.wrote(h.snap)
		return true, nil, nil
	}
	if ctx.Err() != nil {
		return false, nil, err
	}
	if !errors.Is(err, driver.ErrPrecondition) && !driver.IsRetryable(err) {
		return false, nil, err
	}
	cur, rerr := h.m.read(ctx)
	switch {
	case rerr != nil:
		return false, nil, errors.Join(err, rerr)
	case h.a.owns(cur):
		// Ours. If a write of this hold landed although its answer was
		// lost, the lease runs from when that write was sent.
		landed := cur.obj.Seq > h.snap.obj.Seq
		h.adopt(cur)
		return landed, nil, err
	default:
		return false, cur, nil
	}
}

// adopt makes snap, a state written under this hold, the current one.
func (h *hold) adopt(snap *snapshot) {
	if sent, ok := h.a.sent[snap.obj.Seq]; ok && sent.After(h.sentAt) {
		h.sentAt = sent
	}
	h.snap = snap
}
