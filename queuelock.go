package objsync

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"slices"
	"time"

	"github.com/objsync/objsync/driver"
)

// A queue lock (WithQueue) spreads its writes over objects beside the
// lock's key, so that no object is written more than about once a second
// however often the lock changes hands; see "Queue locks" in the package
// documentation for the protocol and why it is safe.

// queueSlots is how many ticket slots, and done slots, a queue lock has:
// ticket n lives in slot n mod queueSlots, over ticket n-queueSlots.
const queueSlots = 64

// slotInterval is the least time between two writes of one slot, for
// stores that allow one write per second to an object (GCS, R2). It is
// kept by the wall-clock time stored in the slot, which paces writes and
// never decides who holds the lock: a clock that is off costs only a
// 429, which is retried.
const slotInterval = time.Second

// queueHandoffTTL is the lease of a ticket taken to wait in the queue: a
// plain lock's hand-off lease, so that a waiter that dies holds up those
// behind it for that long only, and at least four seconds, so that its
// holder's first renewal, 0.297 of it after the write, keeps the slot's
// pace. Its first renewal writes the full TTL.
func (o *options) queueHandoffTTL(ttl time.Duration) time.Duration {
	return min(max(o.handoffTTL(ttl), 4*slotInterval), ttl)
}

// paceSlot waits until slotInterval has passed since prev, the content of
// a slot about to be written over, was written; at most slotInterval.
func paceSlot(ctx context.Context, prev *snapshot) error {
	if !prev.exists {
		return nil
	}
	return sleep(ctx, min(slotInterval, time.Until(prev.obj.WrittenAt.Add(slotInterval))))
}

// ticketKey and doneKey name the slots of ticket n.
func (m *Mutex) ticketKey(n int64) string {
	return fmt.Sprintf("%s.queue/t%02d", m.key, n%queueSlots)
}

func (m *Mutex) doneKey(n int64) string {
	return fmt.Sprintf("%s.queue/d%02d", m.key, n%queueSlots)
}

// decodeMarker accepts only a queue lock's marker, and names the kind of
// lock it found otherwise.
func decodeMarker(data []byte) (lockObject, error) {
	o, err := decodeObject(data)
	switch {
	case err != nil:
		return o, err
	case o.State == stateHeld || o.State == stateFree:
		return lockObject{}, fmt.Errorf("%w: a plain lock: open it without WithQueue (objsync lock without --queue)", ErrNotLock)
	case o.State != stateQueue:
		return lockObject{}, fmt.Errorf("%w: unknown state %q", ErrNotLock, o.State)
	case o.Slots != queueSlots:
		return lockObject{}, fmt.Errorf("%w: a queue lock of %d slots; this objsync knows only %d", ErrNotLock, o.Slots, queueSlots)
	}
	return o, nil
}

// lastTicket is the highest ticket number a queue lock gives, so that
// arithmetic on numbers read from the store, up to a lap of slots beyond,
// stays within int64.
const lastTicket = math.MaxInt64 - 2*queueSlots

// decodeSlot accepts the content of a ticket or done slot in one of the
// given states, numbered at most lastTicket.
func decodeSlot(data []byte, kind string, states ...string) (lockObject, error) {
	o, err := decodeObject(data)
	switch {
	case err != nil:
		return o, err
	case !slices.Contains(states, o.State):
		return lockObject{}, fmt.Errorf("%w: a queue %s in state %q", ErrNotLock, kind, o.State)
	case o.Fence > lastTicket:
		return lockObject{}, fmt.Errorf("%w: a queue %s numbered %d, past the last a queue lock gives (%d)", ErrNotLock, kind, o.Fence, int64(lastTicket))
	}
	return o, nil
}

// decodeTicket accepts a ticket: held (joined, holding once its turn
// comes) or abandoned.
func decodeTicket(data []byte) (lockObject, error) {
	return decodeSlot(data, "ticket", stateHeld, stateAbandoned)
}

// decodeDone accepts a done slot: a ticket released, or left.
func decodeDone(data []byte) (lockObject, error) {
	return decodeSlot(data, "done slot", stateDone, stateLeft)
}

