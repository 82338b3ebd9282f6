//go:build unix

package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/objsync/objsync/driver"
)

const checkHelp = `Usage: objsync check [--json] [--write-rate] DSN

Probe, with scratch objects next to the lock (its key plus ".objsync-check-"
and random hex; the lock itself is not touched), each behaviour objsync's
safety rests on and each that stores are known to get wrong, and print one
row per behaviour: its name, the result (ok, FAIL, info or warn) and what
the store answered. Required behaviours (*) are ok or FAIL:

  create-absent *     a create-only write on an absent key succeeds
  create-present *    a create-only write on a present key answers
                      "precondition failed" (not success, not 304)
  replace-current *   a write conditional on the current version succeeds,
                      with a new version
  replace-stale *     a write conditional on a stale version is refused
  read-back *         a read returns the bytes and version last written
  identical-rewrite * rewriting identical bytes gives a new version, or the
                      store is content-versioned (the bytes give their
                      version back: S3 ETags); the answer says which
  quoted-version      a version sent in quotes ("ETag" as S3 SDKs send it)
                      is accepted or refused; objsync's drivers send ETags
                      unquoted, which every store tested accepts, and the
                      s3 and minio drivers refuse to send a quoted one
  race-replace *      of 50 concurrent writes conditional on one version,
                      exactly one succeeds
  race-create *       of 50 concurrent create-only writes on a fresh key,
                      exactly one succeeds
  lost-answer *       writes cut off by a short client timeout are settled
                      by reading back: the read shows whether each landed,
                      and sending it again does not make two writes
  error-but-landed    writes answered with an error although they landed
                      (warn), as some stores do after storing the object
  store-clock         on s3:// and minio://, the age of a fresh write by the
                      store's Date and Last-Modified against the time since
                      it was sent: warn if older, as clocks of the store that
                      disagree make --store-clock unsafe (it cannot see a
                      disagreement under the two seconds taken off)
  store-date          on s3://, minio:// and azblob://, the Date of the store's
                      answer against this machine's clock: warn if they
                      disagree by more than a second beyond the Date's
                      resolution and the round trip (objsync relies on
                      neither; the times it shows would be off)
  write-rate          with --write-rate: how soon a second write to one key
                      is refused, of up to 20 writes in a row (costs them)
  conditional-delete  whether a delete conditional on a stale version is
                      refused, on drivers that can send one (s3, gcs):
                      MinIO, Ceph RGW and the GCS emulator delete anyway,
                      which is why objsync never deletes a lock

Then it reports the median round trips of reads and writes and removes the
scratch objects (or names them, if the driver cannot delete). It exits 0 if
every required behaviour holds, 122 naming each that fails and the store's
answer (the store is unsafe for objsync: some accept conditional requests
and ignore the conditions), and 125 if it could not test the store.

With --json it prints one JSON object with these fields:
  lock             the lock's location (never with a secret)
  passed           true if every required behaviour holds (exit 0)
  behaviours       one object per row: id (the name above), required,
                   result ("ok", "FAIL", "info" or "warn"), answer
  read_ms          the median round trip of a read, in milliseconds
  write_ms         the median round trip of a write, in milliseconds
  scratch          the locations of the scratch objects written
  scratch_removed  false if they could not be removed, or the driver cannot

Example:
  objsync check 'minio://127.0.0.1:9000/locks/deploy?secure=false'
`

func checkCommand() *cobra.Command {
	cmd := &cobra.Command{Use: "check [--json] [--write-rate] DSN", Short: "test that the store is safe for objsync", Long: checkHelp}
	fs := cmd.Flags()
	asJSON := fs.Bool("json", false, "print a JSON object (see above)")
	writeRate := fs.Bool("write-rate", false, "also measure how soon a second write to one key is refused (up to 20 more writes)")
	driverName := driverFlag(fs)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		dsn, _, err := operands(cmd, args, false)
		if err != nil {
			return err
		}
		return failed(runCheck(dsn, *driverName, checkOptions{writeRate: *writeRate}, *asJSON))
	}
	return cmd
}

// checkOptions are the probes check runs beyond those it always runs.
type checkOptions struct {
	writeRate bool
}

