// Package objsync provides distributed mutexes on object storage: S3 and
// S3-compatible stores, Google Cloud Storage, or a local directory. A team
// that has a bucket gets safe locks with no server of its own to run.
//
// Choose a store by blank-importing its driver and open a lock by DSN:
//
//	import _ "github.com/objsync/objsync/s3"
//
//	mu, err := objsync.Open("s3", "s3://my-bucket/locks/nightly-report?region=eu-west-1")
//	fence, err := mu.Lock(ctx, 15*time.Second)
//	defer mu.Unlock(ctx)
//	// Pass fence along with every write the lock protects; see "Fencing".
//
// The drivers are s3, minio, gcs, file (the local default) and mem (in
// process, for tests). Package driver describes the small contract a store
// implements; the protocol below is written once, here, on top of it.
//
// # The lock object
//
// A lock is one object at its key, a JSON document holding: a format
// number; the state, held or free; the holder, a random 128-bit id drawn
// anew for every acquisition; the fence; the holder's TTL; a sequence
// number counting the writes made under one holder id; for an
// acquisition, the holder id and sequence number of the state it replaced;
// the queue of Locks waiting for it, with a counter of the queue's changes;
// the holder's host name and process id, with what makes the pid mean
// one process, for the same-machine check ("A holder that ends"); and, for
// people only, the holder's value and wall-clock times.
// Holder id and sequence number make the bytes of every write unique,
// which the protocol needs on stores whose versions are content hashes.
//
// Every change is a conditional write. The first acquisition of a key is a
// create-only write; every later write, whether it acquires, renews or
// releases, is conditional on the version last read or written. Nothing
// ever writes a lock object unconditionally, and nothing deletes it:
// releasing writes the free state, which also keeps the fence counter.
//
// # Acquiring
//
// Lock reads the object (or, right after this process released it, starts
// from the free state it wrote, which makes an uncontended Lock a single
// write). If the key is absent it creates the object with fence 1. If the
// state is free it writes a held state with the fence plus one. If another
// holder has it, Lock joins the lock's queue and waits for a release to
// hand it the lock (see "Waiting in the queue"), and takes over only as
// described under "Expiry". A write that fails its condition means someone
// else wrote first: Lock reads again and goes on.
//
// Lock returns a hold only if the write that took the lock was answered
// within half the time from sending it to the loss notice (see "Renewal
// and loss"): within 44.5% of the TTL by default, so that at least 44.5%
// of the lease is left before Done would close. A write answered later,
// by a slow store or after SDK-internal retries, does not make a hold:
// Lock writes the same hold again, conditional on the version it holds,
// as a renewal would, until a write is answered in time; after three late
// answers in a row it frees the lock and starts again after a backoff, so
// that a client whose store is too slow for its TTL never keeps the lock
// from others. TryLock and Campaign follow the same rule. TryLock makes at
// most three tries when writes or reads fail transiently or are answered
// late, then returns the error.
//
// Lock retries a store that fails transiently. It returns the store's
// error when the store did not answer its first few reads (a wrong
// endpoint is reported within about a second), or when reads have failed
// for longer than the longest TTL it has seen on the lock, its own
// included: an outage shorter than that is ridden out.
//
// The TTL is a whole number of milliseconds from MinTTL (100ms) to MaxTTL
// (30 days). A stored lock whose TTL is outside that range, or whose fence
// cannot be incremented, is refused, and left as it is; so no duration
// computed from a TTL can overflow.
//
// # Waiting in the queue
//
// A Lock that finds the lock held by another joins its queue: it writes
// the held state again, unchanged but for itself added at the end of the
// queue, conditional on the version it read. Its entry holds what the
// held state that hands it the lock is made of: its holder id, the
// sequence number of the write that joined, its value, and the hand-off
// lease it asks for (below). A release by a holder whose queue is not
// empty does not write the free state: it writes the first waiter's held
// state, with the next fence, the rest of the queue, and, as the state it
// replaced, the releaser's holder id and the sequence number of the
// release. The waiter learns of it from its next read, and holds the lock
// from then on, with no write of its own. Its lease is the hand-off lease,
// counted from when it sent the last request whose answer did not show
// the hand-off yet (its last poll, or the write that joined): that request
// was served before the hand-off was written, so before anyone could read
// it; on its own clock, earlier than any contender starts counting. If
// too much of that lease has gone by the time it reads the hand-off, it
// writes the state again, as a renewal, before Lock returns; so it does
// too without renewals (WithoutRenewal), which would not lengthen it.
//
// The hand-off lease is short, so that a waiter that died in the queue
// holds up those behind it briefly: four of its longest polls (below), at
// least a second and twice the loss notice, at most its TTL: 4s with the
// default backoff and a TTL of 8s or more, half the TTL below that. The
// waiter's first renewal writes its own TTL, and the hold then renews at
// that TTL's pace.
//
// So waiters in different processes take the lock in the order the store
// accepted their joins, and a contended hand-off costs two writes, the
// join and the release, as an uncontended Lock and Unlock do. A Lock that
// gives up (its context ends, or Close) writes itself out of the queue,
// or releases the lock if it was handed it meanwhile. A join whose write
// lands only after its Lock gave up (a store may apply a request after
// the client stopped waiting) leaves a waiter that is gone, as a Lock
// killed in the queue does; so a Lock whose context ends within a second
// does not join, and polls as before queues. A waiter that dies
// in the queue is handed the lock in turn, which then expires: it delays
// those behind it by the hand-off lease. A waiter polls at least every
// eighth of its TTL and every maximum backoff, so that it notices a
// hand-off well within that lease. A takeover clears the queue, since the
// holder that stopped renewing may have taken its waiters with it; live
// waiters find themselves gone and join again. The queue holds at most 16
// waiters; Locks beyond them poll with backoff (WithBackoff), as all did
// before queues.
//
// Waiters poll by reading, which most stores bill. A waiter sleeps for
// its place in the queue times the fastest the queue has lately moved on
// by one place, as this process has seen it; then it polls at half that
// interval, but at least every quarter of the minimum backoff (5ms by
// default), eight times, and then ever less often, doubling while its
// place stays the same, up to the maximum backoff. (Until this process has
// seen the queue move, the first waiter polls at a quarter of the minimum
// backoff and the one at place p from 0 at p times it.) While one hold
// lasts long, each waiter reads once every half to whole maximum backoff
// (the waits are jittered), and at least once per eighth of its TTL: with
// the defaults, one to two reads a second, about 4,800 an hour (measured:
// 98 reads in 60s). In a run of short holds the first waiter
// polls every few milliseconds: objsync bench measured 3 to 5 reads per
// hand-off with 8 processes holding for 5ms.
//
// Joining and leaving change the object's version but not the holder id
// or sequence number, and extend nobody's lease; the holder's renewals and
// release that find only the queue changed write again at once over the
// version they read. A waiter joins only within an eighth of the holder's
// TTL after it first saw the holder's state, before the holder renews
// (which comes at 0.147×TTL at the earliest), so that waiters coming and
// going cannot crowd out a renewal; one that comes later polls until the
// renewal and joins then. A hand-off is marked as written by the
// release, until the new holder writes: an election's Watch and Leader do
// not take it for a sign that the new leader is alive, and Campaign writes
// at once after one. Only goroutines in different processes (or on
// different Store values) queue in the object: those of one process wait
// for one another locally (see "One process, many goroutines").
//
// # Expiry without trusted clocks
//
// Only a bound on clock rate drift is assumed, 1%; clocks need not agree
// on the time (unless a Mutex opts into the store's clock: see "The
// store's clock"). A holder counts its lease as valid until the instant it
// sent its last successful write plus the TTL less a margin of 6% (1% for
// drift, 5% for the time between checking the lease and acting on it),
// measured on its own monotonic clock. A contender takes over a held lock
// only after reads have returned the same holder id and sequence number
// for at least the TTL plus 1%, counted on its own monotonic clock from
// when the first of those reads returned. Waiters joining or leaving the
// queue change neither, so they cannot keep a dead holder's lock alive.
// The takeover is a write conditional on the version of the last of those
// reads, so it succeeds only if nothing was written since.
//
// Why this is safe: the state the contender saw was written by a request
// the holder sent before the contender's read returned (or, for a
// hand-off, by a release written after a request of the holder's was
// served, from whose sending its hand-off lease counts). The holder stops
// relying on the lock at most 0.94×TTL of its clock after sending, which
// is at most 0.95×TTL of real time; the contender waits at least 1.01×TTL
// of its clock, at least 0.99×TTL of real time, from a later instant. Each
// write of the holder has a new sequence number: a renewal that lands
// first restarts the count and changes the version, which defeats the
// takeover; one that lands later fails its own condition. The wall-clock times in
// the object are never read by the protocol: an object whose times lie by
// hours changes nothing.
//
// # The store's clock
//
// A Mutex opened WithStoreClock, on a driver that implements
// driver.AgeReader (s3, minio, mem), also counts a state as unchanged
// since the instant of its own monotonic clock that a read returned less
// the age the store gave in that read's answer: on S3 and compatible
// stores the Date header less Last-Modified, less two seconds since both
// are whole seconds, cut or rounded (times outside 2000 to 2100 give no
// age). Whichever instant is earlier, its own first sighting or that one,
// starts the TTL plus 1% above, so a contender in a fresh process takes
// over a lock whose holder died long ago in one read (if nothing has
// written the object since: waiters joining or leaving the queue rewrite
// it). It is as safe as the
// rule above if the store's clock stamps both times (the holder's write
// landed after it was sent, and the age is a lower bound of the real time
// since) and runs within 1% of real time. The rule leaves 4% of the TTL to
// spare (the holder stops at 0.95×TTL of real time, the contender waits
// 0.99×TTL): clocks of a store's nodes that disagree by more than that
// break it. Mutexes without the option never count the store's clock, even
// where another Mutex of the process read it.
// Queue locks refuse it: a ticket's turn does not begin with a write of
// its object. The file driver does not tell ages: a file's modification
// time is the wall clock of whichever machine wrote it.
//
// # A holder that ends
//
// On Linux every held state (and every waiter of a queue) records, beside
// the host name and pid, what makes the pid mean one process: the
// kernel's boot id, the pid and time namespaces (the links
// /proc/self/ns/pid and time) and the process's start time in clock ticks
// after boot (field 22 of its /proc/PID/stat, which the reader's time
// namespace shifts). A contender with the same host name, boot id and
// namespaces that finds no process with that pid (kill(pid, 0) answers
// ESRCH), or one with another start time (the pid was reused), or one
// whose every thread has exited and that is not yet reaped, knows that the
// holder has ended; with WithProcessGroup, no process may be left in the
// group either (kill(-pgid, 0) answers ESRCH), and with WithCgroup none in
// the cgroup v2 or below it (its cgroup.events says "populated 0", or it
// is gone: no directory at its path, or one with another id, in the
// cgroup2 file system with nothing mounted over it; the contender must be
// in the same cgroup namespace, the link /proc/self/ns/cgroup). The
// contender then takes the lock over at once, with the same conditional
// write as after the TTL, and a queue waiter ends the turn of such a head
// at once. The process record is a JSON object of its own ("process"):
// objsync before it does not read it, and a reader that finds there a
// field it does not know, or no object, judges nothing, and writes the
// record back as it found it. It judges nothing where it
// cannot be sure: another machine or container (containers share the boot
// id but not the pid namespace), a boot since, a /proc that belongs to
// another pid namespace than its own, a process hidden from it (hidepid),
// or a holder that recorded nothing (other systems, objsync before this,
// WithoutProcessCheck). Inspect reports it as State.HolderGone, and Leader
// as no leader. A process restored from a checkpoint (CRIU) has a new
// start time, and counts as ended: do not checkpoint a holder.
//
// It is safe only if nothing works under the lock once the holder has
// ended. Work in other processes must be in the cgroup given to WithCgroup
// (only a process allowed to move itself between cgroups can leave it, and
// work handed to a daemon, such as docker or tmux, is never in it), or
// in the process group given to WithProcessGroup (processes that leave the
// group, as timeout(1) and setsid(1) do, escape the check), and killed
// when the holder dies; or the holder must not record itself
// (WithoutProcessCheck). objsync lock and objsync elect run their command
// in a cgroup of its own where they may create one, and record nothing
// where they may not.
//
// # Renewal and loss
//
// While a lock is held, a goroutine renews the lease with a conditional
// write every third of the time to the loss notice (0.297×TTL by
// default), retrying transient errors with backoff. So the TTL is how long
// others wait after a holder dies, not a cap on how long it may hold the
// lock. If the hold cannot be renewed, it ends as lost a notice before the
// lease runs out: 5% of the TTL by default (at 0.89×TTL after the last
// successful write was sent), or what WithLossNotice says, up to half the
// TTL. Done is closed and Err returns an error wrapping ErrLockLost. A
// timer ends the hold at that instant whatever the store call under way is
// doing: the driver contract does not oblige a store to honour its
// context, and an fsync cannot be interrupted. If a renewal finds that
// another holder has taken over, or that the object is no longer an
// objsync lock, the hold ends at once the same way. WithoutRenewal gives
// holds that end when their TTL, less the margin and the notice, runs out.
//
// # Lost answers
//
// A write whose answer is lost (a timeout or reset after sending, or any
// error other than a failed condition) may or may not have been applied.
// objsync settles every such write by reading the object: if it carries
// this acquisition's holder id, the write landed, and the lease counts
// from when that write (known by its sequence number) was sent. If the
// object is unchanged it tries again; if someone else's state is there, it
// acts on that. So a lost answer never makes two holders, and never leaves
// a lock held by nobody alive: a Lock that gives up after a write whose
// fate is unknown frees the lock if the write landed (trying for at most
// two seconds), and otherwise the lock expires after its TTL.
//
// A release whose answer is lost may be followed, before the read-back,
// by another holder's acquisition. That acquisition names the state it
// replaced: if it is one of the release's free states, the release landed;
// if it is the hold's own held state, the hold was lost. If others wrote
// in between, Unlock (or Break) cannot tell and returns an error wrapping
// ErrOutcomeUnknown, which is not a loss. A hand-off names the release's
// sequence number as the state it replaced, and the new holder's renewals
// and the joins of other waiters keep that name, so a releaser whose
// hand-off landed learns it from any of them, whatever its write was
// answered; once the lock has changed hands again, it cannot tell.
//
// # Releasing
//
// Unlock stops the renewals, ends the hold (Done closes before anything is
// sent, since another process may hold the lock once the release lands),
// and writes the free state, or the hand-off to the first waiter,
// conditional on the version of the hold's last write (or of a read that
// found only the queue changed). If the lock was taken over the write
// fails its condition, the new holder's lock is untouched, and Unlock
// returns an error wrapping ErrLockLost. Unlock without a hold returns
// ErrNotHeld. Break writes the free state (or the hand-off) over whatever
// hold it read, with the same condition and the same settling of lost
// answers.
//
// # Fencing
//
// Each acquisition writes the previous fence plus one, conditionally, so
// fences strictly increase across holders, takeovers, processes and
// restarts. A lock holder can be paused (by the garbage collector, a
// stopped VM, a slow disk) past the end of its lease without knowing; the
// fence lets the resource it writes to reject the late writer: pass the
// fence with every write and have the resource refuse any fence lower
// than the highest it has seen.
//
// A stopped process (SIGSTOP, a frozen container) does see its pause: the
// monotonic clock runs on, and Err, which reads it, reports the loss as
// soon as the process resumes, even before Done closes, which waits for a
// timer that the resumed runtime has yet to run. Check Err (or Fence)
// right before each action taken as holder, not only Done. Between that
// check and the action the process can be paused again: the fence covers
// that too.
//
// A suspended machine is such a pause that the holder cannot even see: on
// Linux, Go's monotonic clock (CLOCK_MONOTONIC) stops while the system is
// suspended, so a holder that resumes believes its lease has the time left
// that it had at suspension, although others may have taken the lock
// over meanwhile. Its next renewal fails its condition and ends the hold;
// until then only the fence protects the resource.
//
// # One process, many goroutines
//
// Mutexes of one process on the same store and key share their view of
// the lock and a local token. "The same store" means the same Store value
// (drivers return one per bucket and settings, so two Opens of one DSN
// share); a Location is only a message and never makes Mutexes share. Only
// the goroutine holding the token acquires, holds or polls: other
// goroutines wait locally without polling the store, and on Unlock the
// next one tries at once, usually with a single write, while waiters in
// other processes are still asleep; but waiters of other processes that
// joined the lock's queue are served first. A hold that ends in any way, lost
// included, gives the token back; the Mutex that had it waits for its own
// Unlock before it locks again, as sync.Mutex would. Close stops the Locks
// in progress on its Mutex: they return ErrClosed and hold nothing.
//
// # Queue locks
//
// WithQueue opens the second kind of lock, for stores that allow about
// one write per second to an object (GCS, R2), where a plain lock changes
// hands at most every two seconds or so. It has the same methods and
// guarantees, and serves waiters in the order their tickets were taken.
// A name holds one kind for good: the lock's key holds a marker,
// {"state":"queue","slots":64}, written create-only, and a plain Mutex
// that finds it (or a queue Mutex that finds a plain lock object) fails
// with ErrNotLock naming the kind; whichever kind comes second fails. A
// process reads the marker once per Mutex: deleting it (or any of the
// objects below) while the lock is in use is outside the protocol, and a
// plain lock created in its place would not be seen by queue Mutexes
// already open.
//
// Beside the key are 64 ticket slots, K.queue/t00 to t63, and 64 done
// slots, d00 to d63: ticket n lives in slot n mod 64, and its settling in
// done slot n mod 64. No other objects are ever written, so there is
// nothing to remove. A ticket is a lock object in state held (or
// abandoned), with the Lock's holder id, sequence number, TTL and value;
// its number is the fence.
//
// Taking a ticket: read slot n-1 and see ticket n-1 there, then write
// ticket n into slot n mod 64, conditional on the slot's version, which
// must be absent or hold ticket n-64 with it and every ticket before it
// settled (below). So numbers are taken in order, each once, and never go
// down. The version is read, unless the process knows it: absent on the
// first lap (tickets start at 1), later the settled ticket n-64 as the
// process last saw it (its own, released; or one it read abandoned), when
// every ticket before n has settled (else others are likely joining too)
// and on a store that does not limit writes (below; there a guess that
// fails, on a slot another just took, may draw a 429). The same goes for done slots
// on every store (a done slot it wrote or read; only ticket n writes its
// own). A stale guess fails the condition, and the writer reads the slot.
// So an uncontended Lock and Unlock in one process costs two writes and
// one read (two on a store that limits writes). The last ticket is found without a hot object or LIST: guessed
// by the process (its last ticket, plus as many as were taken between its
// last two), or by a binary search of the slots, which hold tickets in
// order from slot 0 (about seven reads), and then by walking on while the
// next slot is taken, or back while the one before is not.
//
// A ticket settles when its done slot records it (done: released; left:
// given up before or after its turn), when it is abandoned (below), or when
// its slot holds a later ticket. Ticket n's turn comes when every ticket
// before it has settled. A ticket released or abandoned had its turn, so
// every one before it had settled; so had every one before a slot taken
// over (done only over a ticket with all before it settled), and every
// one more than 64 before a ticket taken. A ticket settled stays so: each
// process remembers up to which ticket all have settled (and those seen
// left), and reads none of those again (which is one more reason never to
// delete a lock's objects). A waiter finds where its ticket n stands by
// walking forward from there over the done slots of tickets settled since,
// to the first ticket not settled, whose turn has therefore come: the
// head, which holds. If what the process knows is more than 32 tickets
// behind n, it walks back instead, over the done slots from n-1 to one
// released, and forward from there. Tickets between the head and n that
// are not known to have left are its place in the queue; waiters poll at
// the pace of a plain lock's waiters at that place (see "Waiting in the
// queue"), but at most every half of their longest poll, since a waiter's
// lease counts from its last poll (below).
//
// A ticket taken when every ticket before it had settled carries the Lock's
// TTL; one taken to wait carries a hand-off lease, as a plain lock's waiter
// asks for (four of its longest polls), but on a store that limits writes
// at least four of its write intervals (4s on GCS and R2), so that its
// first renewal keeps the slot's pace (below), and at most the TTL. The holder of
// ticket n holds the lock from the read that shows its turn, with no write:
// its lease, of the TTL in the ticket, counts from when it sent its last
// write of the ticket or, if later, from an instant at which its last walk
// showed the head unsettled, so its turn not yet come: when it sent the
// read of the head's done slot (neither a release nor an abandonment is
// undone, so the read of the head's ticket, sent after it, shows that it
// was not abandoned then either). Its turn came after both, and nobody can
// have seen it come before. If that is longer ago than
// the freshness limit of "Acquiring", it writes the ticket again first,
// conditional on its version. Renewals rewrite the ticket with the full
// TTL; Unlock reads the ticket (ErrLockLost if Break ended its turn) and
// then writes the done slot. (Not both at once: a read answered after the
// release could find the slot taken over, or a late abandonment, and
// report a loss that did not happen.)
//
// A holder that dies: every waiter watches the head's ticket, and when
// its process has seen it unchanged (holder id and sequence number) for
// its TTL plus 1%, counted from the first read of it made after its turn
// had come (or from a later read that showed it changed), writes it
// abandoned, conditional on the version last read. A Lock that starts in a
// process which has seen the head so does the same before it reads
// anything, so that Locks that each give up within a few requests still
// end a dead holder's turn. That is the very object the holder renews: a
// renewal that lands first makes the write fail, one that comes later
// fails itself and the hold ends, as with the takeover of a plain lock,
// and the same argument makes it safe. A ticket whose holder froze and
// wakes after its turn was ended finds it so at its next write, and Err
// reports the loss from its own clock before. A waiting ticket is not
// renewed and never abandoned before its turn; a dead waiter delays those
// behind it by its hand-off lease once its turn comes, and one that gives
// up writes its done slot (left) and delays nobody. A joiner that finds
// the queue full watches the head too. A Lock whose write of a ticket
// landed although its answer was lost, and whose read back failed, finds
// the ticket its own when it tries again, and keeps it.
//
// Writes per object: the marker once; a ticket at its taking, while it
// holds at most every 0.297 of the lease it carries (so its first renewal
// comes at least 1.19s after a hand-off lease of 4s), and once if
// abandoned; a done slot once per ticket. A store says how often it
// accepts writes to one object (driver.WriteLimiter: a second on GCS and
// R2, no limit on S3, MinIO, Ceph RGW and files; a second if it does not
// say). A slot is not written again within that interval of its last
// write, by the wall-clock time stored in it, which paces writes and
// decides nothing else. On a store that allows a write a second, the
// shortest TTL with which every object is written at most once a second
// is 4s (a shorter one works, but its renewals may draw 429 answers,
// which are retried), and the lock can change hands at most 64 times a
// second (64 slots a second, less the waiters in the queue). Fences increase strictly but skip the tickets of Locks that
// gave up. Break ends the turn of the ticket whose turn it is. TryLock
// takes a ticket only when every ticket taken has settled. Elections need a
// plain lock.
//
// # Leader election
//
// Election elects one leader among candidates on one lock: the leader is
// the holder, its value the holder value, and its term's fence the hold's.
// Run campaigns, calls a function with a context cancelled the moment
// leadership is lost, and resigns when it returns. Proclaim changes the
// leader's value with the same conditional write as a renewal, and
// Observe polls the object and reports each new term or value in order,
// keeping only the latest for a slow reader; Watch reports "no leader"
// too. One read cannot tell a live leader from one that died less than a
// TTL ago: Leader says how long this process has seen the term unchanged,
// and returns ErrNoLeader only once that exceeds the TTL plus 1%.
//
// # Metrics and traces
//
// WithMeterProvider and WithTracerProvider record a Mutex's metrics and
// spans with OpenTelemetry; without them nothing is recorded (the global
// providers are not used) and nothing is spent on it. The instrumentation
// scope is "github.com/objsync/objsync". Metrics, each with its instrument
// and unit (UCUM: s is seconds, a unit in braces counts what it names):
//
//	objsync.lock.acquire.duration    histogram, s         Lock, TryLock and Campaign, by objsync.outcome:
//	                                                      acquired, not_acquired (TryLock found it held,
//	                                                      the caller's context ended, Close), error
//	objsync.lock.hold.duration       histogram, s         holds, from Lock's return to their end, by
//	                                                      objsync.hold.end: unlocked (Unlock, Resign),
//	                                                      closed (the release by Close), lost
//	objsync.lock.held                up-down, {hold}      holds in force
//	objsync.lock.lost                counter, {hold}      holds lost, by objsync.lost.reason: taken_over
//	                                                      (another holder's state replaced it, Break
//	                                                      included, or the object was deleted),
//	                                                      not_renewed (no renewal landed before the loss
//	                                                      notice), expired (WithoutRenewal: the lease ran
//	                                                      out), not_a_lock (the object was replaced by
//	                                                      something else)
//	objsync.store.requests           counter, {request}   store requests, by objsync.store.operation (read,
//	                                                      create: a create-only write, replace: a write
//	                                                      conditional on the version) and objsync.outcome
//	                                                      (ok, precondition_failed, not_found, error)
//	objsync.election.leader.changes  counter, {term}      terms that an Election learns of as they
//	                                                      begin, each counted once, by
//	                                                      objsync.election.leader: self (won by its
//	                                                      Campaign) or other (seen by its Observe or
//	                                                      Watch); a term already in force when it first
//	                                                      looks is not counted
//
// Every metric and span carries objsync.lock.kind (plain or queue), and,
// with WithLockNameAttribute only, objsync.lock.name, the lock's location
// without secrets: every other attribute takes the few values listed, so
// that the number of series stays bounded by default.
//
// Spans: objsync.Lock, objsync.TryLock, objsync.Campaign (with
// objsync.outcome, and objsync.fence when acquired) and objsync.Unlock
// (Resign and Close too, with objsync.fence), each a child of the span in
// the context passed in; and objsync.renew, for a write under a hold
// (a renewal, Proclaim, or Campaign's first write of a term handed to it)
// whose first try did not succeed: it begins when the write's first try
// did, is linked to the span of the call that took the lock, and carries
// objsync.fence and objsync.renew.retries. Each span carries
// objsync.store.requests, the number of store requests made under it, those
// of a Lock giving up included (freeing a write of its that landed). A
// span's status is an error when the call failed, not when the caller gave
// up (the context it passed ended, or Close stopped it).
//
// # What it does not do
//
// A lock is as good as the store's conditional writes. Some stores accept
// the headers and ignore them (Wasabi) or refuse them (Backblaze B2);
// objsync cannot run safely there. GCS and R2 accept about one write per
// second to one object: locks there suit leader election and jobs that run
// for seconds or more, not fine-grained locking; the joins of waiters use
// the same budget as the holder's writes. The README has the
// compatibility table.
package objsync
