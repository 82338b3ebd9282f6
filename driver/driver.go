// Package driver defines the contract between objsync and an object store,
// and the registry through which stores are chosen by name.
//
// It plays the part that database/sql/driver plays for database/sql: a driver
// package implements [Driver] and [Store], registers itself from init with
// [Register], and knows nothing of the root objsync package. The lock protocol
// lives in the root package, once, and uses only what this package describes.
//
// The contract is deliberately small: read an object with its version, and
// write an object only if it is absent or only if its version is still the one
// the caller read. There is no delete: several S3-compatible stores and the
// GCS emulator ignore conditions on DELETE, so an unconditional primitive must
// never be part of what locks rely on.
//
// Every driver must pass the conformance suite in package drivertest.
package driver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// ErrNotExist is returned by [Store.Read] when there is no object at the key.
var ErrNotExist = errors.New("object does not exist")

// ErrPrecondition is returned by [Store.Write] when the write's condition
// does not hold: the object exists although the write was create-only, or its
// current version differs from the one given (including when it is missing).
var ErrPrecondition = errors.New("precondition failed")

// ErrNoCredentials is wrapped by the errors of a store's methods when the
// driver found no credentials in any of the places it looks: build such
// errors with [NoCredentials]. Credentials that the store refuses (403 with
// a key it does not accept, or one without the permission) are not this
// error but "access denied".
var ErrNoCredentials = errors.New("no credentials found")

// NoCredentials returns the error for op ("read", "write"...) on location
// when no credentials were found: it wraps ErrNoCredentials, and cause if
// not nil, and names the sources tried, in order, which should say where
// each looked (a variable's name, a file's path), never a secret.
func NoCredentials(op, location string, tried []string, cause error) error {
	if cause == nil {
		return fmt.Errorf("%s %s: %w; tried, in order: %s", op, location, ErrNoCredentials, strings.Join(tried, "; "))
	}
	return fmt.Errorf("%s %s: %w; tried, in order: %s: %w", op, location, ErrNoCredentials, strings.Join(tried, "; "), cause)
}

// Version identifies one state of one object. It is opaque to callers: they
// only pass back what a store returned. The empty Version is never a valid
// version; as a write condition it means "absent".
//
// Two states with different content always have different versions. A store
// should also return a new version for every write of identical content,
// and most do (generations, counters); stores whose versions are hashes of
// the content (S3 ETags, on AWS, MinIO, Ceph and R2) cannot, and there the
// same bytes written again give the same version back. Callers that must
// tell every write apart therefore make the content of each write unique,
// as the lock protocol does; such stores run the conformance suite with
// drivertest.ContentVersions.
type Version string

// Store is a handle on one bucket (or namespace, or directory) of a store.
// It must be safe for concurrent use. Errors other than the sentinels should
// name the location (see [Store.Location]) and never contain a secret. A
// store that needs credentials and finds none fails its requests with
// [NoCredentials].
type Store interface {
	// Read returns the object's content and version, or an error wrapping
	// ErrNotExist when there is no object at key.
	Read(ctx context.Context, key string) ([]byte, Version, error)

	// Write stores data at key if the condition holds and returns the new
	// version. With ifVersion empty the write is create-only: it succeeds
	// only if no object exists at key. Otherwise it succeeds only if the
	// object's current version equals ifVersion. When the condition fails
	// the error wraps ErrPrecondition and nothing is written.
	//
	// Any other error leaves the outcome unknown: the write may or may not
	// have taken effect. Callers must settle it by reading the object again.
	Write(ctx context.Context, key string, data []byte, ifVersion Version) (Version, error)

	// Location describes where key lives, for messages meant for people,
	// for example "s3://bucket/locks/a". It names the server when it is not
	// the provider's default, and it never contains a secret. It is not an
	// identity: objsync tells stores apart by the Store values themselves.
	Location(key string) string
}

// Deleter is implemented by stores that can remove an object. It is used
// only to remove scratch objects (objsync check); never used by the lock
// protocol, because several stores ignore conditions on DELETE. Delete is
// unconditional, and deleting an absent key is not an error.
type Deleter interface {
	Delete(ctx context.Context, key string) error
}

// ConditionalDeleter is implemented by stores that can send a delete
// conditional on the object's version. It is used only by objsync check,
// to report whether the store honours the condition (MinIO, Ceph RGW and
// the GCS emulator delete anyway); never by the lock protocol. DeleteIf
// returns an error wrapping ErrPrecondition when the store refused the
// delete for its condition.
type ConditionalDeleter interface {
	DeleteIf(ctx context.Context, key string, ifVersion Version) error
}