func runCheck(dsn, driverName string, opts checkOptions, asJSON bool) error {
	store, key, err := openStore(dsn, driverName)
	if err != nil {
		return err
	}
	loc := store.Location(key)
	if !asJSON {
		out.printf("checking the store of %s\n", loc)
	}
	ictx, stop := interruptible()
	defer stop()
	ctx, cancel := context.WithTimeout(ictx, 4*storeTimeout)
	defer cancel()
	r, err := checkStore(ctx, store, key, opts)
	if ictx.Err() != nil { // a signal: the scratch objects were removed
		return context.Cause(ictx)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", loc, err)
	}
	if asJSON {
		data, err := json.MarshalIndent(r, "", "  ")
		if err != nil {
			return err
		}
		out.printf("%s\n", data)
	} else {
		r.print(scrubbed{os.Stdout})
	}
	return r.verdict()
}

// scrubbed writes through the printer.
type scrubbed struct{ w io.Writer }

func (s scrubbed) Write(p []byte) (int, error) {
	out.print(s.w, string(p))
	return len(p), nil
}

// errUnsafe marks a store that failed a required behaviour.
var errUnsafe = errors.New("this store is unsafe for objsync")

// The results of a behaviour.
const (
	resultOK   = "ok"
	resultFail = "FAIL"
	resultInfo = "info"
	resultWarn = "warn"
)

// behaviour is one row of check's report. Its JSON field names are
// documented in checkHelp; keep them stable.
type behaviour struct {
	ID       string `json:"id"`
	Required bool   `json:"required"`
	Result   string `json:"result"`
	Answer   string `json:"answer"`
}

// checkReport is what check found; its JSON form is check --json's
// output, documented in checkHelp.
type checkReport struct {
	Lock           string      `json:"lock"`
	Passed         bool        `json:"passed"`
	Behaviours     []behaviour `json:"behaviours"`
	ReadMillis     float64     `json:"read_ms"`
	WriteMillis    float64     `json:"write_ms"`
	Scratch        []string    `json:"scratch"`
	ScratchRemoved bool        `json:"scratch_removed"`

	canDelete  bool  // the driver implements driver.Deleter
	scratchErr error // why scratch objects may be left
}

// failures returns the required behaviours that failed.
func (r *checkReport) failures() []behaviour {
	var failed []behaviour
	for _, b := range r.Behaviours {
		if b.Required && b.Result != resultOK {
			failed = append(failed, b)
		}
	}
	return failed
}

// verdict returns nil if every required behaviour held, else the exit
// error naming those that failed and the store's answers.
func (r *checkReport) verdict() error {
	failed := r.failures()
	if len(failed) == 0 {
		return nil
	}
	msgs := make([]string, len(failed))
	for i, b := range failed {
		msgs[i] = b.ID + ": " + b.Answer
	}
	return &exitError{exitUnsafe, fmt.Errorf("%s: %w: %s", r.Lock, errUnsafe, strings.Join(msgs, "; "))}
}

// print writes the report as a table, then the round trips and what
// became of the scratch objects.
func (r *checkReport) print(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "behaviour\tresult\tthe store's answer\n")
	for _, b := range r.Behaviours {
		id := b.ID
		if b.Required {
			id += " *"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", id, b.Result, b.Answer)
	}
	tw.Flush()
	fmt.Fprintf(w, "(* required)\n")
	if r.ReadMillis > 0 || r.WriteMillis > 0 {
		fmt.Fprintf(w, "round trips: read %s, write %s (medians)\n", short(duration(r.ReadMillis)), short(duration(r.WriteMillis)))
	}
	switch {
	case !r.canDelete:
		fmt.Fprintf(w, "this driver cannot delete: remove the scratch objects by hand: %s\n", strings.Join(r.Scratch, " "))
	case r.scratchErr != nil:
		fmt.Fprintf(w, "could not remove the scratch objects %s, if they exist: %v\n", strings.Join(r.Scratch, " "), r.scratchErr)
	default:
		fmt.Fprintf(w, "removed the %d scratch objects\n", len(r.Scratch))
	}
	if r.Passed {
		fmt.Fprintf(w, "passed: the store keeps the conditions objsync relies on\n")
	}
}

