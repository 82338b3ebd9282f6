package drivertest_test

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/driver/drivertest"
)

// mapStore is a driver's store at its smallest: objects in a map, each
// with a version that no other write of the store has had.
type mapStore struct {
	mu      sync.Mutex
	objects map[string]mapObject
	writes  int
}

type mapObject struct {
	data    []byte
	version driver.Version
}

func newMapStore() *mapStore { return &mapStore{objects: map[string]mapObject{}} }

func (s *mapStore) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	if err := ctx.Err(); err != nil {
		return nil, "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.objects[key]
	if !ok {
		return nil, "", fmt.Errorf("%s: %w", s.Location(key), driver.ErrNotExist)
	}
	return append([]byte(nil), o.data...), o.version, nil
}

// Write is create-only when ifVersion is empty, else conditional on the
// object's version: an absent object has the empty version.
func (s *mapStore) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	if err := ctx.Err(); err != nil {
		return "", err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.objects[key].version != ifVersion {
		return "", fmt.Errorf("%s: %w", s.Location(key), driver.ErrPrecondition)
	}
	s.writes++
	v := driver.Version(strconv.Itoa(s.writes))
	s.objects[key] = mapObject{data: append([]byte(nil), data...), version: v}
	return v, nil
}

func (s *mapStore) Location(key string) string { return "map:///" + key }

// WriteInterval implements driver.WriteLimiter: a map takes any number of
// writes a second (a store that does not say is taken to allow one).
func (s *mapStore) WriteInterval() time.Duration { return 0 }

// conformance is what a driver's tests call: the suite, on a key prefix
// of its own for each subtest. TestMapStoreConformance runs it.
func conformance(t *testing.T, store driver.Store) {
	drivertest.Run(t, func(t *testing.T) (driver.Store, string) {
		return store, "conformance/" + t.Name() + "/"
	})
}

// A store that passes the suite carries the lock protocol: NewMutex takes
// it as it is (Open needs a driver registered with driver.Register, which
// parses DSNs into a store and a key).
func Example() {
	ctx := context.Background()
	mu := objsync.NewMutex(newMapStore(), "locks/nightly")
	defer mu.Close()
	for range 2 {
		fence, err := mu.Lock(ctx, time.Minute)
		if err != nil {
			panic(err)
		}
		fmt.Println("held", mu, "with fence", fence)
		if err := mu.Unlock(ctx); err != nil {
			panic(err)
		}
	}
	// Output:
	// held map:///locks/nightly with fence 1
	// held map:///locks/nightly with fence 2
}
