// Package countstore counts the requests that a driver.Store serves, by
// kind and outcome, so that what locks cost can be measured on any driver
// without the driver's help: objsync bench reports requests per hold with
// it, and metrics can be exported from the same counters.
package countstore

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"github.com/objsync/objsync/driver"
)

// Counts are the requests a Store passed on, by outcome. The kinds do not
// overlap: Total is their sum.
type Counts struct {
	Reads         int64 // reads answered: with the object, or that it does not exist
	Writes        int64 // writes that succeeded
	Preconditions int64 // writes refused because their condition failed
	ReadErrors    int64 // reads that failed otherwise
	WriteErrors   int64 // writes that failed otherwise: their outcome is unknown
}

// Total is the number of requests of every kind.
func (c Counts) Total() int64 {
	return c.Reads + c.Writes + c.Preconditions + c.ReadErrors + c.WriteErrors
}

// Errors is the number of requests that failed other than by a failed
// condition.
func (c Counts) Errors() int64 { return c.ReadErrors + c.WriteErrors }

// ReadRequests is the number of read requests sent, whatever their
// outcome: what a store bills at its GET price.
func (c Counts) ReadRequests() int64 { return c.Reads + c.ReadErrors }

// WriteRequests is the number of write requests sent, whatever their
// outcome: what a store bills at its PUT price, refused ones included.
func (c Counts) WriteRequests() int64 { return c.Writes + c.Preconditions + c.WriteErrors }

// Add returns the sum of c and d, kind by kind.
func (c Counts) Add(d Counts) Counts {
	return Counts{c.Reads + d.Reads, c.Writes + d.Writes, c.Preconditions + d.Preconditions,
		c.ReadErrors + d.ReadErrors, c.WriteErrors + d.WriteErrors}
}

// Sub returns c less d, kind by kind: the requests made between two
// snapshots.
func (c Counts) Sub(d Counts) Counts {
	return Counts{c.Reads - d.Reads, c.Writes - d.Writes, c.Preconditions - d.Preconditions,
		c.ReadErrors - d.ReadErrors, c.WriteErrors - d.WriteErrors}
}

// Store is a driver.Store that counts the requests it passes on to the
// store it wraps. It is safe for concurrent use. It has no Delete, which
// the lock protocol never uses: delete through the wrapped store.
//
// Mutexes share their view of a lock only when their Store values are
// equal: give the Mutexes of one process one Store, not one each.
type Store struct {
	store                                                 driver.Store
	reads, writes, preconditions, readErrors, writeErrors atomic.Int64
}

// New returns a Store counting the requests passed on to s.
func New(s driver.Store) *Store { return &Store{store: s} }

// Read implements driver.Store.
func (s *Store) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	data, v, err := s.store.Read(ctx, key)
	if err == nil || errors.Is(err, driver.ErrNotExist) {
		s.reads.Add(1)
	} else {
		s.readErrors.Add(1)
	}
	return data, v, err
}

// Write implements driver.Store.
func (s *Store) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	v, err := s.store.Write(ctx, key, data, ifVersion)
	switch {
	case err == nil:
		s.writes.Add(1)
	case errors.Is(err, driver.ErrPrecondition):
		s.preconditions.Add(1)
	default:
		s.writeErrors.Add(1)
	}
	return v, err
}

// Location implements driver.Store: that of the wrapped store.
func (s *Store) Location(key string) string { return s.store.Location(key) }

// WriteInterval is the store's (see driver.WriteLimiter).
func (s *Store) WriteInterval() time.Duration { return driver.WriteInterval(s.store) }

// Counts returns the requests counted so far. Each counter is read
// atomically, but not all at once: a snapshot taken while requests are
// under way may count a request whose neighbour it misses.
func (s *Store) Counts() Counts {
	return Counts{
		Reads: s.reads.Load(), Writes: s.writes.Load(), Preconditions: s.preconditions.Load(),
		ReadErrors: s.readErrors.Load(), WriteErrors: s.writeErrors.Load(),
	}
}
