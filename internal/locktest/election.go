package locktest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
)

// electionTTL keeps the suite's takeovers short, yet leaves a renewal the
// third of a second it may need on a real server under the load of CI
// (300ms, with renewals that had to be answered within 267ms, failed there).
const electionTTL = time.Second

// RunElection runs the election suite.
func RunElection(t *testing.T, h Harness) {
	for _, tc := range []struct {
		name string
		test func(*testing.T, driver.Store, string)
	}{
		{"CampaignProclaimResign", testCampaignProclaimResign},
		{"DeadLeaderReplaced", testDeadLeaderReplaced},
		{"Observe", testObserve},
		{"Watch", testWatch},
		{"LeaderStopsRenewing", testLeaderStopsRenewing},
		{"RunEndsWithLeadership", testRunEndsWithLeadership},
		{"OneLeaderAmongFive", testOneLeaderAmongFive},
		{"WatchWaitsForHandedLeader", testWatchWaitsForHandedLeader},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, key := h(t)
			tc.test(t, s, key)
		})
	}
}

// candidate is one process's part in an election.
type candidate struct {
	*objsync.Election
	m *objsync.Mutex
	c *client
}

// newCandidate returns a candidate on its own client.
func newCandidate(t *testing.T, s driver.Store, key, name string) candidate {
	c := newClient(s, name)
	m := open(t, c, key, objsync.WithBackoff(time.Millisecond, 20*time.Millisecond))
	return candidate{objsync.NewElection(m, objsync.WithLeaderTTL(electionTTL)), m, c}
}

func campaignOrFatal(t *testing.T, e candidate, value string) int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fence, err := e.Campaign(ctx, value)
	if err != nil {
		t.Fatalf("Campaign(%q): %v", value, err)
	}
	return fence
}

func leaderOrFatal(t *testing.T, e candidate) objsync.Leader {
	t.Helper()
	l, err := e.Leader(context.Background())
	if err != nil {
		t.Fatalf("Leader: %v", err)
	}
	return l
}

func testCampaignProclaimResign(t *testing.T, s driver.Store, key string) {
	a, b := newCandidate(t, s, key, "a"), newCandidate(t, s, key, "b")
	if _, err := b.Leader(context.Background()); !errors.Is(err, objsync.ErrNoLeader) {
		t.Fatalf("Leader before any campaign: %v", err)
	}
	if err := a.Proclaim(context.Background(), "x"); !errors.Is(err, objsync.ErrNotHeld) {
		t.Fatalf("Proclaim by a follower: %v", err)
	}
	fence := campaignOrFatal(t, a, "a at 10.0.0.1")
	if l := leaderOrFatal(t, b); l.Value != "a at 10.0.0.1" || l.Fence != fence {
		t.Fatalf("Leader = %+v", l)
	}
	if err := a.Proclaim(context.Background(), "a at 10.0.0.2"); err != nil {
		t.Fatal(err)
	}
	if l := leaderOrFatal(t, b); l.Value != "a at 10.0.0.2" || l.Fence != fence {
		t.Fatalf("Leader after Proclaim = %+v", l)
	}
	time.Sleep(electionTTL) // renewals keep the proclaimed value
	if l := leaderOrFatal(t, b); l.Value != "a at 10.0.0.2" {
		t.Fatalf("Leader after renewals = %+v", l)
	}

	elected := make(chan int64)
	go func() { f, _ := b.Campaign(context.Background(), "b"); elected <- f }()
	if err := a.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := <-elected; got != fence+1 {
		t.Fatalf("b's fence = %d, want %d", got, fence+1)
	}
	if l := leaderOrFatal(t, a); l.Value != "b" {
		t.Fatalf("Leader after hand-over = %+v", l)
	}
	if err := b.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Leader(context.Background()); !errors.Is(err, objsync.ErrNoLeader) {
		t.Fatalf("Leader after Resign: %v", err)
	}
}

// testDeadLeaderReplaced cuts the leader off: another candidate leads only
// after the cut-off leader has stopped believing it leads.
func testDeadLeaderReplaced(t *testing.T, s driver.Store, key string) {
	a, b := newCandidate(t, s, key, "a"), newCandidate(t, s, key, "b")
	fenceA := campaignOrFatal(t, a, "a")
	a.c.set(faultCut)
	fenceB := campaignOrFatal(t, b, "b")
	if !isClosed(a.m.Done()) || !errors.Is(a.m.Err(), objsync.ErrLockLost) {
		t.Fatalf("b leads while a still believes it does (a.Err = %v)", a.m.Err())
	}
	if fenceB != fenceA+1 {
		t.Fatalf("fence after takeover = %d, want %d", fenceB, fenceA+1)
	}
	if l := leaderOrFatal(t, b); l.Value != "b" {
		t.Fatalf("Leader = %+v", l)
	}
}