// WriteLimiter is implemented by a Store that says how often it accepts
// writes to one object. GCS and Cloudflare R2 accept about one a second
// and answer 429 beyond it. Queue locks, which spread a lock over many
// objects for such stores, never write an object again sooner than
// WriteInterval after its last write. A Store that does not implement
// WriteLimiter is taken to allow one write a second, the strictest limit
// known; one that returns 0 (AWS S3, MinIO, Ceph RGW, a file system) lets
// queue locks change hands as fast as it answers.
type WriteLimiter interface {
	WriteInterval() time.Duration
}

// WriteInterval returns the least time between two writes of one object
// in s: its WriteLimiter's answer (never negative), or a second.
func WriteInterval(s Store) time.Duration {
	if l, ok := s.(WriteLimiter); ok {
		return max(l.WriteInterval(), 0)
	}
	return time.Second
}

// AgeReader is implemented by a Store whose reads can tell how long the
// object has been unchanged by the store's own clock: the time of the
// answer less the time of the object's last write, both taken from the one
// answer that returned the content (on S3 and compatible stores, the Date
// and Last-Modified headers). Locks opened WithStoreClock use it to take
// over a dead holder's lock without watching it for a TTL themselves.
//
// The age must be a lower bound, the resolution of the store's times
// already taken off (S3's times are whole seconds, cut or rounded: Date −
// Last-Modified − 2s), never negative, and 0 when unknown; that is only
// true if one clock, or clocks that agree, stamp both times. A store that
// cannot promise that must not implement AgeReader.
type AgeReader interface {
	// ReadAge is Read, and how long the object had at least been
	// unchanged when the store answered, by the store's clock.
	ReadAge(ctx context.Context, key string) ([]byte, Version, time.Duration, error)
}

// DateReader is implemented by a Store whose answers carry the store's
// clock (HTTP's Date header). Only objsync check uses it, to compare that
// clock with the client's; the lock protocol trusts neither.
type DateReader interface {
	// ReadDate reads the object at key and returns the time the store's
	// answer gives, as the store gives it (HTTP dates are whole seconds,
	// cut), or an error if the answer carries none.
	ReadDate(ctx context.Context, key string) (time.Time, error)
}

// Driver turns a data source name into a store handle and a key.
type Driver interface {
	// Open parses dsn and returns the store that holds the object and the
	// object's key within it. Open does no network I/O. It rejects unknown
	// query parameters with an error that names them. Opening many DSNs
	// that share an endpoint and settings should return handles sharing
	// one client and connection pool, and DSNs that differ only in their
	// key should return the same Store (a pointer): Mutexes of one process
	// share their view of a lock when their Store values are equal.
	Open(dsn string) (Store, string, error)
}

// Retryable marks err as transient: a timeout, a reset connection, a 5xx
// answer, a rate limit. The lock protocol retries such errors (with backoff,
// within its deadlines) without knowing which store produced them. A nil err
// stays nil.
func Retryable(err error) error {
	if err == nil {
		return nil
	}
	return &retryableError{err}
}

// IsRetryable reports whether err, or an error it wraps, was marked with
// [Retryable].
func IsRetryable(err error) bool {
	var r *retryableError
	return errors.As(err, &r)
}

type retryableError struct{ err error }

func (e *retryableError) Error() string { return e.err.Error() }
func (e *retryableError) Unwrap() error { return e.err }

var (
	registryMu sync.RWMutex
	registry   = map[string]Driver{}
)

// Register makes a driver available under name. It is meant to be called
// from a driver package's init function. It panics if d is nil or if a driver
// is already registered under name.
func Register(name string, d Driver) {
	registryMu.Lock()
	defer registryMu.Unlock()
	if d == nil {
		panic("objsync/driver: Register driver is nil")
	}
	if _, dup := registry[name]; dup {
		panic(fmt.Sprintf("objsync/driver: Register called twice for driver %q", name))
	}
	registry[name] = d
}

// Lookup returns the driver registered under name.
func Lookup(name string) (Driver, bool) {
	registryMu.RLock()
	defer registryMu.RUnlock()
	d, ok := registry[name]
	return d, ok
}

// Drivers returns the names of the registered drivers, sorted.
func Drivers() []string {
	registryMu.RLock()
	defer registryMu.RUnlock()
	names := make([]string, 0, len(registry))
	for name := range registry {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}
