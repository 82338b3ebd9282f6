// Package faults wraps any driver.Store with faults drawn from a seeded
// random source, for tests that try to break the lock protocol: latency,
// transient failures, writes applied and then answered with an error,
// writes that land long after the caller was told they failed, answers
// that come late (a read's answer showing the state from when it was
// sent, after writes that were answered meanwhile), and calls that ignore
// their context. Faults live here, around the store, never in the
// protocol.
package faults

import (
	"context"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/objsync/objsync/driver"
)

// ErrInjected is the error of an injected failure, marked retryable.
var ErrInjected = errors.New("faults: injected failure")

// Config says how often each fault happens, as a probability per request,
// and how long the delays are at most (each delay is drawn uniformly up
// to its bound).
type Config struct {
	// Latency delays every request before it reaches the store.
	Latency time.Duration
	// AnswerDelay delays answers after the store has served the request:
	// a write that was applied, or a read of an older state, is answered
	// late. Read answers then show the state from when the read was served.
	AnswerDelay time.Duration
	// Fail fails a request without it reaching the store.
	Fail float64
	// Ambiguous applies a write and then fails it: its answer was lost.
	Ambiguous float64
	// Late fails a write at once and applies it up to LateBy later, as a
	// request that a network held back.
	Late   float64
	LateBy time.Duration
	// IgnoreContext makes a request's delays ignore its context, as an
	// fsync or an SDK-internal retry does.
	IgnoreContext float64
}

// Store is a driver.Store with faults. Each Store is one simulated process:
// its Location is its own, so Mutexes on different Stores share nothing.
type Store struct {
	store driver.Store
	name  string
	cfg   Config

	mu  sync.Mutex
	rng *rand.Rand
	off atomic.Bool

	late     sync.WaitGroup
	injected atomic.Int64
}

// New wraps store as the process called name, drawing faults with seed.
func New(store driver.Store, name string, seed uint64, cfg Config) *Store {
	return &Store{store: store, name: name, cfg: cfg, rng: rand.New(rand.NewPCG(seed, 0x6f626a73796e63))}
}

// Location implements driver.Store.
func (s *Store) Location(key string) string { return s.store.Location(key) + "#" + s.name }

// WriteInterval is the store's (see driver.WriteLimiter).
func (s *Store) WriteInterval() time.Duration { return driver.WriteInterval(s.store) }

// Stop ends the faults: later requests go straight to the store.
func (s *Store) Stop() { s.off.Store(true) }

// Wait waits for the late writes to land (or fail their condition).
func (s *Store) Wait() { s.late.Wait() }

// Injected returns how many faults were injected.
func (s *Store) Injected() int64 { return s.injected.Load() }

// draw is one request's fate.
type draw struct {
	latency, answer, lateBy time.Duration
	fail, ambiguous, late   bool
	ignoreCtx               bool
}

func (s *Store) draw(write bool) draw {
	if s.off.Load() {
		return draw{}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	upTo := func(d time.Duration) time.Duration {
		if d <= 0 {
			return 0
		}
		return time.Duration(s.rng.Int64N(int64(d) + 1))
	}
	chance := func(p float64) bool { return p > 0 && s.rng.Float64() < p }
	d := draw{
		latency: upTo(s.cfg.Latency), answer: upTo(s.cfg.AnswerDelay),
		fail: chance(s.cfg.Fail), ignoreCtx: chance(s.cfg.IgnoreContext),
	}
	if write && !d.fail {
		d.ambiguous = chance(s.cfg.Ambiguous)
		if d.late = chance(s.cfg.Late); d.late {
			d.lateBy = upTo(s.cfg.LateBy)
		}
	}
	if d.fail || d.ambiguous || d.late || d.answer > 0 || d.ignoreCtx {
		s.injected.Add(1)
	}
	return d
}

// wait sleeps for d, or until ctx ends unless the draw ignores it.
func (d draw) wait(ctx context.Context, dur time.Duration) error {
	if dur <= 0 {
		return nil
	}
	if d.ignoreCtx {
		time.Sleep(dur)
		return nil
	}
	t := time.NewTimer(dur)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Read implements driver.Store.
func (s *Store) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	data, v, _, err := s.ReadAge(ctx, key)
	return data, v, err
}

// ReadAge implements driver.AgeReader with the wrapped store's, with the
// same faults as Read; the age is 0 if that store tells none. An answer
// that comes late says the age the object had when the store answered.
func (s *Store) ReadAge(ctx context.Context, key string) ([]byte, driver.Version, time.Duration, error) {
	d := s.draw(false)
	if err := d.wait(ctx, d.latency); err != nil {
		return nil, "", 0, err
	}
	if d.fail {
		return nil, "", 0, driver.Retryable(ErrInjected)
	}
	var data []byte
	var v driver.Version
	var age time.Duration
	var err error
	if ages, ok := s.store.(driver.AgeReader); ok {
		data, v, age, err = ages.ReadAge(ctx, key)
	} else {
		data, v, err = s.store.Read(ctx, key)
	}
	if werr := d.wait(ctx, d.answer); werr != nil {
		return nil, "", 0, werr
	}
	return data, v, age, err
}

// Write implements driver.Store.
func (s *Store) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	d := s.draw(true)
	if err := d.wait(ctx, d.latency); err != nil {
		return "", err
	}
	switch {
	case d.fail:
		return "", driver.Retryable(ErrInjected)
	case d.late:
		s.late.Go(func() {
			time.Sleep(d.lateBy)
			s.store.Write(context.Background(), key, data, ifVersion)
		})
		return "", driver.Retryable(ErrInjected)
	}
	v, err := s.store.Write(ctx, key, data, ifVersion)
	if werr := d.wait(ctx, d.answer); werr != nil && err == nil {
		return "", werr // applied, but the caller gave up on the answer
	}
	if d.ambiguous && err == nil {
		return "", driver.Retryable(ErrInjected)
	}
	return v, err
}