func testObserve(t *testing.T, s driver.Store, key string) {
	a, b := newCandidate(t, s, key, "a"), newCandidate(t, s, key, "b")
	observer := newCandidate(t, s, key, "observer")
	ctx, cancel := context.WithCancel(context.Background())
	changes := observer.Observe(ctx)

	var seen []objsync.Leader
	next := func() {
		t.Helper()
		select {
		case l := <-changes:
			seen = append(seen, l)
		case <-time.After(10 * time.Second):
			t.Fatalf("no change observed after %v", seen)
		}
	}
	campaignOrFatal(t, a, "a")
	next()
	if err := a.Proclaim(context.Background(), "a2"); err != nil {
		t.Fatal(err)
	}
	next()
	elected := make(chan error)
	go func() { _, err := b.Campaign(context.Background(), "b"); elected <- err }()
	if err := a.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-elected; err != nil {
		t.Fatal(err)
	}
	next()
	if err := b.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	cancel()
	for l := range changes { // closed once ctx ends
		seen = append(seen, l)
	}
	var got []string
	for _, l := range seen {
		got = append(got, fmt.Sprintf("%s@%d", l.Value, l.Fence))
	}
	if want := "[a@1 a2@1 b@2]"; fmt.Sprint(got) != want {
		t.Fatalf("observed %v, want %s", got, want)
	}
}

// nextOrFatal returns the next value from ch, a channel of Observe or
// Watch.
func nextOrFatal(t *testing.T, ch <-chan objsync.Leader, what string) objsync.Leader {
	t.Helper()
	select {
	case l, ok := <-ch:
		if ok {
			return l
		}
		t.Fatalf("%s: channel closed", what)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: nothing received in 10s", what)
	}
	return objsync.Leader{}
}

// testWatch: Watch sends every change, the lack of a leader included, as
// the zero Leader.
func testWatch(t *testing.T, s driver.Store, key string) {
	a, b := newCandidate(t, s, key, "a"), newCandidate(t, s, key, "b")
	observer := newCandidate(t, s, key, "observer")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := observer.Watch(ctx)
	want := func(what, value string, fence int64) {
		t.Helper()
		l := nextOrFatal(t, changes, what)
		switch {
		case fence == 0 && l != (objsync.Leader{}):
			t.Fatalf("%s: %+v, want the zero Leader", what, l)
		case fence != 0 && (l.Value != value || l.Fence != fence || l.TTL != electionTTL):
			t.Fatalf("%s: %+v, want %q with fence %d and TTL %v", what, l, value, fence, electionTTL)
		}
	}
	want("at start", "", 0) // before anything else happens, so no race
	campaignOrFatal(t, a, "a")
	want("after a's campaign", "a", 1)
	if err := a.Proclaim(context.Background(), "a2"); err != nil {
		t.Fatal(err)
	}
	want("after a's proclaim", "a2", 1)
	if err := a.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	want("after a resigned", "", 0)
	campaignOrFatal(t, b, "b")
	want("after b's campaign", "b", 2)
	if err := b.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	want("after b resigned", "", 0)
	cancel()
	for l := range changes {
		t.Fatalf("after the last change: %+v", l)
	}
}

// testLeaderStopsRenewing: Leader gives the leader's TTL and how long this
// process has seen it unchanged, which renewals keep short. A process that
// has not read the lock before takes a leader that has just died for a
// leader, as one read cannot tell; it returns ErrNoLeader only once it has
// itself seen the lock unchanged for the TTL plus 1%, and Watch then sends
// the zero Leader.
//
// On a real server under load a renewal can take longer than a 1s lease
// allows; a then loses leadership, rightly, and b rightly sees no leader.
// That run proves nothing about a dead leader, so it is tried again, at
// most three times in all.
func testLeaderStopsRenewing(t *testing.T, s driver.Store, key string) {
	for attempt := 1; !leaderStopsRenewing(t, s, key); attempt++ {
		if attempt == 3 {
			t.Fatalf("the leader lost its lease to slow renewals in all %d attempts", attempt)
		}
	}
}

