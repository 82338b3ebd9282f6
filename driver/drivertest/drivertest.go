// Package drivertest is the conformance suite for objsync drivers, in the
// spirit of gocloud.dev's drivertest: every driver's tests call [Run] with a
// [Harness], and a driver that passes can carry the lock protocol.
//
//	func TestConformance(t *testing.T) {
//		drivertest.Run(t, func(t *testing.T) (driver.Store, string) {
//			return newStoreForTest(t), "conformance/" + t.Name() + "/"
//		})
//	}
package drivertest

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/objsync/objsync/driver"
)

// Harness returns a store to test and a key prefix under which the suite may
// write freely. It is called once per subtest; the prefix must not collide
// with earlier calls against the same store (t.Name() is unique per subtest).
type Harness func(t *testing.T) (store driver.Store, keyPrefix string)

// Option adjusts the suite to what a store can promise.
type Option func(*config)

type config struct {
	contentVersions bool
	racers, rounds  int
}

// ContentVersions declares that the store derives versions from content
// (S3 ETags are MD5 sums), so rewriting identical bytes may return the same
// version. The suite then checks instead that identical rewrites still
// succeed and that any change of content changes the version. The lock
// protocol never writes the same bytes twice, so it is safe on such stores.
func ContentVersions() Option { return func(c *config) { c.contentVersions = true } }

// Racers sets how many goroutines race per round and for how many rounds in
// the race tests (default 32 and 50).
func Racers(goroutines, rounds int) Option {
	return func(c *config) { c.racers, c.rounds = goroutines, rounds }
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness, opts ...Option) {
	cfg := config{racers: 32, rounds: 50}
	for _, o := range opts {
		o(&cfg)
	}
	t.Run("CreateOnly", func(t *testing.T) { testCreateOnly(t, h) })
	t.Run("Replace", func(t *testing.T) { testReplace(t, h) })
	t.Run("NewVersionEveryWrite", func(t *testing.T) { testNewVersionEveryWrite(t, h, cfg) })
	t.Run("RoundTrip", func(t *testing.T) { testRoundTrip(t, h) })
	t.Run("NotExist", func(t *testing.T) { testNotExist(t, h) })
	t.Run("KeysAreIndependent", func(t *testing.T) { testKeysAreIndependent(t, h) })
	t.Run("OddKeys", func(t *testing.T) { testOddKeys(t, h) })
	t.Run("CancelledContext", func(t *testing.T) { testCancelledContext(t, h) })
	t.Run("WriteInterval", func(t *testing.T) { testWriteInterval(t, h) })
	t.Run("Age", func(t *testing.T) { testAge(t, h) })
	t.Run("RaceCreate", func(t *testing.T) { testRace(t, h, cfg, false) })
	t.Run("RaceReplace", func(t *testing.T) { testRace(t, h, cfg, true) })
}

func mustWrite(t *testing.T, s driver.Store, key string, data []byte, ifVersion driver.Version) driver.Version {
	t.Helper()
	v, err := s.Write(context.Background(), key, data, ifVersion)
	if err != nil {
		t.Fatalf("Write(%q, if %q): %v", key, ifVersion, err)
	}
	if v == "" {
		t.Fatalf("Write(%q) returned an empty version", key)
	}
	return v
}

// expectObject checks that key holds exactly data at version want (any
// version when want is empty).
func expectObject(t *testing.T, s driver.Store, key string, data []byte, want driver.Version) {
	t.Helper()
	got, v, err := s.Read(context.Background(), key)
	if err != nil {
		t.Fatalf("Read(%q): %v", key, err)
	}
	if !bytes.Equal(got, data) {
		t.Fatalf("Read(%q) = %q, want %q", key, abbrev(got), abbrev(data))
	}
	if want != "" && v != want {
		t.Fatalf("Read(%q) version = %q, want %q", key, v, want)
	}
}

func abbrev(b []byte) string {
	if len(b) > 64 {
		return fmt.Sprintf("%s... (%d bytes)", b[:64], len(b))
	}
	return string(b)
}

func expectPrecondition(t *testing.T, err error, what string) {
	t.Helper()
	if !errors.Is(err, driver.ErrPrecondition) {
		t.Fatalf("%s: err = %v, want ErrPrecondition", what, err)
	}
}

func testCreateOnly(t *testing.T, h Harness) {
	s, p := h(t)
	key := p + "create"
	v1 := mustWrite(t, s, key, []byte("first"), "")
	expectObject(t, s, key, []byte("first"), v1)

	_, err := s.Write(context.Background(), key, []byte("second"), "")
	expectPrecondition(t, err, "create-only write on a present key")
	expectObject(t, s, key, []byte("first"), v1)
}

