package objsync

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// ErrNoLeader is returned by Leader when the lock names no leader: it is
// free or was never taken, or this process has itself seen the holder's
// state unchanged for at least the holder's TTL plus 1% (for clock drift),
// so that a campaigning candidate would take it over. A holder that died
// less than that ago, or that this process has not watched for that long,
// is still returned as the leader: see Leader.
var ErrNoLeader = errors.New("objsync: no leader")

// DefaultElectionTTL is the lease of a leader unless WithLeaderTTL says
// otherwise: how long followers wait for a leader that died.
const DefaultElectionTTL = 15 * time.Second

// Election elects one leader among the candidates that campaign on the same
// lock, on top of a Mutex: the leader is the lock's holder, its value the
// holder value, and each term's fencing token tells terms apart.
type Election struct {
	mu  *Mutex
	ttl time.Duration
	// lastTerm is the newest term this Election knows of, for
	// objsync.election.leader.changes: 0 before it first looked, then
	// the term's fence plus one (1: no term yet).
	lastTerm atomic.Int64
}

// An ElectionOption configures an Election.
type ElectionOption func(*Election)

// WithLeaderTTL sets the leader's lease (DefaultElectionTTL by default): a
// leader that stops renewing is replaced after about this long.
func WithLeaderTTL(ttl time.Duration) ElectionOption {
	return func(e *Election) { e.ttl = ttl }
}