// readTicket and readDone read the slots of ticket n, which must hold a
// ticket of that slot (n, or n plus or minus laps).
func (m *Mutex) readTicket(ctx context.Context, n int64) (*snapshot, time.Time, error) {
	key := m.ticketKey(n)
	snap, at, err := m.readKey(ctx, key, decodeTicket)
	return snap, at, m.inSlot(snap, n, key, err)
}

func (m *Mutex) readDone(ctx context.Context, n int64) (*snapshot, error) {
	key := m.doneKey(n)
	snap, _, err := m.readKey(ctx, key, decodeDone)
	return snap, m.inSlot(snap, n, key, err)
}

// inSlot passes on err, or refuses snap, read from key, the slot of
// ticket n, if it holds a ticket of another slot.
func (m *Mutex) inSlot(snap *snapshot, n int64, key string, err error) error {
	if err == nil && snap.exists && snap.obj.Fence%queueSlots != n%queueSlots {
		return fmt.Errorf("objsync: %s: %w: ticket %d, which belongs in another slot", m.store.Location(key), ErrNotLock, snap.obj.Fence)
	}
	return err
}

// saw records the lease of a ticket that a read, so that it rides out an
// outage of the store for as long as the holder it waits for may hold.
// A nil attempt records nothing.
func (a *attempt) saw(ticket *snapshot) {
	if a != nil && ticket.exists {
		a.seenTTL = max(a.seenTTL, ticket.obj.ttl())
	}
}

// has reports whether snap, read from ticket n's slot, holds ticket n.
func has(snap *snapshot, n int64) bool { return snap.exists && snap.obj.Fence == n }

// ensureQueue makes sure the lock's key holds a queue lock's marker,
// writing it if the key is empty. A plain lock there is ErrNotLock.
func (m *Mutex) ensureQueue(ctx context.Context) error {
	if m.queueReady.Load() {
		return nil
	}
	for {
		snap, _, err := m.readKey(ctx, m.key, decodeMarker)
		if err != nil {
			return err
		}
		if snap.exists {
			m.queueReady.Store(true)
			return nil
		}
		now := time.Now().UTC()
		marker := lockObject{Format: lockFormat, State: stateQueue, Slots: queueSlots, AcquiredAt: now, WrittenAt: now}
		// Create-only: whichever kind comes first, the other then finds it.
		_, err = m.store.Write(ctx, m.key, marker.encode(), "")
		if err != nil && !errors.Is(err, driver.ErrPrecondition) {
			// It may have landed: the caller reads again after a pause.
			return fmt.Errorf("objsync: %w", err)
		}
		// Read what is there now, ours or another's.
	}
}

// clearBelow walks back from ticket k over tickets that left the queue
// and reports whether every ticket up to k has settled: it reaches a
// ticket released (its turn had come, so every one before it had
// settled), one whose turn was ended by another (done only once its turn
// had come), a slot taken over by a later ticket (done only over a ticket
// with every one before it settled), or the start. Otherwise it returns
// the unsettled ticket that blocks, as read, and when the read returned.
//
// What it finds settled it records for the process, and what the process
// knows it does not read again: a ticket settled stays so.
func (m *Mutex) clearBelow(ctx context.Context, k int64) (clear bool, blocker *snapshot, returned time.Time, err error) {
	for ; k >= 1; k-- {
		switch settled, all := m.shared.knownSettled(k); {
		case all:
			return true, nil, time.Time{}, nil
		case settled:
			continue
		}
		done, err := m.readDone(ctx, k)
		if err != nil {
			return false, nil, time.Time{}, err
		}
		if done.exists && done.obj.Fence > k || done.exists && done.obj.Fence == k && done.obj.State == stateDone {
			m.shared.sawSettled(k)
			return true, nil, time.Time{}, nil
		}
		if done.exists && done.obj.Fence == k {
			m.shared.sawLeft(k)
			continue
		}
		t, at, err := m.readTicket(ctx, k)
		switch {
		case err != nil:
			return false, nil, time.Time{}, err
		case t.exists && (t.obj.Fence > k || t.obj.Fence == k && t.obj.State == stateAbandoned):
			m.shared.sawSettled(k)
			return true, nil, time.Time{}, nil
		case has(t, k):
			return false, t, at, nil
		default:
			return false, nil, time.Time{}, nil // not taken yet: not ours to judge
		}
	}
	return true, nil, time.Time{}, nil
}

