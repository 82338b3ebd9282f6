// Package s3compat is what the s3 and minio drivers share because both
// speak the S3 API to the same servers: the way a conditional PUT has to be
// sent and settled, whichever client library sends it.
package s3compat

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/objsync/objsync/driver"
)

// WriteInterval is the least time between two writes of one object on the
// S3 endpoint at host (host[:port]; empty for Amazon S3): a second on
// Cloudflare R2, which answers 429 beyond; none on the others tested (AWS
// S3, MinIO, Ceph RGW).
func WriteInterval(host string) time.Duration {
	host = strings.ToLower(host)
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if host == "r2.cloudflarestorage.com" || strings.HasSuffix(host, ".r2.cloudflarestorage.com") {
		return time.Second
	}
	return 0
}

// Answer is how the server answered a PUT that failed, as far as Write
// needs to know.
type Answer int

const (
	// Other is any answer Write leaves to the driver's error mapping.
	Other Answer = iota
	// Conflict is 409 ConditionalRequestConflict: AWS S3 refused the
	// write because another conditional write to the key was in flight.
	// It did not take effect.
	Conflict
	// ServerError is a 5xx answer, after which the write may or may not
	// have taken effect.
	ServerError
)

// Conflict retries: a PUT refused with 409 is sent again this many times,
// after jittered waits from conflictBackoff doubling, before the error is
// left to the lock protocol as transient.
const (
	conflictRetries = 3
	conflictBackoff = 20 * time.Millisecond
)

// Write sends a conditional PUT with put and returns the new version. It
// retries 409 ConditionalRequestConflict. It settles a 5xx answer by reading
// the object back with read: Ceph RGW answers some of the conditional writes
// that lose a race with 500 instead of 412. If the object holds exactly the
// bytes written, the write landed; if it holds another state than the one
// the condition named, another write won and the result is
// driver.ErrPrecondition (or, rarely, ours landed and a writer that read it
// wrote over it at once: the lock protocol settles every write by the ids
// in the object, never by this error alone); if it is unchanged, the
// original error is returned. Every other error is returned as put gave it, for the driver to
// map.
func Write(ctx context.Context, data []byte, ifVersion driver.Version,
	put func(context.Context) (driver.Version, error),
	answer func(error) Answer,
	read func(context.Context) ([]byte, driver.Version, error),
) (driver.Version, error) {
	for attempt := 0; ; attempt++ {
		v, err := put(ctx)
		if err == nil {
			return v, nil
		}
		switch answer(err) {
		case Conflict:
			if attempt == conflictRetries {
				return "", err
			}
			if err := sleep(ctx, conflictBackoff<<attempt); err != nil {
				return "", err
			}
			continue
		case ServerError:
			return settle(ctx, data, ifVersion, err, read)
		}
		return "", err
	}
}

func settle(ctx context.Context, data []byte, ifVersion driver.Version, putErr error,
	read func(context.Context) ([]byte, driver.Version, error),
) (driver.Version, error) {
	got, v, err := read(ctx)
	switch {
	case errors.Is(err, driver.ErrNotExist) && ifVersion == "":
		return "", putErr // still absent: the create did not land
	case errors.Is(err, driver.ErrNotExist):
		return "", fmt.Errorf("%w: the object is gone (the store answered: %v)", driver.ErrPrecondition, putErr)
	case err != nil:
		return "", putErr // cannot tell: the caller reads again later
	case bytes.Equal(got, data):
		return v, nil
	case v == ifVersion:
		return "", putErr
	}
	return "", fmt.Errorf("%w: another write is in place (the store answered: %v)", driver.ErrPrecondition, putErr)
}

// sleep waits for about d, with jitter so that writers that collided do not
// collide again, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d/2 + rand.N(d))
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Unquote strips the quotes that S3 puts around ETags.
func Unquote(etag string) string {
	if len(etag) >= 2 && etag[0] == '"' && etag[len(etag)-1] == '"' {
		return etag[1 : len(etag)-1]
	}
	return etag
}

// IsETag reports whether v can be sent alone in If-Match. A version the
// drivers returned always can; "*" or a list would match other objects.
func IsETag(v driver.Version) bool {
	return v != "" && v != "*" && !strings.ContainsAny(string(v), "\", \t")
}

// Object is what a GET of an object gave.
type Object struct {
	Data         []byte
	Version      driver.Version
	Date         string // the Date header
	LastModified time.Time
}

// Reads implements driver.Store's Read, driver.AgeReader and
// driver.DateReader on a driver's GET of an object.
type Reads struct {
	Get      func(ctx context.Context, key string) (Object, error)
	Location func(key string) string // for messages
}

// Read implements driver.Store.
func (r Reads) Read(ctx context.Context, key string) ([]byte, driver.Version, error) {
	o, err := r.Get(ctx, key)
	return o.Data, o.Version, err
}

// ReadAge implements driver.AgeReader, from the answer's Date and
// Last-Modified headers (see Age).
func (r Reads) ReadAge(ctx context.Context, key string) ([]byte, driver.Version, time.Duration, error) {
	o, err := r.Get(ctx, key)
	return o.Data, o.Version, Age(o.Date, o.LastModified), err
}

// ReadDate implements driver.DateReader, from the answer's Date header.
func (r Reads) ReadDate(ctx context.Context, key string) (time.Time, error) {
	o, err := r.Get(ctx, key)
	if err != nil {
		return time.Time{}, err
	}
	return Date(r.Location(key), o.Date)
}

// Date returns the time of an answer's Date header, or an error naming
// the object at loc when it is missing, unreadable, or outside 2000 to
// 2100.
func Date(loc, header string) (time.Time, error) {
	t, _ := http.ParseTime(header)
	return UsableDate(loc, t)
}

// UsableDate returns t, the Date of an answer about the object at loc
// (zero if it had none), or an error if it is zero or outside 2000 to 2100:
// a clock or header that is broken, not a time.
func UsableDate(loc string, t time.Time) (time.Time, error) {
	if !plausible(t) {
		return time.Time{}, fmt.Errorf("read %s: the store's answer has no usable Date header", loc)
	}
	return t, nil
}

// Age returns a lower bound of how long an object had been unchanged when
// the server answered, from one answer's Date header and the object's
// Last-Modified time. Both are whole seconds, cut or rounded, so their
// difference less two seconds. It returns 0, unknown, when the Date header
// is missing or unreadable, when either time is outside 2000 to 2100 (a
// server whose clock or headers are broken), or when the times say less.
func Age(date string, lastModified time.Time) time.Duration {
	answered, err := http.ParseTime(date)
	if err != nil || !plausible(answered) || !plausible(lastModified) {
		return 0
	}
	return max(answered.Sub(lastModified)-2*time.Second, 0)
}

func plausible(t time.Time) bool {
	return !t.Before(time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)) && t.Before(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC))
}
