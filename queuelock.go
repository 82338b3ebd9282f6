package objsync

import (
	"context"
	"errors"
	"fmt"
	"math"
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

// queueHandoffTTL is the lease of a ticket taken to wait in the queue: a
// plain lock's hand-off lease, so that a waiter that dies holds up those
// behind it for that long only, and, on a store that limits how often an
// object is written, at least four of its write intervals, so that its
// holder's first renewal, 0.297 of it after the write, keeps the slot's
// pace. Its first renewal writes the full TTL.
func (m *Mutex) queueHandoffTTL(ttl time.Duration) time.Duration {
	return min(max(m.opts.handoffTTL(ttl), 4*driver.WriteInterval(m.store)), ttl)
}

// paceSlot waits until the store's write interval has passed since prev,
// the content of a slot about to be written over, was written, by the
// wall-clock time stored in it; at most the interval. It paces writes and
// never decides who holds the lock: a clock that is off costs only a 429,
// which is retried.
func (m *Mutex) paceSlot(ctx context.Context, prev *snapshot) error {
	interval := driver.WriteInterval(m.store)
	if !prev.exists || interval == 0 {
		return nil
	}
	return sleep(ctx, min(interval, time.Until(prev.obj.WrittenAt.Add(interval))))
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
// A ticket abandoned, and any done slot, keep their state until the
// slot's next lap: they are recorded for lapBefore.
func (m *Mutex) readTicket(ctx context.Context, n int64) (*snapshot, time.Time, error) {
	key := m.ticketKey(n)
	snap, at, err := m.readKey(ctx, key, decodeTicket)
	if err = m.inSlot(snap, n, key, err); err == nil && snap.exists && snap.obj.State == stateAbandoned {
		m.shared.sawLapEnd(key, snap)
	}
	return snap, at, err
}

func (m *Mutex) readDone(ctx context.Context, n int64) (*snapshot, error) {
	key := m.doneKey(n)
	snap, _, err := m.readKey(ctx, key, decodeDone)
	if err = m.inSlot(snap, n, key, err); err == nil && snap.exists {
		m.shared.sawLapEnd(key, snap)
	}
	return snap, err
}

// lapBefore returns what the slot object at key, ticket n's, holds until
// n is written there, as far as this process knows without a read: on
// the first lap nothing, later the settled state of the ticket a lap
// before, as recorded by sawLapEnd; nil if it does not know. A write
// conditional on a stale guess fails, and the writer reads the slot.
func (m *Mutex) lapBefore(key string, n int64) *snapshot {
	if n <= queueSlots {
		return &snapshot{} // tickets start at 1: slot n has held none before
	}
	return m.shared.lapEnd(key, n-queueSlots)
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
		_, err = m.write(ctx, m.key, marker.encode(), "")
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
	for j := k; j >= 1; j-- {
		switch settled, all := m.shared.knownSettled(j); {
		case all:
			m.shared.sawSettled(k)
			return true, nil, time.Time{}, nil
		case settled:
			continue
		}
		done, err := m.readDone(ctx, j)
		if err != nil {
			return false, nil, time.Time{}, err
		}
		if releasedDone(done, j) {
			m.shared.sawSettled(k)
			return true, nil, time.Time{}, nil
		}
		if done.exists && done.obj.Fence == j {
			m.shared.sawLeft(j)
			continue
		}
		t, at, err := m.readTicket(ctx, j)
		switch {
		case err != nil:
			return false, nil, time.Time{}, err
		case settledTicket(t, j):
			m.shared.sawSettled(k)
			return true, nil, time.Time{}, nil
		case has(t, j):
			return false, t, at, nil
		default:
			return false, nil, time.Time{}, nil // not taken yet: not ours to judge
		}
	}
	m.shared.sawSettled(k)
	return true, nil, time.Time{}, nil
}

// releasedDone reports whether done, read from ticket k's done slot, shows
// ticket k and every one before it settled: k released (its turn had
// come), or the slot holding a later ticket's settling.
func releasedDone(done *snapshot, k int64) bool {
	return done.exists && (done.obj.Fence > k || done.obj.Fence == k && done.obj.State == stateDone)
}

// settledTicket reports whether snap, read from ticket k's slot, shows
// ticket k and every one before it settled: k abandoned (done only once
// its turn had come), or a later ticket in its slot (taken only over a
// ticket with every one before it settled).
func settledTicket(snap *snapshot, k int64) bool {
	return snap.exists && (snap.obj.Fence > k || snap.obj.Fence == k && snap.obj.State == stateAbandoned)
}

// queuePlace is where a ticket stands in the queue: its turn has come
// (every ticket before it has settled), or else head is the ticket whose
// turn it is, as read, read is when that read returned (its turn had come
// by then), unsettled an instant at which the head was surely unsettled,
// so the ticket's turn not come, and ahead is how many tickets between the
// two may still be waiting. head is nil, and turn false, if a ticket
// before it was not taken yet, as from a view ahead of the store.
type queuePlace struct {
	turn      bool
	head      *snapshot
	read      time.Time
	unsettled time.Time
	ahead     int
}

// placeTicket finds where ticket n stands. Every ticket up to the last
// this process knows settled has: if that is recent, it walks forward from
// there, one read per ticket settled since, to the first that has not,
// which holds, since its turn has come; else it walks back over the done
// slots to a ticket released (placeFromBack). What it finds settled it
// records for the process, and does not read again.
func (m *Mutex) placeTicket(ctx context.Context, n int64) (queuePlace, error) {
	k := m.shared.settledUpTo() + 1
	if n-k > queueSlots/2 {
		return m.placeFromBack(ctx, n)
	}
	for ; k < n; k++ {
		if settled, all := m.shared.knownSettled(k); settled || all {
			m.shared.sawSettled(k) // left, and every one before it settled
			continue
		}
		sent := time.Now()
		done, err := m.readDone(ctx, k)
		if err != nil {
			return queuePlace{}, err
		}
		if done.exists && done.obj.Fence >= k {
			m.shared.sawSettled(k) // released or left, or a later lap
			continue
		}
		place, settled, err := m.placeAt(ctx, k, n, sent)
		if err != nil || !settled {
			return place, err
		}
	}
	return queuePlace{turn: true}, nil
}

// placeAt reads ticket k, whose turn has come and whose done slot showed
// it unsettled by a read sent at doneSent, for placeTicket on ticket n:
// settled if it was abandoned or its slot taken over, else its place as
// the head, unsettled at doneSent: neither a release nor an abandonment is
// undone, so the read of its ticket, sent later, shows it was not
// abandoned then. (A read of the ticket from an earlier poll would show
// that only for when it was sent, and the lease of a waiter whose turn
// came would count from then: the waiter polls no faster than that.)
func (m *Mutex) placeAt(ctx context.Context, k, n int64, doneSent time.Time) (place queuePlace, settled bool, err error) {
	t, at, err := m.readTicket(ctx, k)
	switch {
	case err != nil:
		return queuePlace{}, false, err
	case settledTicket(t, k):
		m.shared.sawSettled(k)
		return queuePlace{}, true, nil
	case !has(t, k):
		return queuePlace{}, false, nil
	}
	for j := k + 1; j < n; j++ {
		if settled, _ := m.shared.knownSettled(j); !settled {
			place.ahead++
		}
	}
	// Counted by the process, whichever of its calls reads the head next.
	m.shared.turnSeen(t, at)
	return queuePlace{head: t, read: at, unsettled: doneSent, ahead: place.ahead}, false, nil
}

// placeFromBack is placeTicket walking back from n-1 over done slots to a
// ticket released, or known settled, and then forward over the tickets
// between, whose turns came one after the other, to the first that holds:
// two reads per ticket waiting.
func (m *Mutex) placeFromBack(ctx context.Context, n int64) (queuePlace, error) {
	var unsettled []int64 // below n, nearest first
	var sent []time.Time  // when the read of each one's done slot was sent
	for k := n - 1; k >= 1; k-- {
		settled, all := m.shared.knownSettled(k)
		if all {
			break
		}
		if k <= n-1-queueSlots {
			// Ticket n-1 was taken over k's slot, once k and every
			// one before it had settled.
			m.shared.sawSettled(k)
			break
		}
		if settled {
			continue // left
		}
		doneSent := time.Now()
		done, err := m.readDone(ctx, k)
		if err != nil {
			return queuePlace{}, err
		}
		if releasedDone(done, k) {
			m.shared.sawSettled(k) // released (its turn had come), or a later lap
			break
		}
		if done.exists && done.obj.Fence == k {
			m.shared.sawLeft(k)
			continue
		}
		unsettled, sent = append(unsettled, k), append(sent, doneSent)
	}
	for i := len(unsettled) - 1; i >= 0; i-- {
		place, settled, err := m.placeAt(ctx, unsettled[i], n, sent[i])
		if err != nil || !settled {
			return place, err
		}
	}
	if n > 1 {
		m.shared.sawSettled(n - 1)
	}
	return queuePlace{turn: true}, nil
}

// findTail returns the number of the last ticket taken, 0 if none, and
// whether it was seen taken: this process's guess if it has one
// (queueTail), else by a search of the slots, which hold tickets
// base..base+63 in order from slot 0, base being the ticket in slot 0 (or
// 0), with those past the last taken still holding older ones. It may be
// behind or ahead by the time it returns; takeTicket walks on, or back,
// from it.
func (m *Mutex) findTail(ctx context.Context, useView bool, a *attempt) (tail int64, known bool, err error) {
	if n, known := m.shared.queueTail(queueSlots / 2); n > 0 && useView {
		return n, known, nil
	}
	first, _, err := m.readTicket(ctx, 0)
	if err != nil {
		return 0, false, err
	}
	a.saw(first)
	base := int64(0)
	if first.exists {
		base = first.obj.Fence
	}
	// Out from slot 0 one slot, then two, four..., and then halving: a
	// short queue costs a few reads.
	tail, err = m.searchTickets(ctx, base, base+queueSlots, 1, a)
	return tail, true, err
}

// searchSlots returns the last ticket taken between lo, taken or 0, and
// hi, not taken, fewer than queueSlots apart, by halving.
func (m *Mutex) searchSlots(ctx context.Context, lo, hi int64, a *attempt) (int64, error) {
	return m.searchTickets(ctx, lo, hi, 0, a)
}

// searchTickets returns the last ticket taken between lo, taken or 0, and
// hi, not taken (or a lap past lo): out from lo by step, doubling, while
// taken, if step is positive, and then by halving. Each ticket seen taken
// it records, so that a Lock that gives up half-way leaves the next one
// less to search.
func (m *Mutex) searchTickets(ctx context.Context, lo, hi, step int64, a *attempt) (int64, error) {
	for hi-lo > 1 {
		probe := lo + (hi-lo)/2
		if step > 0 {
			probe = min(lo+step, hi-1)
		}
		t, _, err := m.readTicket(ctx, probe)
		if err != nil {
			return 0, err
		}
		a.saw(t)
		if t.exists && t.obj.Fence >= probe {
			lo, step = probe, 2*step
			m.shared.sawTaken(lo)
		} else {
			hi, step = probe, 0
		}
	}
	return lo, nil
}

// errQueueFull is takeTicket's answer when the slot of the next ticket still
// holds an unsettled one: queueSlots tickets are waiting.
var errQueueFull = errors.New("objsync: the queue is full")

// takeTicket takes the next ticket for a, with one write to its slot,
// conditional on the slot holding the settled ticket queueSlots before it
// (or nothing), and after a read showed that the ticket before it exists:
// ticket numbers are taken in order, each once. It returns the ticket as
// written, and where it stood by the walk before the write: if its turn
// had come, every ticket before it had settled, which stays so. A ticket
// whose turn is yet to come carries the hand-off lease. With onlyIfFree, it takes one
// only if its turn would come at once, and returns nil otherwise.
func (m *Mutex) takeTicket(ctx context.Context, a *attempt, ttl time.Duration, value string, onlyIfFree bool) (mine *snapshot, place queuePlace, err error) {
	if err := m.endLastTurn(ctx); err != nil {
		return nil, queuePlace{}, err
	}
	if a.ticket != 0 {
		// A write of this attempt may have landed, its answer lost and
		// the read back failed: if so, the ticket is ours.
		t, _, err := m.readTicket(ctx, a.ticket)
		if err != nil {
			return nil, queuePlace{}, err
		}
		if has(t, a.ticket) && a.owns(t) {
			return m.adoptTicket(ctx, t, onlyIfFree)
		}
	}
	tail, seen, err := m.findTail(ctx, true, a)
	if err != nil {
		return nil, queuePlace{}, err
	}
	n := tail + 1
	var known int64 // a ticket this call has seen taken
	if seen {
		known = tail
	}
	var slot *snapshot    // what this call read in slot n, if it has
	var guessFailed int64 // a ticket whose slot lapBefore guessed wrong
	walkedBack := 0
	// placeAt places ticket n, and reports whether it ended the turn of
	// a head this process has seen unchanged for longer than its TTL,
	// rather than join behind it.
	var placedFor int64
	placeAt := func(n int64) (ended bool, err error) {
		if place, err = m.placeTicket(ctx, n); err != nil {
			return false, err
		}
		placedFor = n
		if place.head == nil {
			return false, nil
		}
		left, err := m.endExpiredTurn(ctx, place.head, place.read)
		if left == 0 {
			placedFor = -1 // place again
		}
		return left == 0, err
	}
	for {
		if ctx.Err() != nil {
			return nil, queuePlace{}, m.ctxErr(ctx.Err())
		}
		if n > 1 && known != n-1 {
			prev, _, err := m.readTicket(ctx, n-1)
			if err == nil {
				a.saw(prev)
			}
			switch {
			case err != nil:
				return nil, queuePlace{}, err
			case !prev.exists || prev.obj.Fence < n-1:
				// A guess ahead of the store: walk back, or search
				// if it is far ahead.
				if walkedBack++; walkedBack <= 1 {
					n, slot = n-1, prev
					continue
				}
				lo := min(m.shared.lastTaken(), n-2)
				if tail, err = m.searchSlots(ctx, lo, n-1, a); err != nil {
					return nil, queuePlace{}, err
				}
				n, slot, known = tail+1, nil, tail
				continue
			case prev.obj.Fence > n-1:
				// Behind by a lap or more: search the slots.
				if tail, _, err = m.findTail(ctx, false, a); err != nil {
					return nil, queuePlace{}, err
				}
				n, slot = max(tail, prev.obj.Fence)+1, nil
				continue
			}
		}
		// Placed first on the first pass, where the guess is usually
		// right: a Lock that gives up within a few requests has then
		// read the head, for endLastTurn.
		if placedFor == 0 {
			if ended, err := placeAt(n); err != nil || ended {
				if err != nil {
					return nil, queuePlace{}, err
				}
				continue
			}
		}
		cur, guessed := slot, false
		// Only when every ticket before n has settled, so that nobody
		// waits, and likely nobody else joins: a guess that fails costs a
		// write and then the read. And not on a store that limits writes:
		// there a failed guess, on a slot another just took, may draw a
		// 429 and spend its interval.
		if cur == nil && placedFor == n && place.turn && guessFailed != n && driver.WriteInterval(m.store) == 0 {
			cur = m.lapBefore(m.ticketKey(n), n)
			guessed = cur != nil
		}
		if cur == nil {
			if cur, _, err = m.readTicket(ctx, n); err != nil {
				return nil, queuePlace{}, err
			}
		}
		slot = nil
		if has(cur, n) && a.owns(cur) {
			// A write of ours, held back, landed after all.
			return m.adoptTicket(ctx, cur, onlyIfFree)
		}
		if cur.exists && cur.obj.Fence >= n {
			a.saw(cur)
			m.shared.sawTaken(cur.obj.Fence)
			known, n = cur.obj.Fence, cur.obj.Fence+1 // taken by another
			continue
		}
		if placedFor == n-1 && place.head != nil {
			// Placed for n-1, which another took, behind a head
			// unsettled then: n stands behind n-1 too.
			if settled, _ := m.shared.knownSettled(n - 1); !settled {
				place.ahead++
			}
			placedFor = n
		}
		if placedFor != n {
			if ended, err := placeAt(n); err != nil || ended {
				if err != nil {
					return nil, queuePlace{}, err
				}
				continue
			}
		}
		if onlyIfFree && !place.turn {
			return nil, queuePlace{}, nil
		}
		if cur.exists && !place.turn {
			// Over a ticket only once it and every one before it have
			// settled (so, if the turn has come): a slot taken over then
			// says so for them all.
			free, _, _, err := m.clearBelow(ctx, cur.obj.Fence)
			if err != nil {
				return nil, queuePlace{}, err
			}
			if !free {
				return nil, queuePlace{}, errQueueFull
			}
		}
		if err := m.paceSlot(ctx, cur); err != nil {
			return nil, queuePlace{}, m.ctxErr(err)
		}
		if n > lastTicket {
			return nil, queuePlace{}, fmt.Errorf("objsync: %s: ticket %d would pass the last a queue lock gives (%d): the lock cannot be taken again", m.loc, n, int64(lastTicket))
		}
		lease := ttl
		if !place.turn {
			lease = m.queueHandoffTTL(ttl)
		}
		now := time.Now()
		seq := a.next(now)
		a.ticket = n
		obj := lockObject{
			Format: lockFormat, State: stateHeld, Holder: a.id, Fence: n, Seq: seq,
			TTLMillis: lease.Milliseconds(), Value: value, holderProcess: a.proc,
			AcquiredAt: now.UTC(), WrittenAt: now.UTC(),
		}
		v, err := m.write(ctx, m.ticketKey(n), obj.encode(), cur.version)
		switch {
		case err == nil:
			m.shared.tookTicket(n)
			return &snapshot{exists: true, version: v, obj: obj}, place, nil
		case errors.Is(err, driver.ErrPrecondition):
			if guessed {
				guessFailed = n
			}
			continue // someone wrote the slot first: read it
		case ctx.Err() != nil:
			return nil, queuePlace{}, m.ctxErr(ctx.Err())
		case !driver.IsRetryable(err):
			return nil, queuePlace{}, fmt.Errorf("objsync: %w", err)
		}
		// The write may have landed: read the slot back.
		back, _, rerr := m.readTicket(ctx, n)
		if rerr != nil {
			return nil, queuePlace{}, errors.Join(err, rerr)
		}
		if has(back, n) && a.owns(back) {
			m.shared.tookTicket(n)
			return back, place, nil
		}
		// Ours but abandoned (its turn came and went while the answer
		// was on its way), or another's: a later ticket.
		if !has(back, n) {
			return nil, queuePlace{}, fmt.Errorf("objsync: %w", err) // not taken: try again later
		}
	}
}

// adoptTicket returns mine, a ticket of the attempt that the store holds
// though the answer to its write was lost, and where it stands (nil, for
// TryLock, if its turn has not come: the caller leaves it).
func (m *Mutex) adoptTicket(ctx context.Context, mine *snapshot, onlyIfFree bool) (*snapshot, queuePlace, error) {
	m.shared.tookTicket(mine.obj.Fence)
	place, err := m.placeTicket(ctx, mine.obj.Fence)
	if err != nil || onlyIfFree && !place.turn {
		return nil, queuePlace{}, err
	}
	return mine, place, nil
}

// acquireQueue is acquire for a queue lock: take a ticket and hold the
// lock once the ticket before it has settled. The lease, of the TTL in the
// ticket, counts from the last write to the ticket or, if later, from the
// start of the last walk that showed the turn not yet come: the turn came
// after that, and nobody can have seen it come before.
func (m *Mutex) acquireQueue(ctx context.Context, ttl time.Duration, value string, wait bool) (*hold, error) {
	proc, err := m.process()
	if err != nil {
		return nil, err
	}
	a := newAttempt(proc)
	giveUp := func(err error) (*hold, error) {
		m.leaveQueue(ctx, a)
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
	var mine *snapshot     // our ticket, as last written or read
	var notTurn time.Time  // when the last walk that showed mine's turn not come began
	var joined *queuePlace // where mine stood when it was taken, until used
	watch := m.newWatch(ttl)
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
			var place queuePlace
			mine, place, err = m.takeTicket(ctx, a, ttl, value, !wait)
			switch {
			case err == nil && mine == nil:
				// TryLock: taken, by a holder this process has not seen
				// unchanged for longer than its TTL (takeTicket ends the
				// turn of one it has).
				return giveUp(nil)
			case errors.Is(err, errQueueFull):
				if !wait {
					return giveUp(nil)
				}
				out.answered()
				// Tickets left by Locks that died may fill the queue, and
				// nobody else may be there to end their turns.
				head, waiting, err := m.watchHead(ctx, &watch)
				if err != nil {
					if err := retry(err); err != nil {
						return giveUp(err)
					}
					continue
				}
				if err := watch.wait(ctx, head, waiting); err != nil {
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
			watch, notTurn, joined = m.newWatch(ttl), time.Time{}, &place
		}
		n := mine.obj.Fence
		var place queuePlace
		if joined != nil {
			// Placed by the walk before the ticket was written: its
			// lease counts from the write.
			place, joined = *joined, nil
		} else {
			var err error
			if place, err = m.placeTicket(ctx, n); err != nil {
				if err := retry(err); err != nil {
					return giveUp(err)
				}
				continue
			}
			out.answered()
			if place.head != nil {
				notTurn = place.unsettled
			}
		}
		head, ahead := place.head, place.ahead
		if head != nil {
			a.saw(head)
		}
		if place.turn {
			since := a.sent[mine.obj.Seq]
			if notTurn.After(since) {
				since = notTurn
			}
			lease := m.opts.timing(mine.obj.ttl())
			late := time.Since(since)
			// Without renewals nothing would lengthen a hand-off lease
			// to the caller's TTL: write it first.
			shortLease := mine.obj.ttl() != ttl && !m.opts.renew
			if late <= lease.fresh && !shortLease {
				watch.pacer.handed()
				return m.holdOn(m.ticketKey(n), func(ctx context.Context) (*snapshot, error) {
					snap, _, err := m.readTicket(ctx, n)
					return snap, err
				}, a, mine, since, lease, timing), nil
			}
			// Our turn came long after we joined, or the store answered
			// late, or renewals are off and the ticket has a hand-off
			// lease: write the ticket again for a fresh lease of the
			// caller's TTL, as a renewal, unless it was abandoned. A store that stays too
			// slow for the lease would have this ticket keep the lock
			// from everyone: after a few late answers, leave and take a
			// new ticket later (TryLock gives up).
			if late > lease.fresh {
				lateAnswers++
			}
			if lateAnswers > tryLockRounds {
				if !wait {
					return giveUp(fmt.Errorf("objsync: %s: the store answered a write after %v, and a lease of %v needs an answer within %v; a longer ttl would do", m.loc, late.Round(time.Millisecond), mine.obj.ttl(), lease.fresh))
				}
				m.leaveQueue(ctx, a)
				a, mine, lateAnswers = newAttempt(proc), nil, 0
				if err := b.wait(ctx, 0); err != nil {
					return giveUp(m.ctxErr(err))
				}
				continue
			}
			renewed, err := m.rewriteTicket(ctx, a, mine, ttl)
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
		if !wait {
			// A ticket before ours was taken just before we joined.
			return giveUp(nil)
		}
		if head == nil {
			watch.next = min(m.opts.minBackoff, watch.poll)
		} else {
			if err := m.watchTurn(ctx, &watch, head, place.read); err != nil {
				if err := retry(err); err != nil {
					return giveUp(err)
				}
				continue
			}
			m.log.Debug("objsync: waiting in the queue", "ticket", n, "head", head.obj.Fence, "ahead", ahead, "next_poll", watch.next)
		}
		if err := watch.wait(ctx, head, ahead); err != nil {
			return giveUp(m.ctxErr(err))
		}
	}
}

// rewriteTicket writes our ticket again with the caller's TTL, conditional
// on its version and paced as its slot requires, and returns it as
// written; nil if it was abandoned meanwhile. After an
// answer that was lost, it reads the ticket back to settle it.
func (m *Mutex) rewriteTicket(ctx context.Context, a *attempt, mine *snapshot, ttl time.Duration) (*snapshot, error) {
	n := mine.obj.Fence
	for {
		if mine.obj.State != stateHeld {
			return nil, nil
		}
		if err := m.paceSlot(ctx, mine); err != nil {
			return nil, m.ctxErr(err)
		}
		now := time.Now()
		obj := mine.obj
		obj.Seq, obj.TTLMillis, obj.WrittenAt = a.next(now), ttl.Milliseconds(), now.UTC()
		v, err := m.write(ctx, m.ticketKey(n), obj.encode(), mine.version)
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

// queueWatch is what a waiter knows of the ticket whose turn it is, and
// the pace of its polls.
type queueWatch struct {
	pacer queuePacer
	poll  time.Duration // the longest sleep between polls
	next  time.Duration // until the next poll: 0 after it ended a turn
}

// newWatch starts the watch of a waiter on a lease of ttl, which polls at
// most every half of a plain waiter's longest poll (handoffPoll): its
// lease counts from its last poll that showed its turn not come, and its
// first renewal is due 0.297 of the lease (four longest polls) after, so
// a turn seen half a poll and a slow walk late is still held without a
// write at once.
func (m *Mutex) newWatch(ttl time.Duration) queueWatch {
	return queueWatch{pacer: queuePacer{m: m}, poll: max(m.opts.handoffPoll(ttl)/2, time.Millisecond)}
}

// wait sleeps until the next poll of a waiter with ahead tickets between
// its own and head, paced as a plain lock's waiter at that place.
func (w *queueWatch) wait(ctx context.Context, head *snapshot, ahead int) error {
	switch {
	case w.next == 0:
		return nil
	case head == nil:
		return sleep(ctx, w.next)
	}
	return w.pacer.wait(ctx, queueSpot{head.obj.Holder, ahead}, w.next)
}

// watchTurn watches head, the ticket whose turn it is, as read at the
// given instant (its turn had come by then), and ends its turn if this
// process has seen it unchanged for longer than its TTL: its holder is
// dead, frozen or cut off, and its lease has run out. Only a ticket whose
// turn has come is ended so: waiting tickets are not renewed. Every waiter
// watches the head, whoever is between: they may all be gone. It sets
// w.next to the time until the next poll should come, at most w.poll.
func (m *Mutex) watchTurn(ctx context.Context, w *queueWatch, head *snapshot, read time.Time) error {
	left, err := m.endExpiredTurn(ctx, head, read)
	w.next = min(max(left, 0), w.poll)
	return err
}

// endExpiredTurn ends the turn of head, read at the given instant (its
// turn had come by then), if this process has seen it unchanged for longer
// than its TTL, and returns 0; else the time until it may.
func (m *Mutex) endExpiredTurn(ctx context.Context, head *snapshot, read time.Time) (time.Duration, error) {
	seenAt := m.shared.turnSeen(head, read)
	left := takeoverAfter(head.obj.ttl()) - time.Since(seenAt)
	switch {
	case left > 0 && !head.obj.ended():
		return left, nil
	case left > 0:
		m.log.Info("objsync: ending the turn of a queue ticket whose holder's process has ended", "ticket", head.obj.Fence, "holder", head.obj.Holder, "pid", head.obj.PID)
	default:
		m.log.Info("objsync: ending the turn of a queue ticket unchanged for longer than its ttl", "ticket", head.obj.Fence, "holder", head.obj.Holder, "unchanged", time.Since(seenAt))
	}
	err := m.endTurn(ctx, head, "")
	if err != nil && !errors.Is(err, driver.ErrPrecondition) {
		return 0, fmt.Errorf("objsync: %w", err)
	}
	if err == nil {
		m.shared.sawSettled(head.obj.Fence) // its turn had come
	}
	m.shared.forgetTurn(head) // ended, or it changed
	return 0, nil
}

// endLastTurn is endExpiredTurn on the head as this process last read it,
// with no read: a write conditional on that read's version ends the turn
// only if its holder has not written since, as a fresh read would show.
// Locks that give up soon after they start, again and again, end a dead
// holder's turn so.
func (m *Mutex) endLastTurn(ctx context.Context) error {
	head, since := m.shared.lastTurn()
	if head == nil || time.Since(since) <= takeoverAfter(head.obj.ttl()) && !head.obj.ended() {
		return nil
	}
	_, err := m.endExpiredTurn(ctx, head, since)
	return err
}

// watchHead finds the ticket whose turn it is and watches it with
// watchTurn; it returns the head (nil if there is none) and how many wait
// behind it.
func (m *Mutex) watchHead(ctx context.Context, w *queueWatch) (*snapshot, int, error) {
	head, waiting, _, at, err := m.queueHead(ctx)
	if err != nil || head == nil {
		w.next = min(m.opts.minBackoff, w.poll)
		return nil, 0, err
	}
	return head, waiting, m.watchTurn(ctx, w, head, at)
}

// endTurn writes ticket t abandoned, signed by breaker (empty for a
// waiter), conditional on the version read: the very object its holder
// renews, so that a renewal that lands first makes this fail, and one
// that comes later fails itself.
func (m *Mutex) endTurn(ctx context.Context, t *snapshot, breaker string) error {
	obj := t.obj
	obj.State, obj.Prev, obj.WrittenAt = stateAbandoned, breaker, time.Now().UTC()
	_, err := m.write(ctx, m.ticketKey(t.obj.Fence), obj.encode(), t.version)
	return err
}

// releaseTicket settles ticket n of a with its done slot: state done, or
// left for a ticket given up before its turn. Only a's ticket n writes
// that slot between tickets n-queueSlots and n+queueSlots, so a failed
// condition means a write of ours landed or the slot moved on.
func (m *Mutex) releaseTicket(ctx context.Context, a *attempt, n int64, state string) error {
	b := m.newBackoff()
	key := m.doneKey(n)
	cur := m.lapBefore(key, n) // if nil, read
	var werr error             // the last write's error
	for {
		if cur == nil {
			var err error
			cur, err = m.readDone(ctx, n)
			switch {
			case err != nil:
				return errors.Join(werr, err)
			case cur.exists && cur.obj.Fence >= n:
				m.sawReleased(n, state) // ours landed, whatever its answer said
				return nil
			case werr != nil && !errors.Is(werr, driver.ErrPrecondition) && (ctx.Err() != nil || !driver.IsRetryable(werr)):
				return werr
			case werr != nil && !errors.Is(werr, driver.ErrPrecondition):
				if err := b.wait(ctx, 0); err != nil {
					return fmt.Errorf("objsync: release %s: %w", m.loc, err)
				}
			}
		}
		if err := m.paceSlot(ctx, cur); err != nil {
			return fmt.Errorf("objsync: release %s: %w", m.loc, err)
		}
		now := time.Now()
		obj := lockObject{Format: lockFormat, State: state, Holder: a.id, Fence: n, Seq: a.next(now), AcquiredAt: now.UTC(), WrittenAt: now.UTC()}
		v, err := m.write(ctx, key, obj.encode(), cur.version)
		if err == nil {
			m.shared.sawLapEnd(key, &snapshot{exists: true, version: v, obj: obj})
			m.sawReleased(n, state)
			return nil
		}
		// Settle by reading: even an error that is not transient may
		// follow a write that landed.
		werr, cur = fmt.Errorf("objsync: release %s: %w", m.loc, err), nil
	}
}

// sawReleased records for the process that ticket n settled in state:
// done, whose turn had come, so every ticket up to it has settled; or left.
func (m *Mutex) sawReleased(n int64, state string) {
	if state == stateDone {
		m.shared.sawSettled(n)
	} else {
		m.shared.sawLeft(n)
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
	if err := m.releaseTicket(ctx, h.a, h.fence, stateDone); err != nil {
		return err
	}
	m.sawReleasedTicket(t)
	return nil
}

// sawReleasedTicket records t, a ticket of this process as read before
// its release, as the state its slot keeps until the next lap: nothing
// writes a ticket settled, but a waiter that ends its turn late, from an
// older read of the same state (the next lap's write then fails its
// condition, and reads).
func (m *Mutex) sawReleasedTicket(t *snapshot) {
	m.shared.sawLapEnd(m.ticketKey(t.obj.Fence), t)
}

// leaveQueue settles the ticket of an acquisition that is being given up,
// if one of its joins landed, so that those behind it need not wait for
// it to be ended after its TTL. Bounded as abandon is; ctx, the context of
// the call that gives up, only carries its values (a span).
func (m *Mutex) leaveQueue(ctx context.Context, a *attempt) {
	if a.ticket == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), abandonWithin)
	defer cancel()
	t, _, err := m.readTicket(ctx, a.ticket)
	if err != nil || !has(t, a.ticket) || !a.owns(t) {
		return
	}
	if err := m.releaseTicket(ctx, a, a.ticket, stateLeft); err != nil {
		m.log.Warn("objsync: could not leave the queue; the ticket's turn ends after its ttl", "ticket", a.ticket, "err", err)
		return
	}
	m.sawReleasedTicket(t)
}

// queueHead finds the ticket whose turn it is, as read, with the number
// of tickets waiting behind it, the last ticket taken, and when the walk
// that showed its turn come ended (its turn may have come just before);
// head is nil if every ticket has settled, or if the walk found none
// whose turn had surely come.
func (m *Mutex) queueHead(ctx context.Context) (head *snapshot, waiting int, tail int64, read time.Time, err error) {
	tail, _, err = m.findTail(ctx, false, nil)
	if err != nil {
		return nil, 0, 0, read, err
	}
	// From the back: it reads every ticket waiting, to count them.
	place, err := m.placeFromBack(ctx, tail+1)
	return place.head, place.ahead, tail, place.read, err
}

// inspectQueue is Inspect for a queue lock: the ticket whose turn it is,
// as its holder, and how many wait behind it.
func (m *Mutex) inspectQueue(ctx context.Context) (State, error) {
	marker, _, err := m.readKey(ctx, m.key, decodeMarker)
	if err != nil || !marker.exists {
		return State{}, err
	}
	head, waiting, tail, read, err := m.queueHead(ctx)
	if err != nil {
		return State{}, err
	}
	if head == nil {
		last, err := m.lastHolder(ctx, tail)
		if err != nil || last == nil {
			return State{Exists: true, Fence: tail}, err
		}
		return ticketState(last, false), nil
	}
	st := ticketState(head, true)
	st.Waiters, st.Unchanged = waiting, time.Since(m.shared.turnSeen(head, read))
	return st, nil
}

// ticketState is what Inspect says of ticket t: the holder's, if held,
// else the last holder's.
func ticketState(t *snapshot, held bool) State {
	o := t.obj
	return State{
		Exists: true, Held: held, Holder: o.Holder, Value: o.Value, Fence: o.Fence,
		TTL: o.ttl(), Host: o.Host, PID: o.PID, AcquiredAt: o.AcquiredAt, RenewedAt: o.WrittenAt,
		HolderGone: held && o.ended(), HolderRunning: held && o.running(),
	}
}

// lastHolder returns the last ticket up to tail, every one of which has
// settled, whose turn came: walking back over tickets that left before
// their turn, to one released or abandoned. Nil if none of the last
// queueSlots did, or its slot holds a later ticket.
func (m *Mutex) lastHolder(ctx context.Context, tail int64) (*snapshot, error) {
	for k := tail; k >= 1 && k > tail-queueSlots; k-- {
		done, err := m.readDone(ctx, k)
		if err != nil {
			return nil, err
		}
		if has(done, k) && done.obj.State == stateLeft {
			continue
		}
		t, _, err := m.readTicket(ctx, k)
		if err != nil || !has(t, k) {
			return nil, err
		}
		return t, nil
	}
	return nil, nil
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
	breaker := newAttempt(m.proc).id
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