const (
	concurrentWriters = 50
	timedReads        = 5
	// Transient errors are tried again probeTries times, waiting from
	// probeBackoff on, doubling: enough for a store that accepts one
	// write per second to an object (GCS).
	probeTries   = 5
	probeBackoff = 250 * time.Millisecond
	// cutWrites is how many writes lost-answer cuts off, of at most
	// 4×cutWrites it sends.
	cutWrites = 5
	// rateWrites is how many writes in a row write-rate sends at most.
	rateWrites = 20
)

// checker probes a store with scratch objects.
type checker struct {
	st      driver.Store
	opts    checkOptions
	nonce   string
	suffix  func() string // of scratch keys: random hex
	written int           // contents made so far
	scratch []string      // keys of the scratch objects it wrote
	rows    []behaviour

	timed         bool // record round trips; not while writers contend
	reads, writes []time.Duration

	mu     sync.Mutex // guards landed, written to by contending writers
	landed []string   // the errors of writes that had landed

	aged     string    // a scratch key last written by a request sent at agedSent
	agedSent time.Time // (see storeClock)
}

// checkStore probes st with scratch objects next to key and removes them.
// It returns an error only if it could not test the store.
func checkStore(ctx context.Context, st driver.Store, key string, opts checkOptions) (*checkReport, error) {
	c := &checker{st: st, opts: opts, nonce: randomHex(), suffix: randomHex, timed: true}
	return c.run(ctx, key)
}

func (c *checker) run(ctx context.Context, key string) (*checkReport, error) {
	err := c.probe(ctx, key)
	r := &checkReport{Lock: c.st.Location(key), Behaviours: c.rows}
	if len(c.reads) > 0 && len(c.writes) > 0 {
		r.ReadMillis, r.WriteMillis = millis(int64(median(c.reads))), millis(int64(median(c.writes)))
	}
	r.Scratch = make([]string, len(c.scratch))
	for i, k := range c.scratch {
		r.Scratch[i] = c.st.Location(k)
	}
	r.canDelete, r.scratchErr = c.cleanUp()
	r.ScratchRemoved = r.canDelete && r.scratchErr == nil
	r.Passed = err == nil && len(r.failures()) == 0
	return r, err
}

// add records a row of the report.
func (c *checker) add(id string, required bool, result, answer string) {
	c.rows = append(c.rows, behaviour{ID: id, Required: required, Result: result, Answer: answer})
}

// expect records the required behaviour id: ok if the write's error is
// want (nil, or driver.ErrPrecondition), FAIL with the store's answer
// otherwise. It reports whether the behaviour held.
func (c *checker) expect(id string, v driver.Version, err, want error) bool {
	held := (want == nil && err == nil) || (want != nil && errors.Is(err, want))
	c.add(id, true, pick(held, resultOK, resultFail), told(v, err))
	return held
}

// told says what the store answered to a write.
func told(v driver.Version, err error) string {
	switch {
	case err == nil:
		return fmt.Sprintf("accepted, version %s", v)
	case errors.Is(err, driver.ErrPrecondition):
		return "precondition failed"
	}
	return err.Error()
}

func pick[T any](cond bool, yes, no T) T {
	if cond {
		return yes
	}
	return no
}

// untested records the required behaviours ids as not tested, because
// the one named by cause failed first.
func (c *checker) untested(cause string, ids ...string) {
	for _, id := range ids {
		c.add(id, true, resultFail, "not tested: "+cause+" failed")
	}
}

// scratchObject is what check knows a scratch object to hold.
type scratchObject struct {
	key     string
	data    []byte
	version driver.Version
}

func (c *checker) probe(ctx context.Context, key string) error {
	k, v, err := c.create(ctx, key)
	switch {
	case errors.Is(err, driver.ErrPrecondition):
		c.expect("create-absent", v, err, nil)
		c.untested("create-absent", "create-present", "replace-current", "replace-stale", "read-back",
			"identical-rewrite", "race-replace", "race-create", "lost-answer")
		return nil
	case err != nil:
		return fmt.Errorf("writing a scratch object: %w", err)
	}
	c.expect("create-absent", v, nil, nil)
	o, err := c.basics(ctx, k, v)
	if err != nil {
		return err
	}
	if o.key == "" {
		c.untested("replace-current", "replace-stale", "read-back", "identical-rewrite", "race-replace", "lost-answer")
	} else if o, err = c.replacing(ctx, o); err != nil {
		return err
	}
	if err := c.race(ctx, key); err != nil {
		return err
	}
	c.landedDespiteErrors()
	c.storeClock(ctx, c.aged, c.agedSent)
	c.storeDate(ctx, c.scratch[0])
	if o.key == "" {
		return nil
	}
	if c.opts.writeRate {
		c.writeRate(ctx, o)
	}
	c.conditionalDelete(ctx, o.key, v)
	return nil
}