// leaderStopsRenewing runs testLeaderStopsRenewing once; it returns false
// if a lost leadership on its own before the test cut it off.
func leaderStopsRenewing(t *testing.T, s driver.Store, key string) bool {
	a, b := newCandidate(t, s, key, "a"), newCandidate(t, s, key, "b")
	fence := campaignOrFatal(t, a, "a")
	l := leaderOrFatal(t, b)
	firstRead := time.Now() // after the read returned
	if l.Value != "a" || l.Fence != fence || l.TTL != electionTTL || l.Unchanged < 0 || l.Unchanged >= electionTTL {
		t.Fatalf("Leader = %+v, want a with fence %d, TTL %v and Unchanged below it", l, fence, electionTTL)
	}
	// Unchanged is counted from a read that returned before firstRead: it
	// is shorter than watched only if the leader wrote in between.
	for {
		time.Sleep(electionTTL / 4)
		watched := time.Since(firstRead)
		l, err := b.Leader(context.Background())
		if errors.Is(err, objsync.ErrNoLeader) {
			// b has seen the lock unchanged for longer than the TTL, so
			// a's last renewal was sent longer ago than that, and a must
			// have been told already (the slack is for the scheduler).
			select {
			case <-a.m.Done():
				t.Logf("a lost leadership on its own after %v (%v): renewals too slow for a %v lease", watched, a.m.Err(), electionTTL)
				return false
			case <-time.After(electionTTL / 10):
				t.Fatalf("b sees no leader %v after its first read while a still believes it leads", watched)
			}
		}
		if err != nil {
			t.Fatalf("Leader: %v", err)
		}
		if l.Unchanged < watched {
			break
		}
		if watched > 10*electionTTL {
			t.Fatalf("b never saw a's renewals in %v", watched)
		}
	}

	a.c.set(faultCut) // a dies
	select {
	case <-a.m.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a still believes it leads 10s after it was cut off")
	}
	c := newCandidate(t, s, key, "c") // a process that has not read the lock
	before := time.Now()
	l = leaderOrFatal(t, c)
	afterFirst := time.Now()
	if l.Value != "a" || l.Fence != fence || l.TTL != electionTTL || l.Unchanged > afterFirst.Sub(before) {
		t.Fatalf("a fresh process's first Leader = %+v, want the dead a, unchanged since the read", l)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	changes := c.Watch(ctx)
	l = nextOrFatal(t, changes, "Watch at start")
	// Only a goroutine that started a TTL late may have seen the end.
	late := l == (objsync.Leader{}) && time.Since(before) >= electionTTL+electionTTL/100
	if !late && (l.Value != "a" || l.Fence != fence) {
		t.Fatalf("Watch at start: %+v, want the dead a: one read cannot tell", l)
	}
	for {
		// c counts from its first read, which returned between before
		// and afterFirst.
		watched := time.Since(afterFirst)
		l, err := c.Leader(context.Background())
		elapsed := time.Since(before)
		if errors.Is(err, objsync.ErrNoLeader) {
			if least := electionTTL + electionTTL/100; elapsed < least {
				t.Fatalf("ErrNoLeader %v after c's first read, before it can have seen the lock unchanged for %v", elapsed, least)
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if l.Unchanged < watched {
			t.Fatalf("Leader = %+v: unchanged for less than the %v that c has seen the dead a", l, watched)
		}
		if elapsed > 10*electionTTL {
			t.Fatalf("the dead a is still the leader %v after c's first read", elapsed)
		}
		time.Sleep(electionTTL / 10)
	}
	if !late {
		if l := nextOrFatal(t, changes, "Watch after a died"); l != (objsync.Leader{}) {
			t.Fatalf("Watch after a died: %+v, want the zero Leader", l)
		}
	}
	return true
}

// testRunEndsWithLeadership: Run's function sees its context cancelled
// when leadership is lost, and Run returns its error wrapped with the loss.
func testRunEndsWithLeadership(t *testing.T, s driver.Store, key string) {
	a, b := newCandidate(t, s, key, "a"), newCandidate(t, s, key, "b")
	errFn := errors.New("stopped")
	started := make(chan struct{})
	ran := make(chan error)
	go func() {
		ran <- a.Run(context.Background(), "a", func(ctx context.Context) error {
			close(started)
			<-ctx.Done()
			return errFn
		})
	}()
	<-started
	a.c.set(faultCut)
	err := <-ran
	if !errors.Is(err, errFn) || !errors.Is(err, objsync.ErrLockLost) {
		t.Fatalf("Run = %v, want the function's error and ErrLockLost", err)
	}
	a.c.set(faultNone)
	campaignOrFatal(t, b, "b")
	if err := b.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}

	// A function that returns on its own: Run resigns and returns nil.
	if err := a.Run(context.Background(), "a", func(context.Context) error { return nil }); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if _, err := b.Leader(context.Background()); !errors.Is(err, objsync.ErrNoLeader) {
		t.Fatalf("Run did not resign: Leader err = %v", err)
	}
}

// testOneLeaderAmongFive has five candidates run terms in turn while the
// leader is cut off now and then: at no moment do two of them lead, and
// terms' fences grow.
func testOneLeaderAmongFive(t *testing.T, s driver.Store, key string) {
	const candidates, terms = 5, 15
	var x exclusion
	var mu sync.Mutex
	count := 0
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for i := range candidates {
		e := newCandidate(t, s, key, fmt.Sprint(i))
		wg.Go(func() {
			for ctx.Err() == nil {
				err := e.Run(ctx, fmt.Sprint(i), func(lctx context.Context) error {
					x.enter(e.m.Fence())
					defer x.leave()
					mu.Lock()
					count++
					term := count
					mu.Unlock()
					if term >= terms {
						cancel()
					}
					if term%3 == 0 {
						e.c.set(faultCut) // this leader dies
						<-lctx.Done()
						e.c.set(faultNone)
						return nil
					}
					time.Sleep(10 * time.Millisecond)
					return nil
				})
				switch {
				case err == nil, errors.Is(err, objsync.ErrLockLost), ctx.Err() != nil:
				case errors.Is(err, context.DeadlineExceeded) && strings.Contains(err.Error(), "objsync: resign: "):
					// The resign outlasted the lease (SeaweedFS's
					// contended writes wait about a second for a lock
					// of its filer): the term ends by its TTL instead.
					// Exclusion and progress are what this test checks.
					t.Logf("candidate %d: %v", i, err)
				default:
					x.fail(err)
				}
			}
		})
	}
	wg.Wait()
	if x.err != nil {
		t.Fatal(x.err)
	}
	if len(x.fences) < terms {
		t.Fatalf("%d terms, want at least %d", len(x.fences), terms)
	}
}

// testWatchWaitsForHandedLeader: a candidate handed leadership by the
// leader's resignation has been seen alive only once it writes the lock.
// Frozen in the queue, it is not sent by Watch, and Leader says Handed;
// frozen past the hand-off's short lease (1s), Watch says there is no leader.
// Thawed, its Campaign writes at once (nobody else took the lock) and
// Watch sends it.
func testWatchWaitsForHandedLeader(t *testing.T, s driver.Store, key string) {
	const ttl, frozen = 3 * time.Second, 2500 * time.Millisecond
	withTTL := func(name string) candidate {
		c := newCandidate(t, s, key, name)
		c.Election = objsync.NewElection(c.m, objsync.WithLeaderTTL(ttl))
		return c
	}
	leader := withTTL("leader")
	first := campaignOrFatal(t, leader, "L")
	cand := withTTL("candidate")
	campaigned := make(chan error, 1)
	go func() { _, err := cand.Campaign(context.Background(), "C"); campaigned <- err }()
	WaitWaiters(t, leader.m, 1)
	// Its requests from now on wait out the freeze before they go.
	thawAt := time.Now().Add(frozen)
	cand.c.hang.Store(int64(frozen))
	time.AfterFunc(frozen, func() { cand.c.hang.Store(0) })

	observer := withTTL("observer")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	watch := observer.Watch(ctx)
	if l := <-watch; l.Fence != first {
		t.Fatalf("Watch's first leader: %+v, want fence %d", l, first)
	}
	if err := leader.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
	l, err := observer.Leader(context.Background())
	if err != nil || l.Fence != first+1 || !l.Handed {
		t.Fatalf("Leader after the hand-off = %+v, %v; want fence %d, Handed", l, err, first+1)
	}
	noLeader := false
	for timeout := time.After(10 * time.Second); ; {
		select {
		case l := <-watch:
			if l.Fence == 0 {
				noLeader = true // the hand-off's lease ran out in the freeze
				continue
			}
			if time.Now().Before(thawAt) {
				t.Fatalf("Watch sent %+v, handed leadership by a release, while it was frozen", l)
			}
			if l.Value != "C" || l.Handed || l.Fence != first+1 {
				t.Fatalf("Watch sent %+v, want the candidate (fence %d), seen writing", l, first+1)
			}
		case <-timeout:
			t.Fatal("Watch sent no leader")
		}
		break
	}
	if !noLeader {
		t.Error("Watch did not say there was no leader while the candidate was frozen past its hand-off lease")
	}
	if err := <-campaigned; err != nil {
		t.Fatal(err)
	}
	if err := cand.Resign(context.Background()); err != nil {
		t.Fatal(err)
	}
}