// NewElection returns an election held on mu's lock. The Election uses mu
// for its campaigns: do not lock mu yourself.
func NewElection(mu *Mutex, opts ...ElectionOption) *Election {
	e := &Election{mu: mu, ttl: DefaultElectionTTL}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Leader describes the current leader.
type Leader struct {
	// Value is what the leader campaigned or last proclaimed with.
	Value string
	// Fence is the term's fencing token: it grows with every new term.
	Fence int64
	// Since is the wall-clock time at which the term began, by the
	// leader's clock: for people, not for comparisons across hosts.
	Since time.Time
	// Holder is the term's holder id; Host and PID say where it runs.
	Holder string
	Host   string
	PID    int
	// TTL is the leader's lease: a leader that stops renewing is replaced
	// once candidates have seen the lock unchanged for about this long.
	TTL time.Duration
	// Unchanged is how long this process has seen the lock object
	// unchanged, counted on its own monotonic clock from the first read
	// that returned this state, as State.Unchanged. Each write of the
	// leader (its renewals, about every 0.3×TTL, and Proclaim) starts it
	// again at the next read. After a single read it is about 0, whether
	// the leader is alive or died just under a TTL ago: one read cannot
	// tell. Reading again can: an Unchanged shorter than the time since an
	// earlier read returned means the leader wrote the lock in between,
	// so was alive then; a state unchanged for the TTL plus 1% makes
	// Leader return ErrNoLeader. Not so while Handed is true.
	Unchanged time.Duration
	// StoreAge is, for an Election on a Mutex opened WithStoreClock, how
	// long the state has been unchanged by the store's clock, as
	// State.StoreAge: that too ends the term once it exceeds the TTL by 1%.
	StoreAge time.Duration
	// Handed reports that the term was begun by the release of the
	// leader before (see "Waiting in the queue" in the package
	// documentation) and that its leader has not written the lock since:
	// it has not been seen alive. Campaign writes at once after a hand-off,
	// so for a live leader this lasts about one round trip to the store.
	Handed bool
}

// Campaign blocks until this candidate leads, or ctx ends, and returns the
// term's fencing token. While it leads, its lease renews itself; Done and
// Err of the Mutex say when and why leadership ended. A candidate handed
// leadership by the release of the leader before writes the lock once
// before Campaign returns, so that observers see it alive at once.
func (e *Election) Campaign(ctx context.Context, value string) (int64, error) {
	h, err := e.mu.lockTraced(ctx, "objsync.Campaign", e.ttl, value, true, true)
	if err != nil {
		return 0, err
	}
	e.sawTerm(h.fence, true)
	return h.fence, nil
}

// Proclaim changes the leader's value without giving up leadership. It
// returns ErrNotHeld if this candidate does not lead, and an error wrapping
// ErrLockLost if leadership turned out to be lost.
func (e *Election) Proclaim(ctx context.Context, value string) error {
	h := e.mu.current()
	if h == nil {
		return ErrNotHeld
	}
	return h.update(ctx, func(o *lockObject) { o.Value = value })
}

// Resign gives up leadership, so that another candidate can lead within one
// polling interval. Like Unlock, it returns ErrNotHeld if this candidate
// does not lead, and an error wrapping ErrLockLost if it had lost
// leadership already.
func (e *Election) Resign(ctx context.Context) error { return e.mu.Unlock(ctx) }

// Leader reads the lock and returns its holder as the leader, with the
// leader's TTL and how long this process has seen it unchanged. It returns
// ErrNoLeader if the lock is free or was never taken, if this process
// has seen the same state for at least the TTL plus 1% (then the leader
// stopped renewing), or if the leader's process is known to have ended
// (State.HolderGone). Other than that, a leader that died is returned as
// leading until this process has watched it for that long: in a process
// that has not read the lock before, the first call returns a leader that
// died a moment ago on another machine as it would a live one, with
// Unchanged about 0. To know which, call Leader again over a TTL, or use
// Watch; or open the Mutex WithStoreClock, on a store whose clock you
// trust, which tells a leader dead for longer than its TTL at once.
func (e *Election) Leader(ctx context.Context) (Leader, error) {
	cur, err := e.mu.read(ctx)
	if err != nil {
		return Leader{}, err
	}
	return e.leaderOf(cur)
}

func (e *Election) leaderOf(cur *snapshot) (Leader, error) {
	if !cur.exists || !cur.obj.held() {
		return Leader{}, ErrNoLeader
	}
	o := cur.obj
	watched, byStore := e.mu.unchangedBy(cur)
	if max(watched, byStore) >= takeoverAfter(o.ttl()) || o.ended() {
		return Leader{}, ErrNoLeader
	}
	return Leader{
		Value: o.Value, Fence: o.Fence, Since: o.AcquiredAt, Holder: o.Holder, Host: o.Host, PID: o.PID,
		TTL: o.ttl(), Unchanged: watched, StoreAge: byStore, Handed: o.Handed,
	}, nil
}

// Observe returns a channel that receives the leader each time a new one
// is seen (a new term, or a new value proclaimed), in term order, until
// ctx ends; then the channel is closed. It never sends the zero Leader: a
// leader that resigns or dies shows only as the next leader, whenever one
// comes; Watch also says when there is none. It polls the store at the
// Mutex's maximum backoff (1s by default). A reader that falls behind
// receives the latest leader, not every intermediate one: the channel
// holds one value.
func (e *Election) Observe(ctx context.Context) <-chan Leader { return e.observe(ctx, false) }

// Watch is Observe that also reports when there is no leader, as the zero
// Leader (Fence 0): first, if there is none when Watch starts, and then
// each time the lock is freed or the leader is seen to stop renewing, as
// Leader would return ErrNoLeader. Its first value comes from one read,
// and may be a leader that has already died (see Leader); if so, the zero
// Leader follows once this process has seen the lock unchanged for the
// leader's TTL plus 1%. Every later leader it sends wrote the lock while
// Watch was watching, so was alive then. A leader is not sent again when
// it merely renews.
func (e *Election) Watch(ctx context.Context) <-chan Leader { return e.observe(ctx, true) }

// observe polls the lock for Observe and Watch; withNone sends the zero
// Leader when there is no leader.
func (e *Election) observe(ctx context.Context, withNone bool) <-chan Leader {
	ch := make(chan Leader, 1)
	go func() {
		defer close(ch)
		var last Leader // the last value sent
		var top int64   // the highest fence sent: terms go in order
		sent := false
		for {
			cur, err := e.mu.read(ctx)
			if err == nil {
				l, lerr := e.leaderOf(cur)
				var news bool
				switch {
				case lerr != nil:
					news = withNone && (!sent || last.Fence != 0)
				case l.Handed && sent:
					// Not yet seen alive: wait for its first write, which
					// Campaign makes at once.
				case l.Fence > top:
					news = true
				case l.Fence == top:
					// The same term: news if it proclaimed a new value,
					// or if Watch had said it was gone and it renewed
					// after all (a holder back from a suspend).
					news = l.Value != last.Value || last.Fence == 0
				}
				if news {
					last, sent, top = l, true, max(top, l.Fence)
					replace(ch, l)
				}
				e.sawTerm(l.Fence, false) // 0 without a leader
			} else if ctx.Err() == nil {
				e.mu.log.Debug("objsync: observe: read failed", "err", err)
			}
			if sleep(ctx, e.mu.opts.maxBackoff) != nil {
				return
			}
		}
	}()
	return ch
}

// sawTerm records that this Election learnt of the term numbered fence (0:
// none), won by its own Campaign if self, and counts it as a leader change
// if it is new: always when self, else if the Election had looked before.
func (e *Election) sawTerm(fence int64, self bool) {
	for {
		last := e.lastTerm.Load()
		if fence+1 <= last {
			return
		}
		if e.lastTerm.CompareAndSwap(last, fence+1) {
			if fence > 0 && (self || last > 0) {
				e.mu.tel.leaderChange(self)
			}
			return
		}
	}
}

// replace puts v in ch, a channel of capacity one, dropping a value the
// reader has not taken yet. Only one goroutine sends on ch.
func replace(ch chan Leader, v Leader) {
	select {
	case <-ch:
	default:
	}
	ch <- v
}

// Run campaigns with value, then calls fn with a context that is cancelled
// the moment leadership is lost (or ctx ends), resigns when fn returns, and
// returns fn's error. If leadership was lost while fn ran, the error also
// wraps ErrLockLost. If ctx ends before this candidate leads, Run returns
// ctx's error without calling fn.
func (e *Election) Run(ctx context.Context, value string, fn func(ctx context.Context) error) error {
	if _, err := e.Campaign(ctx, value); err != nil {
		return err
	}
	leading, cancel := context.WithCancel(ctx)
	done := e.mu.Done()
	go func() {
		select {
		case <-done:
			cancel()
		case <-leading.Done():
		}
	}()
	err := fn(leading)
	cancel()
	lost := e.mu.Err()
	resignCtx, cancelResign := context.WithTimeout(context.WithoutCancel(ctx), leaseValidity(e.ttl))
	defer cancelResign()
	if rerr := e.Resign(resignCtx); rerr != nil && !errors.Is(rerr, ErrLockLost) {
		err = errors.Join(err, fmt.Errorf("objsync: resign: %w", rerr))
	}
	if errors.Is(lost, ErrLockLost) {
		return errors.Join(lost, err)
	}
	return err
}