// replacing runs the probes of writes that replace o, and returns what
// its key then holds.
func (c *checker) replacing(ctx context.Context, o scratchObject) (scratchObject, error) {
	var err error
	for _, probe := range []func(context.Context, scratchObject) (scratchObject, error){
		c.identicalRewrite, c.quotedVersion, c.raceReplace, c.lostAnswer,
	} {
		if o, err = probe(ctx, o); err != nil {
			return scratchObject{}, err
		}
	}
	return o, nil
}

// basics tests create-present, replace-current, replace-stale and
// read-back on k, created at version v, and returns what k then holds;
// a zero object if a replacing write could not be made.
func (c *checker) basics(ctx context.Context, k string, v driver.Version) (scratchObject, error) {
	nv, err := c.write(ctx, k, c.content(), "")
	if !c.expect("create-present", nv, err, driver.ErrPrecondition) && err == nil {
		v = nv
	}
	last := c.content()
	sent := time.Now()
	nv, err = c.write(ctx, k, last, v)
	if err == nil && nv == v {
		c.add("replace-current", true, resultFail, fmt.Sprintf("accepted, but kept version %s for other bytes", v))
		return scratchObject{}, nil
	}
	if !c.expect("replace-current", nv, err, nil) {
		return scratchObject{}, nil
	}
	c.aged, c.agedSent = k, sent
	o := scratchObject{k, last, nv}
	stale := c.content()
	if nv, err = c.write(ctx, k, stale, v); !c.expect("replace-stale", nv, err, driver.ErrPrecondition) && err == nil {
		o = scratchObject{k, stale, nv}
	}
	for range timedReads {
		data, v, err := c.read(ctx, k)
		if err != nil {
			return scratchObject{}, fmt.Errorf("testing read-back: %w", err)
		}
		if !bytes.Equal(data, o.data) || v != o.version {
			c.add("read-back", true, resultFail, fmt.Sprintf("read %q at version %s after writing %q at version %s", data, v, o.data, o.version))
			return o, nil
		}
	}
	c.add("read-back", true, resultOK, fmt.Sprintf("%d reads gave the bytes and version last written", timedReads))
	return o, nil
}

// identicalRewrite writes o's bytes again. A new version is what most
// stores give; the same version is safe only if versions follow the
// content (S3 ETags, MD5s), which it checks by writing other bytes and
// then o's again: they must get o's version back.
func (c *checker) identicalRewrite(ctx context.Context, o scratchObject) (scratchObject, error) {
	const id = "identical-rewrite"
	v, err := c.write(ctx, o.key, o.data, o.version)
	switch {
	case err != nil:
		c.add(id, true, resultFail, told(v, err))
		return c.current(ctx, o.key)
	case v != o.version:
		c.add(id, true, resultOK, "a new version for the same bytes: versions are per write")
		return scratchObject{o.key, o.data, v}, nil
	}
	other := c.content()
	v2, err := c.write(ctx, o.key, other, v)
	if err != nil {
		c.add(id, true, resultFail, "the same bytes kept their version; then other bytes: "+told(v2, err))
		return c.current(ctx, o.key)
	}
	v3, err := c.write(ctx, o.key, o.data, v2)
	switch {
	case err != nil:
		c.add(id, true, resultFail, "the same bytes kept their version; then the first bytes again: "+told(v3, err))
		return c.current(ctx, o.key)
	case v3 != v:
		c.add(id, true, resultFail, fmt.Sprintf("the same bytes kept version %s, but got %s when written again after others: versions neither change with every write nor follow the content", v, v3))
	default:
		c.add(id, true, resultOK, fmt.Sprintf("content-versioned: the same bytes give their version (%s) back; objsync makes every write's bytes unique", v))
	}
	return scratchObject{o.key, o.data, v3}, nil
}