// findTail returns the number of the last ticket taken, 0 if none: from
// this process's view if it has one, else by a binary search of the
// slots, which hold tickets base..base+63 in order from slot 0, base being
// the ticket in slot 0 (or 0), with those past the last taken still
// holding older ones. It may be behind by the time it returns; takeTicket
// walks on from it.
func (m *Mutex) findTail(ctx context.Context, useView bool, a *attempt) (int64, error) {
	if n := m.shared.queueTail(); n > 0 && useView {
		return n, nil
	}
	first, _, err := m.readTicket(ctx, 0)
	if err != nil {
		return 0, err
	}
	a.saw(first)
	base := int64(0)
	if first.exists {
		base = first.obj.Fence
	}
	lo, hi := int64(0), int64(queueSlots) // slot lo holds base+lo; slot hi does not
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		t, _, err := m.readTicket(ctx, base+mid)
		if err != nil {
			return 0, err
		}
		a.saw(t)
		if t.exists && t.obj.Fence >= base+mid {
			lo = mid
		} else {
			hi = mid
		}
	}
	return base + lo, nil
}

// errQueueFull is takeTicket's answer when the slot of the next ticket still
// holds an unsettled one: queueSlots tickets are waiting.
var errQueueFull = errors.New("objsync: the queue is full")

// takeTicket takes the next ticket for a, with one write to its slot,
// conditional on the slot holding the settled ticket queueSlots before it
// (or nothing), and after a read showed that the ticket before it exists:
// ticket numbers are taken in order, each once. It returns the ticket as
// written, and whether its turn had come when it was written: every
// ticket before it had settled, which stays so. A ticket whose turn is
// yet to come carries the hand-off lease. With onlyIfFree, it takes one
// only if its turn would come at once, and returns nil otherwise.
func (m *Mutex) takeTicket(ctx context.Context, a *attempt, ttl time.Duration, value string, onlyIfFree bool) (mine *snapshot, turn bool, err error) {
	tail, err := m.findTail(ctx, true, a)
	if err != nil {
		return nil, false, err
	}
	n := tail + 1
	for {
		if ctx.Err() != nil {
			return nil, false, m.ctxErr(ctx.Err())
		}
		if n > 1 {
			prev, _, err := m.readTicket(ctx, n-1)
			if err == nil {
				a.saw(prev)
			}
			switch {
			case err != nil:
				return nil, false, err
			case !prev.exists || prev.obj.Fence < n-1:
				n-- // a view ahead of the store: cannot be, but walk back
				continue
			case prev.obj.Fence > n-1:
				// Behind by a lap or more: search the slots.
				if tail, err = m.findTail(ctx, false, a); err != nil {
					return nil, false, err
				}
				n = max(tail, prev.obj.Fence) + 1
				continue
			}
		}
		cur, _, err := m.readTicket(ctx, n)
		if err != nil {
			return nil, false, err
		}
		if cur.exists && cur.obj.Fence >= n {
			n = cur.obj.Fence + 1 // taken by another
			continue
		}
		turn, _, _, err = m.clearBelow(ctx, n-1)
		if err != nil || onlyIfFree && !turn {
			return nil, false, err
		}
		if cur.exists && !turn {
			// Over a ticket only once it and every one before it have
			// settled (so, if the turn has come): a slot taken over then
			// says so for them all.
			free, _, _, err := m.clearBelow(ctx, cur.obj.Fence)
			if err != nil {
				return nil, false, err
			}
			if !free {
				return nil, false, errQueueFull
			}
		}
		if err := paceSlot(ctx, cur); err != nil {
			return nil, false, m.ctxErr(err)
		}
		if n > lastTicket {
			return nil, false, fmt.Errorf("objsync: %s: ticket %d would pass the last a queue lock gives (%d): the lock cannot be taken again", m.loc, n, int64(lastTicket))
		}
		lease := ttl
		if !turn {
			lease = m.opts.queueHandoffTTL(ttl)
		}
		now := time.Now()
		seq := a.next(now)
		a.ticket = n
		obj := lockObject{
			Format: lockFormat, State: stateHeld, Holder: a.id, Fence: n, Seq: seq,
			TTLMillis: lease.Milliseconds(), Value: value, Host: hostname, PID: os.Getpid(),
			AcquiredAt: now.UTC(), WrittenAt: now.UTC(),
		}
		v, err := m.store.Write(ctx, m.ticketKey(n), obj.encode(), cur.version)
		switch {
		case err == nil:
			m.shared.sawTicket(n)
			return &snapshot{exists: true, version: v, obj: obj}, turn, nil
		case errors.Is(err, driver.ErrPrecondition):
			continue // someone wrote the slot first: read it again
		case ctx.Err() != nil:
			return nil, false, m.ctxErr(ctx.Err())
		case !driver.IsRetryable(err):
			return nil, false, fmt.Errorf("objsync: %w", err)
		}
		// The write may have landed: read the slot back.
		back, _, rerr := m.readTicket(ctx, n)
		if rerr != nil {
			return nil, false, errors.Join(err, rerr)
		}
		if has(back, n) && a.owns(back) {
			m.shared.sawTicket(n)
			return back, turn, nil
		}
		// Ours but abandoned (its turn came and went while the answer
		// was on its way), or another's: a later ticket.
		if !has(back, n) {
			return nil, false, fmt.Errorf("objsync: %w", err) // not taken: try again later
		}
	}
}

