package objsync

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/objsync/objsync/driver"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"
)

var (
	// ErrNotHeld is returned by Unlock when this Mutex holds no lock, and
	// by Err when no hold is current because none was taken or the last
	// one was released.
	ErrNotHeld = errors.New("objsync: lock not held")

	// ErrLockLost means a hold ended without Unlock: its lease ran out
	// before it could be renewed, or another holder took the lock over
	// (after the lease expired, or through a forced unlock). Err and
	// Unlock return it wrapped with the reason.
	ErrLockLost = errors.New("objsync: lock lost")

	// ErrNotLock means the object at the lock's key is not an objsync
	// lock: another document, a truncated one, one of a newer format, or
	// one whose numbers are out of range. objsync leaves such an object as
	// it is.
	ErrNotLock = errors.New("objsync: object is not an objsync lock")

	// ErrOutcomeUnknown means that a release (Unlock, Break) sent a write
	// whose answer was lost, and that by the time the object could be
	// read again it could no longer tell whether that write had landed:
	// others had written since. It is not a loss: a hold that Unlock
	// returns it for was in force until Unlock was called.
	ErrOutcomeUnknown = errors.New("objsync: outcome unknown")

	// ErrNoCredentials means that the driver found no credentials for the
	// store in any of the places it looks; the error names them. It is
	// driver.ErrNoCredentials, so that callers need not import package
	// driver to test for it.
	ErrNoCredentials = driver.ErrNoCredentials
)

// MinTTL is the shortest lease Lock accepts. Below it the safety margins
// and the renewal cadence leave no time for a store request.
const MinTTL = 100 * time.Millisecond

// MaxTTL is the longest lease Lock accepts, and the longest that objsync
// accepts in a stored lock object: 30 days. The TTL is how long others
// wait for a holder that died, not how long a holder may hold the lock.
// The bound keeps every duration computed from a TTL far from overflow.
const MaxTTL = 30 * 24 * time.Hour

// Drivers returns the names of the registered drivers, sorted.
func Drivers() []string { return driver.Drivers() }

// Open returns a Mutex for the lock that dsn names, on the driver
// registered as driverName. It validates the DSN but does no network I/O.
// Mutexes opened on the same location in one process share their polling
// and their view of the lock (see the package documentation).
func Open(driverName, dsn string, opts ...Option) (*Mutex, error) {
	d, ok := driver.Lookup(driverName)
	if !ok {
		return nil, fmt.Errorf("objsync: unknown driver %q (forgotten import?)", driverName)
	}
	store, key, err := d.Open(dsn)
	if err != nil {
		return nil, fmt.Errorf("objsync: %w", err)
	}
	m := NewMutex(store, key, opts...)
	if m.opts.err != nil {
		m.Close()
		return nil, m.opts.err
	}
	return m, nil
}

// An Option configures a Mutex. An option given a value it cannot take
// makes Open fail, and Lock, TryLock and Campaign of a Mutex made by
// NewMutex return the error.
type Option func(*options)

type options struct {
	renew      bool
	value      string
	logger     *slog.Logger
	minBackoff time.Duration
	maxBackoff time.Duration
	notice     time.Duration // negative: the default, 5% of the TTL
	queue      bool
	// noProcessCheck leaves out what lets contenders on this machine
	// know that this process has ended.
	noProcessCheck bool
	group          int    // WithProcessGroup
	cgroup         string // WithCgroup's directory
	storeClock     bool   // WithStoreClock
	meterProvider  metric.MeterProvider
	tracerProvider trace.TracerProvider
	nameAttribute  bool  // WithLockNameAttribute
	err            error // the first option that was refused
}

func defaultOptions() options {
	return options{
		renew:      true,
		logger:     slog.New(slog.DiscardHandler),
		minBackoff: 20 * time.Millisecond,
		maxBackoff: time.Second,
		notice:     -1,
	}
}

// refuse records the first refused option.
func (o *options) refuse(format string, args ...any) {
	if o.err == nil {
		o.err = fmt.Errorf("objsync: "+format, args...)
	}
}

// WithoutRenewal turns off the background renewal of leases: a hold ends
// when its TTL runs out (less the safety margin), as in objsync v0.2.
func WithoutRenewal() Option { return func(o *options) { o.renew = false } }