// quotedVersion sends o's version in quotes, as S3 SDKs send ETags in
// If-Match: Ceph RGW refuses that form, and DigitalOcean Spaces and
// Hetzner are reported to. objsync's drivers send versions as they got
// them, so the answer is for information.
func (c *checker) quotedVersion(ctx context.Context, o scratchObject) (scratchObject, error) {
	const id = "quoted-version"
	if strings.HasPrefix(string(o.version), `"`) {
		c.add(id, false, resultInfo, "not tested: the store's versions are quoted")
		return o, nil
	}
	data := c.content()
	v, err := c.write(ctx, o.key, data, driver.Version(`"`+string(o.version)+`"`))
	const unquoted = "unquoted: accepted (replace-current); quoted: "
	if err == nil {
		c.add(id, false, resultInfo, unquoted+told(v, nil))
		return scratchObject{o.key, data, v}, nil
	}
	// The whole error: the s3 and minio drivers refuse to send a quoted
	// ETag, and say so.
	c.add(id, false, resultInfo, unquoted+err.Error())
	if errors.Is(err, driver.ErrPrecondition) {
		return o, nil
	}
	return c.current(ctx, o.key)
}

// current reads what k holds.
func (c *checker) current(ctx context.Context, k string) (scratchObject, error) {
	data, v, err := c.read(ctx, k)
	if err != nil {
		return scratchObject{}, fmt.Errorf("reading a scratch object: %w", err)
	}
	return scratchObject{k, data, v}, nil
}

// raceReplace has concurrentWriters write o's key at once, each
// conditional on o's version.
func (c *checker) raceReplace(ctx context.Context, o scratchObject) (scratchObject, error) {
	won, other := c.contend(ctx, o.key, o.version)
	return c.winner(ctx, "race-replace", o.key, won, other)
}

// winner records the race id, which won those of won while others
// failed with other (neither success nor precondition failed), and
// returns what the key then holds: exactly one winner's bytes.
func (c *checker) winner(ctx context.Context, id, k string, won [][]byte, other []error) (scratchObject, error) {
	what := fmt.Sprintf("%d of %d concurrent writes succeeded", len(won), concurrentWriters)
	cur, err := c.current(ctx, k)
	switch {
	case err != nil:
		return scratchObject{}, fmt.Errorf("testing %s: %w", id, err)
	case len(other) > 0:
		c.add(id, true, resultFail, fmt.Sprintf("%s, %d answered neither success nor precondition failed; the first: %v", what, len(other), other[0]))
	case len(won) != 1:
		c.add(id, true, resultFail, what)
	case !bytes.Equal(cur.data, won[0]):
		c.add(id, true, resultFail, what+", but the object holds the bytes of a writer that was refused")
	default:
		c.add(id, true, resultOK, what)
	}
	return cur, nil
}

// race has concurrentWriters create one fresh key at the same time.
func (c *checker) race(ctx context.Context, key string) error {
	var k string
	var won [][]byte
	var other []error
	for try := 1; ; try++ {
		k = c.scratchKey(key)
		if won, other = c.contend(ctx, k, ""); len(won) > 0 {
			c.scratch = append(c.scratch, k)
		}
		if len(won) > 0 || len(other) > 0 || try == probeTries || !c.foreign(ctx, k) {
			break
		}
	}
	if len(won) == 0 {
		c.add("race-create", true, resultFail, fmt.Sprintf("0 of %d concurrent create-only writes on a fresh key succeeded", concurrentWriters))
		return nil
	}
	_, err := c.winner(ctx, "race-create", k, won, other)
	return err
}

// contend has concurrentWriters write k at the same time, conditional on
// ifVersion, and returns the contents of those that succeeded and the
// errors that were not a failed precondition.
func (c *checker) contend(ctx context.Context, k string, ifVersion driver.Version) (won [][]byte, other []error) {
	contents := make([][]byte, concurrentWriters)
	for i := range contents {
		contents[i] = c.content()
	}
	errs := make([]error, concurrentWriters)
	c.timed = false
	var wg sync.WaitGroup
	for i := range contents {
		wg.Go(func() { _, errs[i] = c.write(ctx, k, contents[i], ifVersion) })
	}
	wg.Wait()
	c.timed = true
	for i, err := range errs {
		switch {
		case err == nil:
			won = append(won, contents[i])
		case !errors.Is(err, driver.ErrPrecondition):
			other = append(other, err)
		}
	}
	return won, other
}