// acquireQueue is acquire for a queue lock: take a ticket and hold the
// lock once the ticket before it has settled. The lease, of the TTL in the
// ticket, counts from the last write to the ticket or, if later, from the
// start of the last walk that showed the turn not yet come: the turn came
// after that, and nobody can have seen it come before.
func (m *Mutex) acquireQueue(ctx context.Context, ttl time.Duration, value string, wait bool) (*hold, error) {
	a := newAttempt()
	giveUp := func(err error) (*hold, error) {
		m.leaveQueue(a)
		return nil, err
	}
	timing := m.opts.timing(ttl)
	b := m.newBackoff()
	out, rounds, lateAnswers := outage{patience: ttl}, 0, 0
	// retry judges a failed step: nil to wait a little and go on, or the
	// error to give up with. TryLock gives up after a few.
	retry := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return m.ctxErr(ctx.Err())
		case !driver.IsRetryable(err):
			return err
		case !wait:
			if rounds++; rounds >= tryLockRounds {
				return err
			}
		}
		out.patience = max(out.patience, a.seenTTL)
		if gone := out.failed(err); gone != nil {
			return gone
		}
		if err := b.wait(ctx, 0); err != nil {
			return m.ctxErr(err)
		}
		return nil
	}
	var mine *snapshot    // our ticket, as last written or read
	var notTurn time.Time // when the last walk that showed mine's turn not come began
	var turnAtJoin bool   // mine's turn had come when it was taken
	endedHead := false    // TryLock: whether it tried to end a dead holder's turn
	watch := newWatch(&m.opts, ttl)
	for {
		if !m.queueReady.Load() {
			if err := m.ensureQueue(ctx); err != nil {
				if err := retry(err); err != nil {
					return giveUp(err)
				}
				continue
			}
			out.answered()
		}
		if mine == nil {
			var err error
			mine, turnAtJoin, err = m.takeTicket(ctx, a, ttl, value, !wait)
			switch {
			case err == nil && mine == nil:
				// TryLock: taken. If this process has seen the ticket
				// whose turn it is unchanged for longer than its TTL, end
				// its turn and try once more.
				if !endedHead {
					endedHead = true
					w := newWatch(&m.opts, ttl)
					if err := m.watchHead(ctx, &w); err == nil && w.next == 0 {
						continue
					}
				}
				return giveUp(nil)
			case errors.Is(err, errQueueFull):
				if !wait {
					return giveUp(nil)
				}
				out.answered()
				// Tickets left by Locks that died may fill the queue, and
				// nobody else may be there to end their turns.
				if err := m.watchHead(ctx, &watch); err != nil {
					if err := retry(err); err != nil {
						return giveUp(err)
					}
					continue
				}
				if err := watch.wait(ctx, &m.opts); err != nil {
					return giveUp(m.ctxErr(err))
				}
				continue
			case err != nil:
				if err := retry(err); err != nil {
					return giveUp(err)
				}
				continue
			}
			out.answered()
			watch, notTurn = newWatch(&m.opts, ttl), time.Time{}
		}
		n := mine.obj.Fence
		walked := time.Now()
		turn := turnAtJoin
		var blocker *snapshot
		var returned time.Time
		if !turn {
			var err error
			turn, blocker, returned, err = m.clearBelow(ctx, n-1)
			if err != nil {
				if err := retry(err); err != nil {
					return giveUp(err)
				}
				continue
			}
			out.answered()
			if blocker != nil {
				a.saw(blocker)
			}
		}
		if turn {
			since := a.sent[mine.obj.Seq]
			if notTurn.After(since) {
				since = notTurn
			}
			lease := m.opts.timing(mine.obj.ttl())
			late := time.Since(since)
			if late <= lease.fresh {
				return m.holdOn(m.ticketKey(n), func(ctx context.Context) (*snapshot, error) {
					snap, _, err := m.readTicket(ctx, n)
					return snap, err
				}, a, mine, since, lease, timing), nil
			}
			// Our turn came long after we joined, or the store answered
			// late: write the ticket again for a fresh lease, as a
			// renewal, unless it was abandoned. A store that stays too
			// slow for the lease would have this ticket keep the lock
			// from everyone: after a few late answers, leave and take a
			// new ticket later (TryLock gives up).
			if lateAnswers++; lateAnswers > tryLockRounds {
				if !wait {
					return giveUp(fmt.Errorf("objsync: %s: the store answered a write after %v, and a lease of %v needs an answer within %v; a longer ttl would do", m.loc, late.Round(time.Millisecond), mine.obj.ttl(), lease.fresh))
				}
				m.leaveQueue(a)
				a, mine, lateAnswers = newAttempt(), nil, 0
				if err := b.wait(ctx, 0); err != nil {
					return giveUp(m.ctxErr(err))
				}
				continue
			}
			renewed, err := m.rewriteTicket(ctx, a, mine)
			switch {
			case err != nil:
				if err := retry(err); err != nil {
					return giveUp(err)
				}
			case renewed == nil:
				mine = nil // its turn was ended while we were away: a new ticket
			default:
				mine = renewed
			}
			continue
		}
		if blocker != nil {
			notTurn = walked
		}
		if !wait {
			// A ticket before ours was taken just before we joined.
			return giveUp(nil)
		}
		if err := m.watchPredecessor(ctx, &watch, blocker, returned); err != nil {
			if err := retry(err); err != nil {
				return giveUp(err)
			}
			continue
		}
		m.log.Debug("objsync: waiting in the queue", "ticket", n, "watching", watch.n, "next_poll", watch.next)
		if err := watch.wait(ctx, &m.opts); err != nil {
			return giveUp(m.ctxErr(err))
		}
	}
}

