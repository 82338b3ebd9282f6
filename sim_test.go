package objsync_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/internal/faults"
	"github.com/objsync/objsync/mem"
)

// The simulation runs the real Mutex on the mem store, in virtual time
// (testing/synctest), with many contenders, random TTLs, holds and
// give-ups, and faults drawn from a seed; a checker fails any schedule in
// which two holds overlap, fences do not increase, or the lock stays
// stuck after the faults stop, and synctest fails one that leaks a
// goroutine. OBJSYNC_SIM_SCHEDULES sets how many schedules run,
// OBJSYNC_SIM_TIME (a duration, for make chaos) runs schedules until it
// has passed instead, and OBJSYNC_SIM_SEED sets the first seed: a failure
// prints its seed, and OBJSYNC_SIM_SEED=that with OBJSYNC_SIM_SCHEDULES=1
// runs it again.
func TestSimulation(t *testing.T) {
	schedules := envInt(t, "OBJSYNC_SIM_SCHEDULES", 100)
	first := uint64(envInt(t, "OBJSYNC_SIM_SEED", int(time.Now().UnixNano()%1e9)))
	var runFor time.Duration
	if s := os.Getenv("OBJSYNC_SIM_TIME"); s != "" {
		var err error
		if runFor, err = time.ParseDuration(s); err != nil {
			t.Fatalf("OBJSYNC_SIM_TIME=%q: %v", s, err)
		}
	}
	began := time.Now()
	var total simStats
	n := 0
	for seed := first; ; seed++ {
		if runFor > 0 && time.Since(began) >= runFor || runFor == 0 && n == schedules {
			break
		}
		var st simStats
		var failure string
		synctest.Test(t, func(t *testing.T) { st, failure = simulate(seed) })
		if failure != "" {
			t.Fatalf("schedule %d: %s\nreplay: OBJSYNC_SIM_SEED=%d OBJSYNC_SIM_SCHEDULES=1 go test -run TestSimulation .", seed, failure, seed)
		}
		total.add(st)
		n++
	}
	line := fmt.Sprintf("chaos: sim: %d schedules (seeds %d to %d), %d acquisitions, %d faults, 0 violations", n, first, first+uint64(n)-1, total.holds, total.faults)
	if runFor > 0 {
		fmt.Println(line) // make chaos reports it
	} else {
		t.Log(line)
	}
}

func envInt(t *testing.T, name string, def int) int {
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		t.Fatalf("%s=%q: want a number", name, s)
	}
	return n
}

type simStats struct{ holds, faults int64 }

func (s *simStats) add(o simStats) { s.holds += o.holds; s.faults += o.faults }

// simHold is one hold as a contender saw it: from Lock returning to the
// earlier of its Unlock (or Close) and its Done closing.
type simHold struct {
	who        int
	fence      int64
	start, end time.Time
}