// lostAnswer sends writes to o's key with a client timeout shorter than a
// write's round trip, halving it until cutWrites writes were cut off, and
// settles each as the lock protocol does: a read tells whether it landed,
// then the same write is sent again. That must be refused if it had
// landed, and succeed and stay if it had not. A write still on its way
// when the read was answered may land after it: sending it again must
// then be refused and the object hold it, once. Any other end is two
// writes where the writer meant one.
func (c *checker) lostAnswer(ctx context.Context, o scratchObject) (scratchObject, error) {
	const id = "lost-answer"
	timeout := median(c.writes) / 2
	// How long a write cut off may take to land, if it still can: a
	// request the store is still serving.
	lateWait := min(max(20*median(c.writes), 50*time.Millisecond), time.Second)
	var cut, landed, late int
	for try := 0; cut < cutWrites && try < 4*cutWrites; try++ {
		data := c.content()
		wctx, cancel := context.WithTimeout(ctx, timeout)
		v, err := c.st.Write(wctx, o.key, data, o.version)
		cancel()
		switch {
		case err == nil:
			o = scratchObject{o.key, data, v}
			timeout /= 2
			continue
		case errors.Is(err, driver.ErrPrecondition):
			c.add(id, true, resultFail, "a write cut off by the client answered: "+told(v, err))
			return c.current(ctx, o.key)
		}
		cut++
		got, err := c.current(ctx, o.key)
		if err != nil {
			return scratchObject{}, err
		}
		hadLanded := bytes.Equal(got.data, data)
		v, err = c.write(ctx, o.key, data, o.version)
		if err != nil && !errors.Is(err, driver.ErrPrecondition) {
			return scratchObject{}, fmt.Errorf("testing %s: %w", id, err)
		}
		if hadLanded && err == nil {
			c.add(id, true, resultFail, "a write that had landed was accepted again when sent again: two writes")
			return c.current(ctx, o.key)
		}
		if err == nil {
			time.Sleep(lateWait) // for the write cut off to land, if it still can
		}
		now, rerr := c.current(ctx, o.key)
		switch {
		case rerr != nil:
			return scratchObject{}, rerr
		case err == nil && now.version != v:
			c.add(id, true, resultFail, fmt.Sprintf("a write cut off landed up to %s later, over the same write sent again (version %s, not %s): two writes", short(lateWait), now.version, v))
			return now, nil
		case err != nil && !bytes.Equal(now.data, data):
			c.add(id, true, resultFail, "a write sent again was refused, yet the object does not hold it: "+told(v, err))
			return now, nil
		case hadLanded:
			landed++
		case err != nil:
			late++
		}
		o = now
	}
	c.add(id, true, resultOK, fmt.Sprintf("%d writes cut off by client timeouts (down to %s): %d had landed by the read, %d landed after it; sent again, those were refused, the others wrote once",
		cut, short(timeout), landed, late))
	return o, nil
}

// landedDespiteErrors records the writes answered with an error that had
// landed after all, as reads showed.
func (c *checker) landedDespiteErrors() {
	const id = "error-but-landed"
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.landed) == 0 {
		c.add(id, false, resultInfo, "none seen")
		return
	}
	c.add(id, false, resultWarn, fmt.Sprintf("%d writes answered an error although they had landed, as a read showed (objsync settles such answers by reading back); the first: %s",
		len(c.landed), c.landed[0]))
}