// rewriteTicket writes our ticket again, conditional on its version, and
// returns it as written; nil if it was abandoned meanwhile. After an
// answer that was lost, it reads the ticket back to settle it.
func (m *Mutex) rewriteTicket(ctx context.Context, a *attempt, mine *snapshot) (*snapshot, error) {
	n := mine.obj.Fence
	for {
		if mine.obj.State != stateHeld {
			return nil, nil
		}
		now := time.Now()
		obj := mine.obj
		obj.Seq, obj.WrittenAt = a.next(now), now.UTC()
		v, err := m.store.Write(ctx, m.ticketKey(n), obj.encode(), mine.version)
		if err == nil {
			return &snapshot{exists: true, version: v, obj: obj}, nil
		}
		if !errors.Is(err, driver.ErrPrecondition) && (ctx.Err() != nil || !driver.IsRetryable(err)) {
			return nil, fmt.Errorf("objsync: %w", err)
		}
		cur, _, rerr := m.readTicket(ctx, n)
		if rerr != nil {
			return nil, errors.Join(err, rerr)
		}
		if !has(cur, n) || !a.owns(cur) {
			return nil, nil
		}
		if _, ok := a.sent[cur.obj.Seq]; ok && cur.obj.Seq > mine.obj.Seq {
			return cur, nil // a write of ours landed
		}
		mine = cur
	}
}