func testReplace(t *testing.T, h Harness) {
	s, p := h(t)
	key := p + "replace"
	v1 := mustWrite(t, s, key, []byte("one"), "")
	v2 := mustWrite(t, s, key, []byte("two"), v1)
	if v2 == v1 {
		t.Fatalf("replace kept version %q", v1)
	}
	expectObject(t, s, key, []byte("two"), v2)

	_, err := s.Write(context.Background(), key, []byte("stale"), v1)
	expectPrecondition(t, err, "replace with a stale version")
	expectObject(t, s, key, []byte("two"), v2)

	_, err = s.Write(context.Background(), p+"replace-absent", []byte("x"), v2)
	expectPrecondition(t, err, "replace on an absent key")
	if _, _, err := s.Read(context.Background(), p+"replace-absent"); !errors.Is(err, driver.ErrNotExist) {
		t.Fatalf("a failed replace created the object: Read err = %v", err)
	}
}

// testWriteInterval: the store accepts writes to one object as often as
// it says (driver.WriteLimiter; once a second if it does not say), with no
// rate-limit answer: queue locks write that often.
func testWriteInterval(t *testing.T, h Harness) {
	s, p := h(t)
	key := p + "interval"
	interval := driver.WriteInterval(s)
	v := mustWrite(t, s, key, []byte("0"), "")
	for i := 1; i <= 4; i++ {
		time.Sleep(interval)
		v = mustWrite(t, s, key, []byte(fmt.Sprint(i)), v)
	}
}

// testAge: a store that tells an object's age (driver.AgeReader) returns
// with it what Read returns, and an age that is never more than the time
// since the write was sent (it is a lower bound), and at least a second
// once more than three seconds have passed since the write was answered
// (S3 drivers take two off for the resolution of the store's times).
func testAge(t *testing.T, h Harness) {
	s, p := h(t)
	ages, ok := s.(driver.AgeReader)
	if !ok {
		t.Skip("the store does not implement driver.AgeReader, which is optional")
	}
	ctx := context.Background()
	key := p + "age"
	if _, _, _, err := ages.ReadAge(ctx, key); !errors.Is(err, driver.ErrNotExist) {
		t.Fatalf("ReadAge of a missing object: err = %v, want ErrNotExist", err)
	}
	data := randomBytes(t, 64)
	sent := time.Now()
	v := mustWrite(t, s, key, data, "")
	check := func(least time.Duration) {
		t.Helper()
		got, gotV, age, err := ages.ReadAge(ctx, key)
		since := time.Since(sent)
		switch {
		case err != nil:
			t.Fatalf("ReadAge: %v", err)
		case !bytes.Equal(got, data) || gotV != v:
			t.Fatalf("ReadAge = %q, version %q; want %q, version %q", abbrev(got), gotV, abbrev(data), v)
		case age < 0 || age > since+since/100:
			t.Fatalf("ReadAge says the object is %v old, %v after its write was sent: more than it can be", age, since)
		case age < least:
			t.Fatalf("ReadAge says the object is %v old, %v after its write was sent; want at least %v", age, since, least)
		}
	}
	check(0)
	time.Sleep(3100 * time.Millisecond)
	check(time.Second)
}

func testNewVersionEveryWrite(t *testing.T, h Harness, cfg config) {
	s, p := h(t)
	key := p + "versions"
	data := []byte("same bytes every time")
	seen := map[driver.Version]bool{}
	v := mustWrite(t, s, key, data, "")
	seen[v] = true
	for i := range 5 {
		next := mustWrite(t, s, key, data, v)
		if !cfg.contentVersions && seen[next] {
			t.Fatalf("rewrite %d of identical content returned version %q again", i, next)
		}
		v = next
		seen[v] = true
	}
	expectObject(t, s, key, data, v)

	// Whatever the store's kind of version, new content means a new version
	// and the old one stops matching.
	changed := mustWrite(t, s, key, []byte("other bytes"), v)
	if seen[changed] {
		t.Fatalf("changed content returned an earlier version %q", changed)
	}
	_, err := s.Write(context.Background(), key, data, v)
	expectPrecondition(t, err, "write with the version before a content change")
}

func randomBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func testRoundTrip(t *testing.T, h Harness) {
	s, p := h(t)
	every := make([]byte, 512)
	for i := range every {
		every[i] = byte(i)
	}
	cases := map[string][]byte{
		"empty":  {},
		"binary": every,
		"1MiB":   randomBytes(t, 1<<20),
		"text":   []byte("{\"json\": true}\n\r\n"),
	}
	for name, data := range cases {
		t.Run(name, func(t *testing.T) {
			key := p + name
			v := mustWrite(t, s, key, data, "")
			expectObject(t, s, key, data, v)
			// And through a replace, in case the two paths differ.
			rev := bytes.Clone(data)
			for i, j := 0, len(rev)-1; i < j; i, j = i+1, j-1 {
				rev[i], rev[j] = rev[j], rev[i]
			}
			rev = append(rev, 0)
			v2 := mustWrite(t, s, key, rev, v)
			expectObject(t, s, key, rev, v2)
		})
	}
}

func testNotExist(t *testing.T, h Harness) {
	s, p := h(t)
	_, _, err := s.Read(context.Background(), p+"never-written")
	if !errors.Is(err, driver.ErrNotExist) {
		t.Fatalf("Read of an absent key: err = %v, want ErrNotExist", err)
	}
	if errors.Is(err, driver.ErrPrecondition) || driver.IsRetryable(err) {
		t.Fatalf("Read of an absent key: err = %v is also marked as something else", err)
	}
}

func testKeysAreIndependent(t *testing.T, h Harness) {
	s, p := h(t)
	a, b := p+"dir/a", p+"dir/b"
	va := mustWrite(t, s, a, []byte("a"), "")
	vb := mustWrite(t, s, b, []byte("b"), "")
	mustWrite(t, s, a, []byte("a2"), va)
	expectObject(t, s, b, []byte("b"), vb)
	_, err := s.Write(context.Background(), b, []byte("x"), va)
	expectPrecondition(t, err, "replace with another key's version")
}

func testOddKeys(t *testing.T, h Harness) {
	s, p := h(t)
	for _, name := range []string{
		"with/slashes/deep/down",
		"with spaces and + plus",
		"ünïcødé/ключ/鍵",
		"percent%20and?query=1&x#frag",
		"dots.and-dashes_and~tilde",
	} {
		key := p + name
		data := []byte("content of " + name)
		v := mustWrite(t, s, key, data, "")
		expectObject(t, s, key, data, v)
		if loc := s.Location(key); loc == "" {
			t.Fatalf("Location(%q) is empty", key)
		}
	}
}

func testCancelledContext(t *testing.T, h Harness) {
	s, p := h(t)
	key := p + "cancelled"
	v := mustWrite(t, s, key, []byte("kept"), "")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, _, err := s.Read(ctx, key); !errors.Is(err, context.Canceled) {
		t.Fatalf("Read with a cancelled context: err = %v, want context.Canceled", err)
	}
	if _, err := s.Write(ctx, key, []byte("lost"), v); !errors.Is(err, context.Canceled) {
		t.Fatalf("Write with a cancelled context: err = %v, want context.Canceled", err)
	}
	if _, err := s.Write(ctx, p+"cancelled-new", []byte("lost"), ""); !errors.Is(err, context.Canceled) {
		t.Fatalf("create with a cancelled context: err = %v, want context.Canceled", err)
	}
	expectObject(t, s, key, []byte("kept"), v)
}

// testRace has cfg.racers goroutines write one key at once, each with its
// own content, cfg.rounds times. Exactly one must win each round, the others
// must get ErrPrecondition, and the object must hold the winner's bytes.
func testRace(t *testing.T, h Harness, cfg config, replace bool) {
	s, p := h(t)
	for round := range cfg.rounds {
		key := fmt.Sprintf("%srace-%d", p, round)
		var base driver.Version
		if replace {
			base = mustWrite(t, s, key, []byte("base"), "")
		}
		var (
			start   = make(chan struct{})
			wg      sync.WaitGroup
			mu      sync.Mutex
			winners []int
			errs    []error
		)
		for g := range cfg.racers {
			wg.Go(func() {
				<-start
				_, err := s.Write(context.Background(), key, fmt.Appendf(nil, "racer %d", g), base)
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					winners = append(winners, g)
				case !errors.Is(err, driver.ErrPrecondition):
					errs = append(errs, err)
				}
			})
		}
		close(start)
		wg.Wait()
		if len(errs) > 0 {
			t.Fatalf("round %d: %d racers failed other than by precondition, first: %v", round, len(errs), errs[0])
		}
		if len(winners) != 1 {
			t.Fatalf("round %d: %d winners %v, want exactly 1", round, len(winners), winners)
		}
		expectObject(t, s, key, fmt.Appendf(nil, "racer %d", winners[0]), "")
	}
}