// storeClock reports what --store-clock (objsync.WithStoreClock) would
// make of the store's clock, on drivers that tell ages: the object at key,
// written by a request sent at sent, must read as no older than the time
// since then. An older age means clocks of the store that disagree (the
// node that answers and the one that stamped the write), or a Date from
// elsewhere: --store-clock could then take a live holder's lock. This is
// advice, not a failure: objsync never counts the store's clock unless
// asked to.
func (c *checker) storeClock(ctx context.Context, key string, sent time.Time) {
	const id = "store-clock"
	ages, ok := c.st.(driver.AgeReader)
	switch {
	case !ok:
		c.add(id, false, resultInfo, "this driver tells no ages")
		return
	case key == "":
		c.add(id, false, resultInfo, "not tested: replace-current failed")
		return
	}
	_, _, age, err := ages.ReadAge(ctx, key)
	since := time.Since(sent)
	switch {
	case err != nil:
		c.add(id, false, resultWarn, fmt.Sprintf("could not read the age of a fresh write: %v", err))
	case age > since+since/100:
		c.add(id, false, resultWarn, fmt.Sprintf("a write sent %s ago reads as at least %s old by the store's Date and Last-Modified: its clocks disagree; do not use --store-clock here",
			short(since), short(age)))
	default:
		c.add(id, false, resultInfo, fmt.Sprintf("a write sent %s ago reads as at least %s old (a lower bound: clocks that disagree by less than the two seconds taken off do not show)",
			short(since), short(age)))
	}
}

// storeDate compares the store's clock, by the Date of its answer to a
// read of key, with this machine's. objsync never relies on either (only
// on clocks that run at about the same rate), so a disagreement is a
// warning: the times objsync status shows are off by as much, and S3 and
// Azure refuse requests signed 15 minutes off their clocks.
func (c *checker) storeDate(ctx context.Context, key string) {
	const id = "store-date"
	dates, ok := c.st.(driver.DateReader)
	if !ok {
		c.add(id, false, resultInfo, "this driver tells no store time")
		return
	}
	sent := time.Now()
	date, err := dates.ReadDate(ctx, key)
	answered := time.Now()
	if err != nil {
		c.add(id, false, resultWarn, fmt.Sprintf("could not read the store's Date: %v", err))
		return
	}
	// The store answered between sent and answered, at a time in
	// [date, date+1s) by its clock (HTTP dates are cut to the second): so
	// its clock is ahead of this machine's by a duration in [lo, hi].
	lo, hi := date.Sub(answered), date.Add(time.Second).Sub(sent)
	direction, off := "ahead of", lo
	if hi < -time.Second {
		direction, off = "behind", -hi
	}
	if off <= time.Second {
		c.add(id, false, resultInfo, fmt.Sprintf("the store's Date agrees with this machine's clock to within %s (its resolution and the round trip)",
			short(max(-lo, hi))))
		return
	}
	c.add(id, false, resultWarn, fmt.Sprintf("the store's clock is %s this machine's by at least %s (%s): one of them is wrong; objsync does not rely on either, but the times it shows are off by as much",
		direction, shortFloor(off), date.UTC().Format(time.RFC1123)))
}

// writeRate writes o's key up to rateWrites times in a row, each as soon
// as the last was answered, and says when the store first refused one.
func (c *checker) writeRate(ctx context.Context, o scratchObject) {
	const id = "write-rate"
	last := time.Now()
	start := last
	for i := 1; i <= rateWrites; i++ {
		data := c.content()
		v, err := c.st.Write(ctx, o.key, data, o.version)
		switch {
		case err == nil:
			o, last = scratchObject{o.key, data, v}, time.Now()
			continue
		case driver.IsRetryable(err):
			c.add(id, false, resultInfo, fmt.Sprintf("write %d in a row refused %s after the last accepted one: %v", i, short(time.Since(last)), err))
		default:
			c.add(id, false, resultInfo, fmt.Sprintf("write %d in a row failed: %s", i, told(v, err)))
		}
		return
	}
	c.add(id, false, resultInfo, fmt.Sprintf("%d writes in a row accepted, one every %s", rateWrites, short(time.Since(start)/rateWrites)))
}