// predecessorWatch is what a waiter knows of the ticket that blocks its
// own: the nearest unsettled one before it.
type predecessorWatch struct {
	n      int64     // the ticket watched
	ahead  int64     // the nearest unsettled ticket before it, last seen
	seen   stateKey  // its state when first seen with its turn come
	seenAt time.Time // when the read that showed it so returned; zero until its turn came
	fast   bool      // polling fast: the ticket just before ours holds
	next   time.Duration
	poll   time.Duration // the longest sleep between polls
	// headCheck is when a waiter further back that watches the ticket
	// whose turn it is, head, looks at the queue's head again: when its
	// TTL would be up, or once it has settled.
	headCheck time.Time
	head      int64
	// A waiter further back polls steadily at the minimum backoff, a few
	// times after it last saw the queue move, and then less and less
	// often; once the ticket before it holds, from a quarter of the
	// minimum backoff.
	steady int
	pace   backoff
}

// wait sleeps until the next poll.
func (w *predecessorWatch) wait(ctx context.Context, o *options) error {
	atMost := min(w.next, w.poll)
	if w.steady > 0 {
		w.steady--
		return sleep(ctx, min(o.minBackoff, atMost))
	}
	return w.pace.wait(ctx, atMost)
}

// newWatch starts the watch of a waiter on a lease of ttl, which polls at
// most every handoffPoll, to take a hand-off well within its lease.
func newWatch(o *options, ttl time.Duration) predecessorWatch {
	poll := o.handoffPoll(ttl)
	return predecessorWatch{steady: steadyPolls, poll: poll, pace: backoff{min: min(o.minBackoff, poll), max: poll}}
}

// watchPredecessor watches t, the ticket that blocks a waiter's own (nil if
// none could be read), as read at the given instant, and ends its turn if
// it has held it unchanged for longer than its TTL: its holder is dead,
// frozen or cut off, and its lease has run out. Only a ticket whose turn
// has come is ended so: waiting tickets are not renewed. If t's turn has
// not come and the queue has not moved for a while, it watches the ticket
// whose turn it is instead: the waiters between may all be gone. It sets
// w.next to the time until the next poll should come: 0 after it wrote to
// end a turn.
func (m *Mutex) watchPredecessor(ctx context.Context, w *predecessorWatch, t *snapshot, returned time.Time) error {
	if t == nil {
		w.next = m.opts.minBackoff
		return nil
	}
	w.next = w.poll
	next := true // t is the ticket just before ours, its turn come
	if w.n != t.obj.Fence || w.seenAt.IsZero() {
		turn, ahead, _, err := m.clearBelow(ctx, t.obj.Fence-1)
		if err != nil {
			return err
		}
		// Its turn came before this walk ended, maybe after t was read:
		// its lease may count from that late (see acquireQueue).
		returned = time.Now()
		if !turn {
			if ahead != nil && ahead.obj.Fence != w.ahead {
				// The queue moved: keep polling at the steady pace.
				w.ahead, w.steady, w.headCheck = ahead.obj.Fence, steadyPolls, time.Time{}
				w.pace = backoff{min: min(m.opts.minBackoff, w.poll), max: w.poll}
			}
			if w.steady > 0 {
				return nil // further back in the queue
			}
			if time.Now().Before(w.headCheck) {
				// The head it watches: still there? Two reads, where
				// finding the head reads every ticket waiting.
				clear, blocker, _, err := m.clearBelow(ctx, w.head)
				if err != nil || !clear && blocker != nil && blocker.obj.Fence == w.head {
					return err
				}
			}
			head, _, _, at, err := m.queueHead(ctx)
			if err != nil || head == nil {
				return err
			}
			t, returned, next = head, at, false
		}
	}
	if w.n != t.obj.Fence {
		w.n, w.seenAt, w.fast = t.obj.Fence, time.Time{}, false
	}
	if next && !w.fast {
		// Next in line: poll fast, for the release.
		w.fast, w.steady, w.pace = true, 0, backoff{min: max(min(m.opts.minBackoff, w.poll)/4, time.Millisecond), max: w.poll}
	}
	if k := t.key(); k != w.seen || w.seenAt.IsZero() {
		w.seen, w.seenAt = k, m.shared.turnSeen(t, returned)
	}
	left := takeoverAfter(t.obj.ttl()) - time.Since(w.seenAt)
	if left > 0 {
		w.next = left
		if !next {
			// Reading the queue's head costs a read per waiter: look
			// again only when it could be ended, or has settled.
			w.headCheck, w.head = time.Now().Add(left), t.obj.Fence
		}
		return nil
	}
	m.log.Info("objsync: ending the turn of a queue ticket unchanged for longer than its ttl", "ticket", t.obj.Fence, "holder", t.obj.Holder, "unchanged", time.Since(w.seenAt))
	if err := m.endTurn(ctx, t, ""); err != nil && !errors.Is(err, driver.ErrPrecondition) {
		return fmt.Errorf("objsync: %w", err)
	}
	w.next = 0
	return nil
}