// WithQueue opens a queue lock, a second kind of lock with the same
// methods and guarantees, which serves waiters in the order they joined
// and spreads its writes over objects beside the lock's key, so that it
// can change hands many times a second on stores that allow one write per
// second to an object (GCS, R2). A name holds one kind of lock for good:
// opening it as the other kind fails with ErrNotLock, naming the kind it
// is. Elections need a plain lock. See "Queue locks" in the package
// documentation.
func WithQueue() Option { return func(o *options) { o.queue = true } }

// WithoutProcessCheck leaves out of this Mutex's writes what lets a
// contender on the same machine take the lock over as soon as this
// process has ended, without waiting out the TTL (see "A holder that
// ends" in the package documentation). Use it when work done under the
// lock runs in other processes, which could outlive this one, and neither
// WithCgroup nor WithProcessGroup fits: then only the TTL frees the lock.
func WithoutProcessCheck() Option { return func(o *options) { o.noProcessCheck = true } }

// WithProcessGroup records in this Mutex's writes that work done under
// the lock runs in process group pgid too: a contender on the same
// machine takes the lock over at once only when this process has ended
// and no process is left in the group. Start the group before Lock, and
// have it killed when this process dies. Processes that leave the group
// (setsid, setpgid: timeout(1) does) escape the check. It has no effect
// with WithoutProcessCheck.
func WithProcessGroup(pgid int) Option {
	return func(o *options) {
		if pgid <= 0 {
			o.refuse("WithProcessGroup(%d): a process group id is positive", pgid)
			return
		}
		o.group = pgid
	}
}

// WithCgroup records in this Mutex's writes that work done under the lock
// runs in the cgroup v2 at dir too (a directory under the cgroup2 mount,
// such as /sys/fs/cgroup/…): a contender on the same machine, in the same
// cgroup namespace, takes the lock over at once only when this process has
// ended and no process is left in the cgroup or below it. Have the cgroup
// killed when this process dies (cgroup.kill), as objsync lock does. Only a
// process allowed to move itself between cgroups (root, or one with a
// delegated subtree) can leave it, but work handed to a daemon that runs
// elsewhere (docker, tmux, systemd-run, ssh) is not in it. Each
// acquisition records the cgroup at dir as it is then, by path and id: one
// made later at that path does not stand for it. It has no effect with
// WithoutProcessCheck; otherwise the Mutex is refused where dir is not a
// cgroup v2 (and so on systems other than Linux), and a Lock or TryLock
// fails where it is not one any more.
func WithCgroup(dir string) Option {
	return func(o *options) {
		if dir == "" {
			o.refuse("WithCgroup(\"\"): no directory")
			return
		}
		o.cgroup = dir
	}
}

// WithStoreClock lets this Mutex count how long a lock has been unchanged
// by the store's clock as well as its own: a Lock, TryLock or Leader in a
// process that has just started then takes over a lock whose holder died
// long ago in one read, instead of watching it unchanged for a TTL itself.
// It needs a store whose driver implements driver.AgeReader (s3, minio
// and mem do; the others refuse the option) and works for plain locks only
// (with WithQueue it is refused).
//
// It trusts that one clock stamps both the store's answers and the times
// of its objects' last writes, or clocks that agree within 4% of the TTL
// (1.2s for a TTL of 30s, 40ms for one of a second), running within 1% of
// real time: a single server, or a service such as AWS S3 or R2. A
// distributed MinIO or Ceph whose nodes' clocks disagree by more breaks
// it: a holder could be taken over while its lease runs. Without this
// option no clock but each process's own monotonic clock is trusted, and
// other Mutexes of the process do not count what this one reads. See "The
// store's clock" in the package documentation.
func WithStoreClock() Option { return func(o *options) { o.storeClock = true } }

// WithValue sets the holder value stored in the lock object while this
// Mutex holds it: who holds the lock, in the caller's terms (an address, a
// job id). Others read it with Inspect.
func WithValue(v string) Option { return func(o *options) { o.value = v } }

// WithLogger sets where the Mutex reports acquisitions, failed renewals and
// losses. By default it logs nothing.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.logger = l } }

// WithMeterProvider records the Mutex's metrics with mp: how long
// acquisitions take, how long holds last, holds in force and lost, store
// requests, and an election's new terms. They are listed, with their
// attributes, in the package documentation ("Metrics and traces"). By
// default no metric is recorded (not even to the global provider).
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(o *options) {
		if mp == nil {
			o.refuse("WithMeterProvider(nil)")
			return
		}
		o.meterProvider = mp
	}
}