// conditionalDelete sends a delete of k conditional on stale, a version
// it no longer has, on drivers that can, and says whether the store
// honoured the condition. The protocol never deletes: this is for
// information.
func (c *checker) conditionalDelete(ctx context.Context, k string, stale driver.Version) {
	const id = "conditional-delete"
	d, ok := c.st.(driver.ConditionalDeleter)
	if !ok {
		c.add(id, false, resultInfo, "not tested: this driver deletes only unconditionally (the protocol never deletes)")
		return
	}
	err := d.DeleteIf(ctx, k, stale)
	_, _, rerr := c.read(ctx, k)
	switch {
	case errors.Is(err, driver.ErrPrecondition) && rerr == nil:
		c.add(id, false, resultInfo, "honoured: a delete conditional on a stale version was refused (precondition failed)")
	case err == nil && errors.Is(rerr, driver.ErrNotExist):
		c.add(id, false, resultInfo, "ignored: a delete conditional on a stale version deleted the object (the protocol never deletes)")
	default:
		answer, then := "success", "the object is there"
		if err != nil {
			answer = err.Error()
		}
		if rerr != nil {
			then = "a read answered " + rerr.Error()
		}
		c.add(id, false, resultInfo, fmt.Sprintf("a delete conditional on a stale version answered %s; then %s", answer, then))
	}
}

// create writes a scratch object next to key, create-only, and returns
// its key and version. A key that holds an object this check did not
// write, by chance or by someone's design, is not check's to test, report
// or remove: it tries another.
func (c *checker) create(ctx context.Context, key string) (string, driver.Version, error) {
	for try := 1; ; try++ {
		k := c.scratchKey(key)
		v, err := c.write(ctx, k, c.content(), "")
		if err == nil {
			c.scratch = append(c.scratch, k)
		}
		if err == nil || !errors.Is(err, driver.ErrPrecondition) || try == probeTries || !c.foreign(ctx, k) {
			return k, v, err
		}
	}
}

// foreign reports whether k holds an object that this check did not
// write.
func (c *checker) foreign(ctx context.Context, k string) bool {
	data, _, err := c.read(ctx, k)
	return err == nil && !bytes.HasPrefix(data, fmt.Appendf(nil, "objsync check %s ", c.nonce))
}

// write writes data at key if ifVersion holds, trying again after a
// transient error: every content is unique, so a read tells whether a
// failed try landed after all, which it notes.
func (c *checker) write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (v driver.Version, err error) {
	var failed error // the last try's, if it failed
	err = retry(ctx, func() error {
		if failed != nil {
			if got, gv, err := c.st.Read(ctx, key); err == nil && bytes.Equal(got, data) {
				c.mu.Lock()
				c.landed = append(c.landed, failed.Error())
				c.mu.Unlock()
				v = gv
				return nil
			}
		}
		start := time.Now()
		v, failed = c.st.Write(ctx, key, data, ifVersion)
		c.record(&c.writes, start, failed)
		return failed
	})
	return v, err
}

func (c *checker) read(ctx context.Context, key string) (data []byte, v driver.Version, err error) {
	err = retry(ctx, func() error {
		start := time.Now()
		var rerr error
		data, v, rerr = c.st.Read(ctx, key)
		c.record(&c.reads, start, rerr)
		return rerr
	})
	return data, v, err
}

// retry calls f until it returns an error that is not transient, at most
// probeTries times.
func retry(ctx context.Context, f func() error) error {
	wait := probeBackoff
	for try := 1; ; try++ {
		err := f()
		if !driver.IsRetryable(err) || try == probeTries {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// record notes the round trip of a request the store answered.
func (c *checker) record(list *[]time.Duration, start time.Time, err error) {
	if c.timed && (err == nil || errors.Is(err, driver.ErrPrecondition) || errors.Is(err, driver.ErrNotExist)) {
		*list = append(*list, time.Since(start))
	}
}

// scratchKey returns a key for a scratch object next to key.
func (c *checker) scratchKey(key string) string { return key + ".objsync-check-" + c.suffix() }

// content returns bytes that no other write of any check ever had.
func (c *checker) content() []byte {
	c.written++
	return fmt.Appendf(nil, "objsync check %s %d\n", c.nonce, c.written)
}

// cleanUp removes the scratch objects. It reports whether the driver can
// delete, and the first error of those it could not remove.
func (c *checker) cleanUp() (canDelete bool, err error) {
	d, ok := c.st.(driver.Deleter)
	if !ok {
		return false, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), storeTimeout)
	defer cancel()
	for _, k := range c.scratch {
		if derr := d.Delete(ctx, k); derr != nil {
			err = cmp.Or(err, derr)
		}
	}
	return true, err
}

func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(ds))
	return s[len(s)/2]
}

func randomHex() string {
	var b [8]byte
	rand.Read(b[:]) // never fails
	return hex.EncodeToString(b[:])
}