// watchHead watches the ticket whose turn it is as the waiter behind it
// would, with watchPredecessor.
func (m *Mutex) watchHead(ctx context.Context, w *predecessorWatch) error {
	head, _, _, at, err := m.queueHead(ctx)
	if err != nil {
		return err
	}
	return m.watchPredecessor(ctx, w, head, at)
}

// endTurn writes ticket t abandoned, signed by breaker (empty for a
// waiter), conditional on the version read: the very object its holder
// renews, so that a renewal that lands first makes this fail, and one
// that comes later fails itself.
func (m *Mutex) endTurn(ctx context.Context, t *snapshot, breaker string) error {
	obj := t.obj
	obj.State, obj.Prev, obj.WrittenAt = stateAbandoned, breaker, time.Now().UTC()
	_, err := m.store.Write(ctx, m.ticketKey(t.obj.Fence), obj.encode(), t.version)
	return err
}

// releaseTicket settles ticket n of a with its done slot: state done, or
// left for a ticket given up before its turn. Only a's ticket n writes
// that slot between tickets n-queueSlots and n+queueSlots, so a failed
// condition means a write of ours landed or the slot moved on.
func (m *Mutex) releaseTicket(ctx context.Context, a *attempt, n int64, state string) error {
	b := m.newBackoff()
	var werr error // the last write's error
	for {
		cur, err := m.readDone(ctx, n)
		switch {
		case err != nil:
			return errors.Join(werr, err)
		case cur.exists && cur.obj.Fence >= n:
			return nil // ours landed, whatever its answer said
		case werr != nil && !errors.Is(werr, driver.ErrPrecondition) && (ctx.Err() != nil || !driver.IsRetryable(werr)):
			return werr
		case werr != nil && !errors.Is(werr, driver.ErrPrecondition):
			if err := b.wait(ctx, 0); err != nil {
				return fmt.Errorf("objsync: release %s: %w", m.loc, err)
			}
		}
		if err := paceSlot(ctx, cur); err != nil {
			return fmt.Errorf("objsync: release %s: %w", m.loc, err)
		}
		now := time.Now()
		obj := lockObject{Format: lockFormat, State: state, Holder: a.id, Fence: n, Seq: a.next(now), AcquiredAt: now.UTC(), WrittenAt: now.UTC()}
		if _, werr = m.store.Write(ctx, m.doneKey(n), obj.encode(), cur.version); werr == nil {
			return nil
		}
		// Settle by reading: even an error that is not transient may
		// follow a write that landed.
		werr = fmt.Errorf("objsync: release %s: %w", m.loc, werr)
	}
}

// releaseQueueHold is Unlock's release for a queue lock: it settles the
// hold's ticket as done, unless Break ended its turn (ErrLockLost).
func (m *Mutex) releaseQueueHold(ctx context.Context, h *hold) error {
	t, err := h.read(ctx)
	if err != nil {
		return err
	}
	if !h.a.owns(t) || t.obj.Fence != h.fence {
		return fmt.Errorf("%w: %s: the turn of ticket %d was ended by another (Break)", ErrLockLost, m.loc, h.fence)
	}
	return m.releaseTicket(ctx, h.a, h.fence, stateDone)
}

// leaveQueue settles the ticket of an acquisition that is being given up,
// if one of its joins landed, so that those behind it need not wait for
// it to be ended after its TTL. Bounded as abandon is.
func (m *Mutex) leaveQueue(a *attempt) {
	if a.ticket == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), abandonWithin)
	defer cancel()
	t, _, err := m.readTicket(ctx, a.ticket)
	if err != nil || !has(t, a.ticket) || !a.owns(t) {
		return
	}
	if err := m.releaseTicket(ctx, a, a.ticket, stateLeft); err != nil {
		m.log.Warn("objsync: could not leave the queue; the ticket's turn ends after its ttl", "ticket", a.ticket, "err", err)
	}
}