// WithTracerProvider traces the Mutex's Lock, TryLock, Unlock and
// Campaign calls, and renewals that needed retries, with tp: see "Metrics
// and traces" in the package documentation. Spans are children of the
// span in the context passed to each call. By default nothing is traced
// (not even to the global provider).
func WithTracerProvider(tp trace.TracerProvider) Option {
	return func(o *options) {
		if tp == nil {
			o.refuse("WithTracerProvider(nil)")
			return
		}
		o.tracerProvider = tp
	}
}

// WithLockNameAttribute adds the lock's location (as String returns it,
// without secrets) to its metrics and spans as objsync.lock.name. It is
// off by default because each lock then makes series of its own: use it
// for a bounded set of locks.
func WithLockNameAttribute() Option { return func(o *options) { o.nameAttribute = true } }

// WithBackoff sets how Lock polls a lock held by someone else: it waits
// min, then doubles the wait up to max, each wait jittered. The defaults are
// 20ms and 1s; min must be positive and max at least min. A waiter also
// wakes when the holder's lease would have expired, so max bounds the delay
// after that, not the wait itself.
func WithBackoff(min, max time.Duration) Option {
	return func(o *options) {
		if min <= 0 || max < min {
			o.refuse("WithBackoff(%v, %v): want 0 < min <= max", min, max)
			return
		}
		o.minBackoff, o.maxBackoff = min, max
	}
}

// WithLossNotice sets how long before its lease runs out a hold that could
// not be renewed ends as lost: Done closes then, and work watching it has
// that long to stop before another holder may take over. The default is
// 5% of the TTL; d may be zero, and at most MaxLossNotice of the TTL
// (Lock refuses the TTL otherwise). objsync lock passes --grace, so that
// the command is killed before its lease ends.
func WithLossNotice(d time.Duration) Option {
	return func(o *options) {
		if d < 0 {
			o.refuse("WithLossNotice(%v): the notice cannot be negative", d)
			return
		}
		o.notice = d
	}
}

// MaxLossNotice is the longest notice (WithLossNotice) that a lease of ttl
// leaves room for: half of it, so that a hold still has time to renew
// before it must be given up.
func MaxLossNotice(ttl time.Duration) time.Duration { return ttl / 2 }

// State is a lock as stored, returned by Inspect.
type State struct {
	// Exists is false if the lock was never acquired: no object exists.
	Exists bool
	// Held reports whether the object says the lock is held. A holder
	// that died still appears to hold it until someone takes it over.
	Held bool
	// Holder is the id of the current (or, when free, the last) holder.
	Holder string
	// Value is the holder's value (see WithValue).
	Value string
	// Fence is the fencing token of the current or last hold.
	Fence int64
	// TTL is the holder's lease.
	TTL time.Duration
	// Host and PID say where the holder ran; AcquiredAt and RenewedAt are
	// its wall-clock times. The times are for people only; host and pid
	// serve the same-machine check too (HolderGone), and for people.
	Host       string
	PID        int
	AcquiredAt time.Time
	RenewedAt  time.Time
	// Unchanged is how long this process has seen the holder's state
	// unchanged (waiters joining or leaving the queue do not count),
	// counted on its own monotonic clock from the first read that
	// returned it. A held lock unchanged for longer than TTL has a holder
	// that stopped renewing.
	Unchanged time.Duration
	// Waiters is how many Locks wait in the lock's queue, to which its
	// releases hand the lock in turn.
	Waiters int
	// HolderGone reports, for a held lock, that its holder's process is
	// known to have ended: it ran on this machine, since its last boot
	// and in this process's pid and time namespaces, no process with its
	// pid and start time runs now, and none is left in the process group
	// or cgroup it recorded (WithProcessGroup, WithCgroup). A Lock takes
	// such a lock over at once.
	HolderGone bool
	// HolderRunning reports, for a held lock, that its holder's process is
	// known to run: it runs on this machine, in this process's pid
	// namespace, with the pid and start time it recorded. It says nothing
	// of whether it renews the lease (a stopped process runs too).
	HolderRunning bool
	// StoreAge is, WithStoreClock, how long the holder's state has at
	// least been unchanged by the store's clock: the greatest age that the
	// reads returning it gave, each plus the time since that read
	// returned. 0 if unknown, and so for the first two or three seconds
	// after every write on S3 and compatible stores (whole-second times,
	// less two seconds). A held lock whose StoreAge or Unchanged exceeds
	// the TTL by 1% is taken over by a Lock WithStoreClock.
	StoreAge time.Duration
}