// simulate runs one schedule and returns what it did, and a description
// of the first violation, if any.
func simulate(seed uint64) (simStats, string) {
	rng := rand.New(rand.NewPCG(seed, 1))
	base := mem.Namespace(fmt.Sprintf("sim-%d", seed))
	base.Reset()
	defer base.Reset()
	if rng.IntN(4) == 0 {
		base.SetWriteInterval(time.Duration(rng.IntN(100)) * time.Millisecond) // GCS, R2
	}
	ttls := []time.Duration{objsync.MinTTL, 200 * time.Millisecond, 500 * time.Millisecond, time.Second, 3 * time.Second}
	// Every third schedule runs queue locks (WithQueue).
	var kind []objsync.Option
	if seed%3 == 0 {
		kind = append(kind, objsync.WithQueue())
	}
	const contenders, runFor = 16, 10 * time.Second
	const maxBackoff = 200 * time.Millisecond
	start := time.Now()

	var (
		mu     sync.Mutex
		holds  []simHold
		stores []*faults.Store
		wg     sync.WaitGroup
	)
	for i := range contenders {
		// Each contender is a process with its own faults, from gentle
		// to a store slower than the shortest lease.
		cfg := faults.Config{
			Latency:       time.Duration(rng.IntN(40)) * time.Millisecond,
			AnswerDelay:   time.Duration(rng.IntN(3)*rng.IntN(150)) * time.Millisecond,
			Fail:          rng.Float64() * 0.1,
			Ambiguous:     rng.Float64() * 0.1,
			Late:          rng.Float64() * 0.05,
			LateBy:        time.Duration(rng.IntN(4000)) * time.Millisecond,
			IgnoreContext: rng.Float64() * 0.3,
		}
		fs := faults.New(base, fmt.Sprint("p", i), seed<<8|uint64(i), cfg)
		stores = append(stores, fs)
		crng := rand.New(rand.NewPCG(seed, uint64(i)+2))
		wg.Go(func() {
			upTo := func(d time.Duration) time.Duration { return time.Duration(crng.Int64N(int64(d) + 1)) }
			newMutex := func() *objsync.Mutex {
				opts := append([]objsync.Option{objsync.WithBackoff(time.Millisecond+upTo(20*time.Millisecond), maxBackoff)}, kind...)
				if crng.IntN(5) == 0 {
					opts = append(opts, objsync.WithoutRenewal())
				}
				if len(kind) == 0 && crng.IntN(2) == 0 {
					opts = append(opts, objsync.WithStoreClock()) // mem's clock is this one
				}
				return objsync.NewMutex(fs, "lock", opts...)
			}
			m := newMutex()
			for time.Since(start) < runFor {
				ttl := ttls[crng.IntN(len(ttls))]
				var fence int64
				var err error
				if crng.IntN(4) == 0 {
					var ok bool
					if ok, fence, err = m.TryLock(context.Background(), ttl); !ok && err == nil {
						err = objsync.ErrNotHeld
					}
				} else {
					ctx, cancel := context.WithTimeout(context.Background(), upTo(3*ttl))
					fence, err = m.Lock(ctx, ttl)
					cancel()
				}
				if err != nil {
					time.Sleep(upTo(50 * time.Millisecond))
					continue
				}
				h := simHold{who: i, fence: fence, start: time.Now()}
				holdFor := upTo(ttl / 2)
				if crng.IntN(3) == 0 {
					holdFor = upTo(3 * ttl) // through renewals
				}
				select {
				case <-m.Done():
				case <-time.After(holdFor):
				}
				h.end = time.Now()
				mu.Lock()
				holds = append(holds, h)
				mu.Unlock()
				if crng.IntN(3) == 0 {
					// Slow to let go: a holder that was paused, or whose
					// work ignored Done, unlocks late, perhaps after
					// another took the lock over.
					time.Sleep(upTo(2 * ttl))
				}
				if crng.IntN(5) == 0 {
					m.Close()
					m = newMutex()
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), upTo(ttl))
				m.Unlock(ctx)
				cancel()
			}
			m.Close()
		})
	}
	wg.Wait()
	var st simStats
	for _, fs := range stores {
		fs.Stop()
		fs.Wait()
		st.faults += fs.Injected()
	}
	st.holds = int64(len(holds))
	if v := checkHolds(holds); v != "" {
		return st, v
	}

	// With the faults over and every contender gone, the lock is free, or
	// held by nobody alive and taken over after its TTL.
	base.SetWriteInterval(0)
	m := objsync.NewMutex(base, "lock", kind...)
	defer m.Close()
	limit := ttls[len(ttls)-1]*101/100 + time.Second
	if len(kind) > 0 {
		// Each contender may have left a ticket behind, whose turn
		// ends after its TTL.
		limit *= contenders + 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	if _, err := m.Lock(ctx, time.Minute); err != nil {
		return st, fmt.Sprintf("the lock was stuck for %v after the faults stopped: %v", limit, err)
	}
	return st, ""
}

// checkHolds returns what is wrong with a set of holds: two that overlap,
// or fences that do not increase from one hold to the next.
func checkHolds(holds []simHold) string {
	slices.SortFunc(holds, func(a, b simHold) int { return a.start.Compare(b.start) })
	var longest simHold // of the holds so far, the one that ends last
	for i, h := range holds {
		if i > 0 {
			if h.start.Before(longest.end) {
				return fmt.Sprintf("two holders: contender %d got fence %d at %v while contender %d held fence %d (%v to %v)",
					h.who, h.fence, h.start.Format("15:04:05.000"), longest.who, longest.fence, longest.start.Format("15:04:05.000"), longest.end.Format("15:04:05.000"))
			}
			if prev := holds[i-1]; h.fence <= prev.fence {
				return fmt.Sprintf("fence %d (contender %d) after fence %d (contender %d)", h.fence, h.who, prev.fence, prev.who)
			}
		}
		if i == 0 || h.end.After(longest.end) {
			longest = h
		}
	}
	return ""
}
