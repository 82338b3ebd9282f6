//go:build unix

// Objsync runs commands under distributed locks kept in object storage:
// Amazon S3 and S3-compatible stores, MinIO, Google Cloud Storage, or a
// local directory. It is the command-line face of package objsync.
//
// Usage:
//
//	objsync lock [flags] DSN -- COMMAND [ARGS...]
//	objsync lock [flags] DSN -c 'COMMAND STRING'
//	objsync status [--json] [--for DURATION] DSN
//	objsync unlock --force DSN
//	objsync check [--json] [--write-rate] DSN
//	objsync elect [flags] --value VALUE DSN -- COMMAND [ARGS...]
//	objsync leader [--json] [--watch|--confirm] DSN
//	objsync bench [flags] DSN
//	objsync completion bash|zsh|fish|powershell
//	objsync help [COMMAND]
//	objsync --version
//
// Flags may come before or after the DSN; everything after "--" is the
// command. Every command takes --driver NAME and -h or --help, which shows
// an example (so does objsync help COMMAND). The one-dash spellings of Go's
// flag package that earlier versions took (-ttl 5s, -try, -timeout=3s)
// still work for the long flags they had, before "--". Every duration flag
// takes a Go duration (90s, 1m30s) or a decimal number of seconds (5, 0.5),
// never a negative one nor a positive one below 1ns, which would be 0
// (--timeout 0 waits for ever); -E and bench's counts take decimal
// integers. objsync --version, which takes no arguments, prints the
// module's version, "(devel)" for a build from a work tree without one, the
// commit when the build recorded one, "modified" if the work tree had local
// changes, and the Go version: objsync v1.2.0, commit 0123abc..., go1.26.0.
// objsync completion prints a shell's completion script (source <(objsync
// completion bash)); another shell, or none, is a usage error.
//
// The global flags -v (--verbose) and --log-format text|json log on stderr,
// at Debug level, what the lock does (acquisitions, renewals, losses), the
// warnings of the drivers (through slog's default logger), and why a
// command runs without a cgroup of its own. Durations in the log read as
// durations ("1.5s"), in JSON too. Without -v nothing of it is printed.
//
// # DSNs
//
// The DSN's scheme picks the driver (in any case: S3:// is s3://).
// --driver NAME is for a DSN whose scheme names no driver, such as one of
// a driver added to a build of objsync; a DSN whose scheme names another
// driver than --driver is refused rather than misread:
//
//	s3://BUCKET/KEY?region=R&endpoint=URL&path_style=true&profile=P   driver s3
//	minio://[ACCESS:SECRET@]HOST:PORT/BUCKET/KEY?secure=false&region=R  driver minio
//	gs://BUCKET/KEY                                                   driver gcs
//	azblob://ACCOUNT/CONTAINER/KEY?endpoint=URL                       driver azblob
//	file:///ABS/PATH/KEY, or a plain path without a scheme             driver file
//
// s3 takes its credentials from the AWS SDK's chain, gcs from Application
// Default Credentials, minio from the DSN or minio-go's chain, azblob from
// AZURE_STORAGE_CONNECTION_STRING, AZURE_STORAGE_KEY or azidentity's default
// chain; the file driver serves the processes of one host. Each driver's
// package documentation has the details. objsync never prints a DSN's password:
// messages name the lock by its location, and anything printed is scrubbed
// of the password (of the DSN, or of an endpoint URL in its query) where it
// stands as a URL's password, quoted, escaped or percent-encoded, and
// anywhere if it has 8 characters or more (a shorter one, "true", could be
// other output's). Percent-encode a /, ? or # in a password (%2F, %3F,
// %23): a DSN that cannot be read otherwise is refused without its
// parser's message, which could quote a piece of it.
//
// # elect and leader
//
// objsync elect is objsync lock for leader election: the holder of the lock
// is the leader, and --value, required, is what it tells followers (an
// address, a host name). Run one per candidate: one leads and runs its
// command, the others wait, and one of them takes over when the leader
// exits, or after --ttl (15s by default) when it dies.
//
// objsync leader prints the leader: its value, fence, host, pid, since when
// it leads (by its clock), its ttl, and how long this objsync has seen the
// lock unchanged; or, if there is none, it says so and exits 124. One read
// cannot tell a live leader from one that died less than its ttl ago, and
// the line says so. --confirm reads the lock every second until it can
// tell, at most about the ttl and a second: it prints the leader once it has seen it
// write the lock (a renewal, about every 0.3×ttl), or exits 124 once it has
// seen the lock unchanged for the ttl plus 1% (the leader died).
//
// objsync leader --watch prints the leader, or "no leader", at once, and
// then every change, in order, until interrupted: a new term, a new value,
// and "no leader" when the leader resigns or is seen unchanged for its ttl
// plus 1%. The first line comes from one read and may show a leader that
// has just died, which "no leader" then follows within about its ttl and a
// second; every later leader was seen writing the lock.
//
// SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGABRT and SIGALRM
// (and SIGTRAP, SIGSYS, SIGILL, SIGBUS, SIGFPE and SIGSEGV sent by kill),
// the signals that end objsync lock's wait, end every wait of objsync the
// same way, with 128 plus the signal's number (130 for SIGINT, 143 for
// SIGTERM, 131 for SIGQUIT, 134 for SIGABRT, without a dump of Go's
// stacks): leader, --watch and --confirm included, status, --for included,
// unlock, and bench, which releases its holds first.
//
// leader --json prints one object per line with these fields, which stay
// stable:
//
//	leader        bool    false for "no leader" (--watch); the other fields are then empty
//	value         string  the leader's --value
//	fence         number  its term's fencing token
//	since         string  when its term began, RFC 3339, the leader's clock; null without a leader
//	host          string  where it runs
//	pid           number  its process id
//	ttl_ms        number  its lease, in milliseconds
//	unchanged_ms  number  how long this objsync saw the lock unchanged
//	confirmed     bool    true if this objsync saw the leader write the lock, so alive then
//	                      (--confirm, and every --watch line but the first); false after one read
//
// # lock
//
// objsync lock acquires the lock, runs the command with OBJSYNC_FENCE (the
// fencing token, to pass along with every write the lock protects) and
// OBJSYNC_LOCK (the lock's location) in its environment and objsync's
// standard input, output and error, releases the lock when the command
// exits, and exits with the command's status. The lease (--ttl, 30s by
// default) renews itself every third of the ttl while the command runs: the
// ttl is how long others wait when objsync dies, not a limit on the command.
// --timeout (-w) bounds the wait, --try (-n) fails at once if the lock is
// held, and --value records who holds it, for status. As with flock(1),
// --conflict-exit-code (-E) N is the exit code when the lock is not
// acquired (124 by default; 0 to 255; 0 makes it look like success, for a
// job that should skip quietly), and -c 'COMMAND STRING' runs the command
// with sh -c -- (a string may start with - or +), instead of -- COMMAND.
// Unlike flock -w 0, --timeout 0 (the default) waits for ever. A lock or
// elect command line with words after the DSN and neither "--" nor -c is
// refused (exit 2), with the line it should have been, even if a -h or
// --help is among those words: it is the command's (df -h). -h alone, before
// or after the DSN, shows the help.
//
// While it waits, objsync prints one line on stderr saying who holds the
// lock (value, host, pid, fence, since when by the holder's clock),
// rewritten in place every second on a terminal and printed again every ten
// seconds otherwise; --quiet silences it, and the message of a lock not
// acquired (--try, --timeout), which only the exit code tells then. A
// holder that died on this machine is taken over at once, --try included,
// once nothing of its command runs (see below). Any other holder that died
// is taken over once a waiting objsync has seen the lock unchanged for its
// ttl. --try cannot do
// that, as it does not wait: it fails while such a holder's lock still says
// held. Use --timeout, longer than the ttl, for a bounded wait that takes
// over dead holders, or --store-clock.
//
// With --store-clock (s3:// and minio://, not --queue) objsync also counts
// the lock as unchanged since the store's Date less Last-Modified, less
// two seconds for their resolution: a fresh objsync, --try included, takes
// over a lock whose holder died elsewhere more than its ttl and 1% ago, in
// one read. It trusts the store's clocks to agree within 4% of the ttl
// (1.2s for 30s): not a distributed store whose nodes' clocks disagree, not
// a proxy that sets its own Date. objsync check warns of a disagreement of
// more than two seconds.
//
// On Linux, where objsync may create a cgroup v2 below its own (as root, or
// in a subtree that the service manager delegated; Linux 5.14 or later),
// the command starts in a cgroup of its own, "objsync-" and a random
// suffix, made by a guardian process ("objsync (guardian)" in ps,
// objsync-guard in top, in a session of its own) that then waits for
// objsync to end. If objsync dies, however it dies, the guardian kills
// every process in the cgroup (cgroup.kill): those that left the command's
// process group too. The lock records objsync's process and the cgroup, by
// path and id, and a contender on the same machine, in the same pid, time
// and cgroup namespaces, takes the lock over at once only when objsync has
// ended and the cgroup is empty or gone. If the guardian is killed too
// (kill -9 of both, or the end of a pid namespace they ran in), nothing
// empties the cgroup, only the ttl frees the lock, and the cgroup may be
// left behind: rmdir removes it once its processes are gone.
//
// What runs outside the cgroup escapes this: a process that moves itself
// to another cgroup (which takes root, or a delegated subtree), and work
// that the command hands to a daemon that was running already: docker
// run, tmux, screen, systemd-run, ssh, at, or su and runuser where
// pam_systemd puts the session in a scope of its own. Such work is not
// killed when objsync dies, and the lock is taken over at once all the
// same, as a flock(1) lock is released when its holder dies. Run such
// commands with --no-cgroup: the lock then records no process, and only
// its ttl frees it.
//
// When objsync exits as it should, what the command left running in the
// background runs on, as before, and the guardian removes the cgroup, and
// those the command made below it, once it has ended. Where no cgroup can
// be created, or with --no-cgroup, the command runs in objsync's cgroup,
// and the lock records nothing of objsync's process: the ttl frees it.
//
// The command runs in a process group of its own, so that signals reach
// whatever it starts:
//
//   - If the renewals fail, the group gets SIGTERM --grace before the
//     lease ends and SIGKILL when it ends, so that the command is dead
//     before anyone else can take the lock; objsync exits 123. --grace is
//     10s, or half the ttl if that is less, and at most half the ttl. If
//     someone ran objsync unlock --force, SIGTERM comes at the next
//     renewal, and SIGKILL --grace later.
//   - SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGABRT, SIGALRM
//     and SIGWINCH sent to objsync (and SIGTRAP, SIGSYS, SIGILL, SIGBUS,
//     SIGFPE and SIGSEGV sent by kill) are passed on to the group; the lock
//     is released after the command exits, and objsync exits with the
//     command's status. While objsync waits for the lock, those of them that
//     end a process by default (all but SIGWINCH, which is ignored) end the
//     wait with 128 plus the signal's number, SIGQUIT and SIGABRT without a
//     stack dump.
//   - Job control works as if the command were not in a group of its own:
//     a command that reads the terminal is given it, Ctrl-Z stops the
//     command and then objsync (so the shell sees the job stopped), and fg
//     or bg continue both. While objsync is stopped nothing renews the
//     lease: a job stopped for longer than the ttl loses the lock, and its
//     command is stopped when it is continued.
//   - If the lock is lost, SIGKILL goes to the command's cgroup too, if it
//     has one: it reaches the processes that left the group.
//   - If objsync is killed with SIGKILL, the guardian kills the command's
//     cgroup; without one, Linux sends the command SIGTERM (elsewhere the
//     command runs on, and the lock is taken over after its ttl).
//
// If the release fails (the store is unreachable), objsync says so and
// still exits with the command's status: the command did run under the
// lock, and the lock frees itself one ttl after its last renewal. If the
// release finds that the lock was taken over, objsync exits 123.
//
// # status
//
// objsync status shows the lock as stored: held or free, the holder's
// value, host, pid and id, the fence, the ttl, and when the hold began and
// was last renewed, by the holder's clock, and how many waiters are in its
// queue. "Unchanged" is how long this process has seen the holder's state
// stay the same (waiters joining or leaving do not count): 0 for the single read
// status makes, unless --for DURATION has it watch the lock for that long.
// A held lock unchanged for longer than its ttl has a holder that stopped
// renewing it. On s3:// and minio:// it also shows the store age: how long
// the lock has at least been unchanged by the store's Date and
// Last-Modified (shown once that is a second or more: the first two or
// three seconds after each write give none). It says when the holder's
// process runs on this machine, or is gone. status exits 0 if the lock is
// held, 1 if it is free (released), and 3 if there is no lock object (never
// acquired): codes apart from the usage error's 2 and objsync's own 122 and
// up, so that a script can ask "is it held?".
//
// For a held lock, "stale" is true when this objsync judges the lease to
// have run out: the holder's process is gone from this machine
// (holder_gone), or it saw the lock unchanged for longer than its ttl,
// which takes --for longer than the ttl. The store's clock does not count:
// trusting it is --store-clock's choice. A waiting objsync lock takes a
// stale lock over.
//
// status --json prints one object with these fields, which stay stable:
//
//	lock          string  the lock's location
//	exists        bool    false if the lock was never acquired
//	held          bool    whether the lock object says it is held
//	value         string  the holder's --value; for a free lock, the last holder's
//	holder        string  the holder's id, drawn anew for every acquisition; for a free
//	                      lock, that of the write that freed it (the last holder's, or a
//	                      new one after unlock --force)
//	host          string  where the holder runs
//	pid           number  the holder's process id (objsync's, for objsync lock)
//	fence         number  the fencing token of the current or last hold; 0 if never acquired
//	ttl_ms        number  the holder's lease, in milliseconds
//	acquired_at   string  when the hold began, RFC 3339, holder's clock; null if never acquired
//	renewed_at    string  when the holder last wrote the lock (for a free lock, when and by
//	                      whose clock it was freed: unlock --force's, after a break); null likewise
//	unchanged_ms  number  how long this process saw the lock unchanged
//	watched_ms    number  how long it watched (--for)
//	waiters       number  how many waiters are in the lock's queue
//	holder_gone   bool    true if the holder ran on this machine, its process is gone and its cgroup empty (a Lock takes it over at once)
//	holder_running bool   true if the holder recorded its process (objsync lock with a cgroup, the library) and it runs on this machine
//	stale         bool    true if the lock is held and holder_gone, or unchanged_ms exceeds ttl_ms (see above)
//	store_age_ms  number  how long the lock has at least been unchanged by the store's clock (s3, minio); null elsewhere, and for the first two or three seconds after each write
//
// # unlock
//
// objsync unlock --force breaks a stuck lock with a write conditional on the
// state it read, and prints whom it took the lock from. Without --force it
// refuses: the holder learns of it only at its next renewal, and its work
// goes on until then (fences are what protect the resource meanwhile). A
// free lock is left alone, and unlock says so and exits 0: the lock is free,
// as asked.
//
// # check
//
// objsync check probes, with scratch objects next to the lock (the lock's
// key plus ".objsync-check-" and random hex; the lock is not touched),
// each behaviour the protocol relies on and each that stores are known to
// get wrong, and prints a table: one row per behaviour, with its result
// (ok, FAIL, info or warn) and the store's answer. The required ones,
// marked *, are: create-absent and create-present (a create-only write
// succeeds on an absent key, and answers "precondition failed" on a
// present one: not success, not 304), replace-current and replace-stale (a
// write conditional on the current version succeeds with a new version, on
// a stale one is refused), read-back, identical-rewrite (identical bytes
// written again get a new version, or the store is content-versioned: the
// bytes give their version back, as S3 ETags do; the answer says which),
// race-replace and race-create (of 50 concurrent writes conditional on one
// version, or creating one key, exactly one succeeds), and lost-answer
// (writes cut off by a short client timeout are settled by reading back,
// and sending them again never makes two writes). For information:
// quoted-version (whether the store takes a version in quotes, as S3 SDKs
// send ETags; the drivers send them unquoted), error-but-landed (warn:
// writes answered with an error that had landed), store-clock (on drivers
// that tell ages, s3 and minio, the age of a fresh write by the store's
// Date and Last-Modified against the time since it was sent: warn if
// older, clocks of the store that disagree make --store-clock unsafe; it
// cannot see a disagreement under the two seconds taken off), store-date
// (on s3, minio and azblob, the Date of the store's answer against this
// machine's clock: warn if they disagree by more than a second beyond the
// Date's resolution and the round trip; objsync relies on neither, but the
// times it shows would be off), and, with
// --write-rate, write-rate (how soon a second write to one key is
// refused, of up to 20 writes in a row), and conditional-delete (whether
// a delete conditional on a stale version is refused, on drivers that
// can send one, s3 and gcs; the protocol never deletes).
//
// It reports median round trips of reads and writes and removes the
// scratch objects (or names them, for a driver without delete). It exits
// 0 if every required behaviour holds, 122 naming each that failed and the
// store's answer, 125 if it could not test the store. check --json prints
// one object with these fields, which stay stable:
//
//	lock             string   the lock's location
//	passed           bool     every required behaviour holds (exit 0)
//	behaviours       array    one object per row: id, required (bool),
//	                          result ("ok", "FAIL", "info", "warn"), answer
//	read_ms          number   median round trip of a read
//	write_ms         number   median round trip of a write
//	scratch          array    the scratch objects' locations
//	scratch_removed  bool     false if they could not be, or the driver cannot delete
//
// # bench
//
// objsync bench measures a lock on its store: how fast it passes between
// contenders, how many store requests that takes, what they cost, and
// whether there were ever two holders. The DSN must name a lock that
// nothing else uses: bench refuses a held lock (exit 125). It runs, in
// order:
//
//   - an uncontended phase: 20 Lock+Unlock cycles of one Mutex, after one
//     not counted, timed, with their store requests;
//   - round trips: 10 conditional writes and 10 reads of a scratch object,
//     the lock's key plus ".bench-rtt", removed afterwards (a driver that
//     cannot delete gets a message naming it);
//   - a contended phase: --procs processes (8; objsync runs itself again,
//     with the environment variable OBJSYNC_BENCH_WORKER set, and gathers
//     what they print) with --goroutines goroutines each (1), each with a
//     Mutex of its own, take the lock --holds times each (10), or again and
//     again for --duration, holding it --hold (5ms) with a lease of --ttl
//     (10s). Goroutines of one process share their polling and pass the
//     lock on locally; separate processes poll the store, as contenders on
//     separate hosts do.
//
// It reports holds per second; the wait from calling Lock to its return
// (p50, p90, p99, max; with --duration, Locks still waiting at the end
// count up to then); the gap from a release to the next acquisition
// while a Lock was waiting, the time the lock sat free while wanted,
// which includes the writes that free and take it; store requests per
// hold by kind, counted by a wrapper around the driver's store: read,
// write (succeeded), failed precondition, error; fairness: the fewest and
// most holds of one contender, and max_run, the most holds in a row by one
// contender within one wait of another; the uncontended cycle's p50 and
// p99, requests per cycle, and the store's median read and write round
// trips, with the ratio of a cycle to two writes, the physical limit; and
// a cost line: the renewals an hour of a lock held continuously at the
// ttl (a renewal every 0.297×ttl) and the requests of 1,000 hand-offs,
// priced at AWS S3 Standard list prices in us-east-1 as of 2026-12-02
// ($0.005 per 1,000 PUTs, $0.0004 per 1,000 GETs; refused and failed
// requests priced too). A progress line is shown on stderr if it is a
// terminal.
//
// bench checks mutual exclusion as it goes: every hold is recorded on
// CLOCK_MONOTONIC, shared by the processes of a host, from Lock's return
// to Unlock's call, inside the real hold. If two records overlap, or
// fences do not strictly increase in the order the lock was taken, bench
// prints the results and each violation, naming fences and instants, and
// exits 122. If the store fails it exits 125. The signals that end objsync
// lock's wait (SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGABRT,
// SIGALRM...) stop it: the contending processes finish the hold under way
// and release it, and bench exits 128 plus the signal's number; contending
// processes whose bench was killed stop the same way.
//
// bench --json prints one object with these fields, which stay stable
// (durations in milliseconds; a latency is {n, p50, p90, p99, max}; a
// request breakdown is {read, write, precondition_failed, error, total}):
//
//	lock                 string   the lock's location
//	procs, goroutines    number   the contenders: processes, and goroutines in each
//	holds_each           number   --holds; 0 with --duration
//	duration_ms          number   --duration; 0 with --holds
//	hold_ms, ttl_ms      number   --hold and --ttl
//	holds                number   holds in the contended phase
//	elapsed_ms           number   from its first Lock call to its last Unlock's return
//	holds_per_second     number   holds / elapsed
//	wait_ms              latency  from calling Lock to its return
//	unfinished_waits     number   Locks still waiting when --duration ended, in wait_ms
//	gap_ms               latency  release to next acquisition, while a Lock waited
//	requests_per_hold    breakdown
//	holds_per_contender  {min, max}
//	max_run              number   most holds in a row by one contender within another's wait
//	uncontended          {cycles, cycle_ms (latency), requests_per_cycle (breakdown),
//	                      read_ms, write_ms (median round trips), cycle_over_two_writes}
//	cost                 {prices, put_usd_per_1000, get_usd_per_1000, renew_every_ms,
//	                      held_requests_per_hour, held_usd_per_hour,
//	                      handoff_requests_per_1000, handoff_usd_per_1000}
//	violations           number   overlaps and fences out of order; exit 122 if not 0
//	checked              number   holds checked, every phase's
//	scratch              string   the scratch object's location
//	scratch_removed      bool     false if it could not be removed
//
// # Exit codes
//
//	0      success; for lock, the command exited 0; status: the lock is held
//	N      lock: the command's own exit status, passed through
//	1      status: the lock is free (released)
//	2      usage error: bad flag, bad DSN, unknown scheme or driver
//	3      status: no lock object (never acquired)
//	122    check: a required behaviour failed: the store is unsafe for objsync;
//	       bench: it saw two holders at once, or fences out of order
//	123    lock: the lock was lost while the command ran; the command was stopped
//	124    lock: not acquired (--try and held, or --timeout elapsed; -E sets another
//	       code); leader: none
//	125    objsync failed: store unreachable, access denied, not a lock object;
//	       bench: the lock is held...
//	126    lock: the command was found but could not be run
//	127    lock: the command was not found
//	128+N  lock: the command died of signal N, or objsync got signal N while waiting;
//	       status, leader, unlock, bench: objsync got signal N
//
// objsync lock passes its command's status through, so any code objsync
// uses for itself could also be the command's. Commands mostly use small
// codes (1, 2, 3...) and the sysexits range 64-78, so objsync's own
// outcomes sit just below 128, where other wrappers put theirs: timeout(1)
// exits 124 when the time runs out and 125 when it fails itself, as do
// env(1), nice(1) and docker run for 125, and every shell uses 126 and 127
// for a command that cannot be run or found. A script that must tell
// objsync's outcomes from its command's should keep its command's codes
// out of 122-127. Usage errors exit 2, as with the flag package and getopt:
// they are mistakes in the invocation, found the first time it runs, not
// outcomes a script branches on. The same codes hold for every command.
package main