// queueHead finds the ticket whose turn it is, as read, with the number
// of tickets waiting behind it, the last ticket taken, and when the walk
// that showed its turn come ended (its turn may have come just before);
// head is nil if every ticket has settled, or if the walk found none
// whose turn had surely come.
func (m *Mutex) queueHead(ctx context.Context) (head *snapshot, waiting int, tail int64, read time.Time, err error) {
	tail, err = m.findTail(ctx, false, nil)
	if err != nil {
		return nil, 0, 0, read, err
	}
	for k := tail; ; {
		clear, blocker, _, err := m.clearBelow(ctx, k)
		switch {
		case err != nil:
			return nil, 0, tail, read, err
		case clear && head != nil:
			return head, waiting - 1, tail, time.Now(), nil
		case clear || blocker == nil:
			return nil, 0, tail, read, nil
		}
		head, waiting, k = blocker, waiting+1, blocker.obj.Fence-1
	}
}

// inspectQueue is Inspect for a queue lock: the ticket whose turn it is,
// as its holder, and how many wait behind it.
func (m *Mutex) inspectQueue(ctx context.Context) (State, error) {
	marker, _, err := m.readKey(ctx, m.key, decodeMarker)
	if err != nil || !marker.exists {
		return State{}, err
	}
	head, waiting, tail, _, err := m.queueHead(ctx)
	if err != nil || head == nil {
		return State{Exists: true, Fence: tail}, err
	}
	o := head.obj
	return State{
		Exists: true, Held: true, Holder: o.Holder, Value: o.Value, Fence: o.Fence,
		TTL: o.ttl(), Host: o.Host, PID: o.PID, AcquiredAt: o.AcquiredAt, RenewedAt: o.WrittenAt,
		Waiters: waiting,
	}, nil
}

// breakQueue is Break for a queue lock: it ends the turn of the ticket
// whose turn it is, as a waiter does with one unchanged for its TTL, with
// a write conditional on the version it read.
func (m *Mutex) breakQueue(ctx context.Context) (State, error) {
	st, err := m.inspectQueue(ctx)
	if err != nil {
		return State{}, err
	}
	if !st.Held {
		return st, fmt.Errorf("objsync: break %s: %w", m.loc, ErrNotHeld)
	}
	t, _, err := m.readTicket(ctx, st.Fence)
	if err != nil {
		return st, err
	}
	if !has(t, st.Fence) || t.obj.State != stateHeld || t.obj.Holder != st.Holder {
		return st, fmt.Errorf("objsync: break %s: the lock changed while breaking it; nothing was written: %w", m.loc, ErrLockLost)
	}
	breaker := newAttempt().id
	b, conflicts := m.newBackoff(), 0
	for {
		err := m.endTurn(ctx, t, breaker)
		if err == nil {
			break
		}
		// Settle by reading: the write may have landed, or land later.
		back, _, rerr := m.readTicket(ctx, st.Fence)
		if rerr != nil {
			return st, fmt.Errorf("objsync: break %s: %w", m.loc, errors.Join(err, rerr))
		}
		if has(back, st.Fence) && back.obj.State == stateAbandoned && back.obj.Prev == breaker {
			break // ours landed
		}
		if !has(back, st.Fence) || back.obj.Holder != st.Holder || back.obj.State != stateHeld {
			return st, fmt.Errorf("objsync: break %s: the lock changed while breaking it: %w", m.loc, ErrLockLost)
		}
		// The same holder: it renewed since (write again at once, a few
		// times), or the write failed (write again after a pause).
		t = back
		switch {
		case errors.Is(err, driver.ErrPrecondition):
			if conflicts++; conflicts > maxConflicts {
				return st, fmt.Errorf("objsync: break %s: the holder renewed before each of %d writes: %w", m.loc, conflicts, ErrLockLost)
			}
		case ctx.Err() != nil || !driver.IsRetryable(err):
			return st, fmt.Errorf("objsync: break %s: %w", m.loc, err)
		default:
			if err := b.wait(ctx, 0); err != nil {
				return st, fmt.Errorf("objsync: break %s: %w", m.loc, err)
			}
		}
	}
	m.log.Warn("objsync: lock broken", "holder", st.Holder, "fence", st.Fence)
	return st, nil
}
