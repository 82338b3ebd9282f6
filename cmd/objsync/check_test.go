//go:build unix

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/s3compat/s3test"
	"github.com/objsync/objsync/mem"
)

// checkIDs are the rows check always reports, in order.
var checkIDs = []string{"create-absent", "create-present", "replace-current", "replace-stale", "read-back",
	"identical-rewrite", "quoted-version", "race-replace", "lost-answer", "race-create", "error-but-landed", "store-clock",
	"store-date", "conditional-delete"}

func TestCheckFile(t *testing.T) {
	dir := t.TempDir()
	r := runCLI(t, dir, "check", "lock")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("check: exit %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}
	for _, want := range []string{"behaviour ", "round trips: read ", "removed the 2 scratch objects\n", "passed: the store keeps the conditions objsync relies on\n"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("check output does not contain %q:\n%s", want, r.stdout)
		}
	}
	for _, id := range checkIDs {
		if !strings.Contains(r.stdout, "\n"+id+" ") {
			t.Errorf("no row %s:\n%s", id, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "FAIL") || strings.Contains(r.stdout, "warn") {
		t.Errorf("a row failed or warned:\n%s", r.stdout)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != ".objsync-flock" { // the driver's own, left by design
			t.Errorf("check left %s behind", e.Name())
		}
	}
}

// TestCheckJSON: check --json prints one object with the documented
// fields, and nothing else.
func TestCheckJSON(t *testing.T) {
	r := runCLI(t, t.TempDir(), "check", "--json", "lock")
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("check --json: exit %d, stderr %q\n%s", r.code, r.stderr, r.stdout)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &fields); err != nil {
		t.Fatalf("output is not one JSON object: %v\n%s", err, r.stdout)
	}
	for _, name := range []string{"lock", "passed", "behaviours", "read_ms", "write_ms", "scratch", "scratch_removed"} {
		if _, ok := fields[name]; !ok {
			t.Errorf("no field %q", name)
		}
		delete(fields, name)
	}
	for name := range fields {
		t.Errorf("undocumented field %q", name)
	}
	var report struct {
		Passed         bool
		Behaviours     []map[string]any
		Scratch        []string
		ScratchRemoved bool `json:"scratch_removed"`
	}
	if err := json.Unmarshal([]byte(r.stdout), &report); err != nil {
		t.Fatal(err)
	}
	if !report.Passed || !report.ScratchRemoved || len(report.Scratch) != 2 {
		t.Errorf("passed %v, scratch_removed %v, scratch %q", report.Passed, report.ScratchRemoved, report.Scratch)
	}
	var ids []string
	for _, b := range report.Behaviours {
		if len(b) != 4 || b["required"] == nil || b["result"] == nil || b["answer"] == nil {
			t.Errorf("behaviour %v: want id, required, result, answer", b)
		}
		ids = append(ids, fmt.Sprint(b["id"]))
	}
	if !slices.Equal(ids, checkIDs) {
		t.Errorf("ids %q, want %q", ids, checkIDs)
	}
}

// recorder is a store that remembers the keys written.
type recorder struct {
	driver.Store
	mu   sync.Mutex
	keys map[string]bool
}

func (r *recorder) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	r.mu.Lock()
	if r.keys == nil {
		r.keys = map[string]bool{}
	}
	r.keys[key] = true
	r.mu.Unlock()
	return r.Store.Write(ctx, key, data, ifVersion)
}

// deletingRecorder is a recorder of a store that can delete.
type deletingRecorder struct{ *recorder }

func (d deletingRecorder) Delete(ctx context.Context, key string) error {
	return d.Store.(driver.Deleter).Delete(ctx, key)
}

// ignoresIfNoneMatch writes over a present key when asked to create it,
// as stores that ignore If-None-Match do.
type ignoresIfNoneMatch struct{ *mem.Store }

func (s ignoresIfNoneMatch) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	if ifVersion == "" {
		ifVersion = s.current(ctx, key)
	}
	return s.Store.Write(ctx, key, data, ifVersion)
}

// current returns the version of the object at key, "" if there is none.
func (s ignoresIfNoneMatch) current(ctx context.Context, key string) driver.Version {
	_, v, _ := s.Store.Read(ctx, key)
	return v
}

// ignoresIfMatch writes over any version, as stores that ignore If-Match
// do; it honours create-only writes.
type ignoresIfMatch struct{ ignoresIfNoneMatch }

func (s ignoresIfMatch) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	if ifVersion != "" {
		ifVersion = s.current(ctx, key)
	}
	return s.Store.Write(ctx, key, data, ifVersion)
}

// quotedETags takes a version in quotes as the same version, as MinIO
// does, or refuses it, as Ceph RGW does.
type quotedETags struct {
	*mem.Store
	accept bool
}

func (s quotedETags) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	if unquoted := strings.Trim(string(ifVersion), `"`); unquoted != string(ifVersion) {
		if !s.accept {
			return "", fmt.Errorf("%s: quoted ETag: %w", s.Location(key), driver.ErrPrecondition)
		}
		ifVersion = driver.Version(unquoted)
	}
	return s.Store.Write(ctx, key, data, ifVersion)
}

// lateWrites checks the condition of a write with a deadline when it
// arrives, answers that the deadline passed, and applies the write 10ms
// later whatever then holds: a request the network held back, on a store
// that judges conditions early.
type lateWrites struct {
	*mem.Store
	late sync.WaitGroup
}

func (s *lateWrites) Write(ctx context.Context, key string, data []byte, ifVersion driver.Version) (driver.Version, error) {
	if _, ok := ctx.Deadline(); !ok {
		return s.Store.Write(ctx, key, data, ifVersion)
	}
	if _, v, _ := s.Store.Read(context.WithoutCancel(ctx), key); v != ifVersion {
		return "", fmt.Errorf("%s: %w", s.Location(key), driver.ErrPrecondition)
	}
	s.late.Go(func() {
		time.Sleep(10 * time.Millisecond)
		_, v, _ := s.Store.Read(context.Background(), key)
		s.Store.Write(context.Background(), key, data, v)
	})
	return "", context.DeadlineExceeded
}

// deletesIf is a store that can send a conditional delete, which it
// honours or, as MinIO, Ceph RGW and the GCS emulator do, ignores.
type deletesIf struct {
	*mem.Store
	honour bool
}

func (s deletesIf) DeleteIf(ctx context.Context, key string, ifVersion driver.Version) error {
	if _, v, _ := s.Store.Read(ctx, key); s.honour && v != ifVersion {
		return fmt.Errorf("%s: %w", s.Location(key), driver.ErrPrecondition)
	}
	return s.Delete(ctx, key)
}

// appliedThen500 makes the first write to the store land and answer 500,
// as Cloudflare R2 is reported to do now and then.
func appliedThen500(s *mem.Store) driver.Store {
	var once atomic.Bool
	s.SetFaults(func(op mem.Op, key string) mem.Fault {
		if op == mem.OpWrite && once.CompareAndSwap(false, true) {
			return mem.Fault{Err: driver.Retryable(fmt.Errorf("write %s: 500 Internal Server Error", s.Location(key))), Applied: true}
		}
		return mem.Fault{}
	})
	return s
}

// s3Answering304 is the s3 driver on a fake S3 server that answers a
// failed If-None-Match with 304 Not Modified instead of 412, as a MinIO
// release of 2023 did.
func s3Answering304(t *testing.T) driver.Store {
	fake := s3test.ServeBucket(t, func(r *http.Request, status int) int {
		if status == http.StatusPreconditionFailed && r.Header.Get("If-None-Match") == "*" {
			return http.StatusNotModified
		}
		return status
	})
	return openFakeS3(t, fake)
}

// openFakeS3 opens the s3 driver on a fake server, with made-up keys.
func openFakeS3(t *testing.T, fake *s3test.Bucket) driver.Store {
	s3test.WithoutCredentials(t)
	t.Setenv("AWS_ACCESS_KEY_ID", "AKIDCHECK")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "check-secret")
	d, _ := driver.Lookup("s3")
	st, _, err := d.Open("s3://bucket/locks/a?region=us-east-1&endpoint=" + fake.URL)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// row returns the row id of r.
func row(t *testing.T, r *checkReport, id string) behaviour {
	t.Helper()
	for _, b := range r.Behaviours {
		if b.ID == id {
			return b
		}
	}
	t.Fatalf("no row %s in %+v", id, r.Behaviours)
	return behaviour{}
}

// TestCheckStore: check names each way a store is wrong, in its row and,
// for a required behaviour, in the exit error with the store's answer;
// stores that are right pass with every row.
func TestCheckStore(t *testing.T) {
	type want struct{ id, result, answer string }
	tests := []struct {
		name  string
		store func(*testing.T, *mem.Store) driver.Store
		want  []want // rows to find; a required row that is FAIL is in the exit error
	}{
		{"mem", func(_ *testing.T, s *mem.Store) driver.Store { return s },
			[]want{{"identical-rewrite", "ok", "a new version for the same bytes"}, {"quoted-version", "info", "quoted: mem://"},
				{"conditional-delete", "info", "not tested: this driver deletes only unconditionally"}}},
		{"ignores If-None-Match", func(_ *testing.T, s *mem.Store) driver.Store { return ignoresIfNoneMatch{s} },
			[]want{{"create-present", "FAIL", "accepted, version "}, {"race-create", "FAIL", "of 50 concurrent writes succeeded"}, {"replace-stale", "ok", ""}}},
		{"ignores If-Match", func(_ *testing.T, s *mem.Store) driver.Store { return ignoresIfMatch{ignoresIfNoneMatch{s}} },
			[]want{{"replace-stale", "FAIL", "accepted, version "}, {"race-replace", "FAIL", "of 50 concurrent writes succeeded"}, {"create-present", "ok", ""}}},
		{"answers 304 (s3 driver, fake server)", func(t *testing.T, _ *mem.Store) driver.Store { return s3Answering304(t) },
			[]want{{"create-present", "FAIL", "304"}, {"race-create", "FAIL", "304"}, {"identical-rewrite", "ok", "content-versioned"}, {"replace-stale", "ok", ""}}},
		{"refuses quoted ETags", func(_ *testing.T, s *mem.Store) driver.Store { return quotedETags{s, false} },
			[]want{{"quoted-version", "info", "quoted ETag: precondition failed"}}},
		{"accepts quoted ETags", func(_ *testing.T, s *mem.Store) driver.Store { return quotedETags{s, true} },
			[]want{{"quoted-version", "info", "quoted: accepted"}}},
		{"honours a conditional delete", func(_ *testing.T, s *mem.Store) driver.Store { return deletesIf{s, true} },
			[]want{{"conditional-delete", "info", "honoured: a delete conditional on a stale version was refused"}}},
		{"ignores a conditional delete", func(_ *testing.T, s *mem.Store) driver.Store { return deletesIf{s, false} },
			[]want{{"conditional-delete", "info", "ignored: a delete conditional on a stale version deleted the object"}}},
		{"applies a write and answers 500", func(_ *testing.T, s *mem.Store) driver.Store { return appliedThen500(s) },
			[]want{{"error-but-landed", "warn", "1 writes answered an error although they had landed, as a read showed (objsync settles such answers by reading back); the first: write mem://"}, {"create-absent", "ok", ""}}},
		{"late writes", func(_ *testing.T, s *mem.Store) driver.Store { return &lateWrites{Store: s} },
			[]want{{"lost-answer", "FAIL", "later, over the same write sent again"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ns := emptyNamespace(t)
			st := tt.store(t, ns)
			r, err := checkStore(context.Background(), st, "locks/a", checkOptions{})
			if err != nil {
				t.Fatalf("checkStore: %v", err)
			}
			if late, ok := st.(*lateWrites); ok {
				late.late.Wait()
			}
			var table strings.Builder
			r.print(&table)
			var failed []string
			for _, w := range tt.want {
				b := row(t, r, w.id)
				if b.Result != w.result || !strings.Contains(b.Answer, w.answer) {
					t.Errorf("%s: %s %q; want %s with %q", w.id, b.Result, b.Answer, w.result, w.answer)
				}
				if w.result == resultFail {
					failed = append(failed, w.id+": "+b.Answer)
				}
			}
			err = r.verdict()
			var e *exitError
			switch {
			case len(failed) == 0 && err != nil:
				t.Errorf("exit error %v, want none", err)
			case len(failed) > 0 && (!errors.As(err, &e) || e.code != exitUnsafe):
				t.Errorf("exit error %v, want exit %d", err, exitUnsafe)
			}
			for _, f := range failed {
				if !strings.Contains(fmt.Sprint(err), f) {
					t.Errorf("exit error %v does not name %q", err, f)
				}
			}
			if r.Passed != (len(failed) == 0) || len(r.Behaviours) != len(checkIDs) {
				t.Errorf("passed %v, %d rows, want %d", r.Passed, len(r.Behaviours), len(checkIDs))
			}
			if t.Failed() {
				t.Logf("report:\n%s", table.String())
			}
		})
	}
}

// TestCheckRemovesScratch: check writes only scratch keys next to the
// lock, and removes them.
func TestCheckRemovesScratch(t *testing.T) {
	ns := emptyNamespace(t)
	rec := &recorder{Store: ns}
	r, err := checkStore(context.Background(), deletingRecorder{rec}, "locks/a", checkOptions{})
	if err != nil || !r.Passed || !r.ScratchRemoved {
		t.Fatalf("checkStore: %v, %+v", err, r)
	}
	if len(rec.keys) != 2 {
		t.Errorf("wrote %d keys, want 2 scratch keys: %v", len(rec.keys), rec.keys)
	}
	for key := range rec.keys {
		if !strings.HasPrefix(key, "locks/a.objsync-check-") {
			t.Errorf("wrote %q, not a scratch key next to the lock", key)
		}
		if _, _, err := ns.Read(context.Background(), key); !errors.Is(err, driver.ErrNotExist) {
			t.Errorf("scratch key %q left behind: %v", key, err)
		}
	}
}

func TestCheckStoreWithoutDelete(t *testing.T) {
	ns := emptyNamespace(t)
	rec := &recorder{Store: ns}
	r, err := checkStore(context.Background(), rec, "a", checkOptions{})
	if err != nil || r.ScratchRemoved {
		t.Fatalf("checkStore: %v, scratch_removed %v", err, r.ScratchRemoved)
	}
	var report strings.Builder
	r.print(&report)
	for key := range rec.keys {
		if !strings.Contains(report.String(), "this driver cannot delete: remove the scratch objects by hand: ") || !strings.Contains(report.String(), ns.Location(key)) {
			t.Errorf("the report does not name the scratch object %s left behind:\n%s", ns.Location(key), report.String())
		}
	}
}

// agesAhead is a store whose ages are 10s too old, as when the node that
// answers runs ahead of the one that stamped the write.
type agesAhead struct{ *mem.Store }

func (s agesAhead) ReadAge(ctx context.Context, key string) ([]byte, driver.Version, time.Duration, error) {
	data, v, age, err := s.Store.ReadAge(ctx, key)
	return data, v, age + 10*time.Second, err
}

// TestCheckStoreClock: check says whether the store's clock can be used
// for --store-clock, and warns without failing when it cannot.
func TestCheckStoreClock(t *testing.T) {
	for _, tt := range []struct {
		name   string
		store  func(*mem.Store) driver.Store
		result string
		answer string
	}{
		{"consistent", func(s *mem.Store) driver.Store { return s }, "info", "a write sent "},
		{"ahead", func(s *mem.Store) driver.Store { return agesAhead{s} }, "warn", "its clocks disagree; do not use --store-clock here"},
		{"no ages", func(s *mem.Store) driver.Store { return &recorder{Store: s} }, "info", "this driver tells no ages"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := checkStore(context.Background(), tt.store(emptyNamespace(t)), "locks/a", checkOptions{})
			if err != nil || r.verdict() != nil {
				t.Fatalf("checkStore: %v, %v", err, r.verdict())
			}
			if b := row(t, r, "store-clock"); b.Result != tt.result || !strings.Contains(b.Answer, tt.answer) {
				t.Errorf("store-clock: %s %q; want %s with %q", b.Result, b.Answer, tt.result, tt.answer)
			}
		})
	}
}

// dated is a store whose answers carry a Date offset from this machine's
// clock, cut to the second as HTTP dates are.
type dated struct {
	*mem.Store
	offset time.Duration
}

func (s dated) ReadDate(ctx context.Context, key string) (time.Time, error) {
	if _, _, err := s.Read(ctx, key); err != nil {
		return time.Time{}, err
	}
	return time.Now().Add(s.offset).Truncate(time.Second), nil
}

// undated is a store whose answers carry no Date.
type undated struct{ *mem.Store }

func (undated) ReadDate(context.Context, string) (time.Time, error) {
	return time.Time{}, errors.New("read mem://x: the store's answer has no usable Date header")
}

// TestCheckStoreDate: check compares the store's Date with this machine's
// clock and warns, without failing, when they disagree by more than the
// Date's resolution and the round trip explain.
func TestCheckStoreDate(t *testing.T) {
	for _, tt := range []struct {
		name   string
		store  func(*mem.Store) driver.Store
		result string
		answer string
	}{
		{"same", func(s *mem.Store) driver.Store { return dated{s, 0} }, "info", "agrees with this machine's clock"},
		{"ahead", func(s *mem.Store) driver.Store { return dated{s, 95 * time.Second} }, "warn", "ahead of this machine's by at least 1m3"},
		{"behind", func(s *mem.Store) driver.Store { return dated{s, -20*time.Minute - 30*time.Second} }, "warn", "behind this machine's by at least 20m"},
		{"no date", func(s *mem.Store) driver.Store { return undated{s} }, "warn", "has no usable Date header"},
		{"not told", func(s *mem.Store) driver.Store { return s }, "info", "this driver tells no store time"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := checkStore(context.Background(), tt.store(emptyNamespace(t)), "locks/a", checkOptions{})
			if err != nil || r.verdict() != nil {
				t.Fatalf("checkStore: %v, %v", err, r.verdict())
			}
			if b := row(t, r, "store-date"); b.Result != tt.result || !strings.Contains(b.Answer, tt.answer) {
				t.Errorf("store-date: %s %q; want %s with %q", b.Result, b.Answer, tt.result, tt.answer)
			}
		})
	}
}

// TestCheckWriteRate: --write-rate says how soon the store refused a
// second write to one key, or that it refused none.
func TestCheckWriteRate(t *testing.T) {
	ns := emptyNamespace(t)
	r, err := checkStore(context.Background(), ns, "locks/a", checkOptions{writeRate: true})
	if err != nil {
		t.Fatal(err)
	}
	if b := row(t, r, "write-rate"); b.Result != resultInfo || !strings.Contains(b.Answer, "20 writes in a row accepted, one every ") {
		t.Errorf("write-rate: %s %q", b.Result, b.Answer)
	}

	c := &checker{st: ns, nonce: randomHex(), suffix: randomHex}
	v, err := ns.Write(t.Context(), "limited", []byte("x"), "")
	if err != nil {
		t.Fatal(err)
	}
	ns.SetWriteInterval(time.Minute)
	c.writeRate(t.Context(), scratchObject{"limited", []byte("x"), v})
	if b := c.rows[0]; !strings.Contains(b.Answer, "write 1 in a row refused ") || !strings.Contains(b.Answer, mem.ErrRateLimited.Error()) {
		t.Errorf("write-rate: %s %q", b.Result, b.Answer)
	}
}

// TestCheckLeavesOthersObjects: an object that check did not write, at
// the name it drew for a scratch object, is neither tested, reported as a
// scratch object nor removed: check draws another name.
func TestCheckLeavesOthersObjects(t *testing.T) {
	ns := emptyNamespace(t)
	names := []string{"theirs1", "mine1", "theirs2", "mine2"}
	for _, name := range []string{"theirs1", "theirs2"} {
		if _, err := ns.Write(t.Context(), "locks/a.objsync-check-"+name, []byte("someone's "+name), ""); err != nil {
			t.Fatal(err)
		}
	}
	c := &checker{st: deletingRecorder{&recorder{Store: ns}}, nonce: randomHex(), timed: true,
		suffix: func() string { name := names[0]; names = names[1:]; return name }}
	r, err := c.run(t.Context(), "locks/a")
	if err != nil || !r.Passed || !r.ScratchRemoved {
		t.Fatalf("check: %v, %+v", err, r)
	}
	for _, name := range []string{"theirs1", "theirs2"} {
		if data, _, err := ns.Read(t.Context(), "locks/a.objsync-check-"+name); err != nil || string(data) != "someone's "+name {
			t.Errorf("%s: %q, %v; want it untouched", name, data, err)
		}
	}
	for _, name := range []string{"mine1", "mine2"} {
		if _, _, err := ns.Read(t.Context(), "locks/a.objsync-check-"+name); !errors.Is(err, driver.ErrNotExist) {
			t.Errorf("scratch object %s left behind: %v", name, err)
		}
	}
	if want := []string{ns.Location("locks/a.objsync-check-mine1"), ns.Location("locks/a.objsync-check-mine2")}; !slices.Equal(r.Scratch, want) {
		t.Errorf("scratch %q, want %q", r.Scratch, want)
	}
}

// phased is a store whose clock is offset from this machine's by exactly
// offset, and whose Date is cut to the second, as HTTP dates are.
type phased struct {
	*mem.Store
	offset time.Duration
}

func (s phased) ReadDate(ctx context.Context, key string) (time.Time, error) {
	return time.Now().Add(s.offset).Truncate(time.Second), nil
}

// waitPhase returns when this machine's clock is phase into a second.
func waitPhase(phase time.Duration) {
	for {
		now := time.Now()
		into := now.Sub(now.Truncate(time.Second))
		if into >= phase && into < phase+20*time.Millisecond {
			return
		}
		time.Sleep((phase - into + time.Second) % time.Second)
	}
}

// TestCheckStoreDateAtLeast: the bound store-date gives as "at least" is
// never more than the offset of the store's clock. With a store exactly
// 1m34.6s ahead (or behind), the Date taken at the right moment gives a
// lower bound of 1m34.5s to 1m34.6s, which short rounds to 1m35s: check
// then says the clocks disagree by at least 1m35s, more than they do.
func TestCheckStoreDateAtLeast(t *testing.T) {
	const offset = 94*time.Second + 600*time.Millisecond
	for _, tt := range []struct {
		name   string
		offset time.Duration
		phase  time.Duration
	}{
		// S = T+94.6s is just past a whole second: the Date loses little.
		{"ahead", offset, 400 * time.Millisecond},
		// S = T-94.6s is just before a whole second: the Date loses
		// almost a second, which hi = date+1s-sent gives back.
		{"behind", -offset, 510 * time.Millisecond},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := &checker{st: phased{emptyNamespace(t), tt.offset}}
			waitPhase(tt.phase)
			c.storeDate(context.Background(), "k")
			b := row(t, &checkReport{Behaviours: c.rows}, "store-date")
			_, rest, ok := strings.Cut(b.Answer, " by at least ")
			if !ok || b.Result != resultWarn {
				t.Fatalf("store-date: %s %q; want a warning with a bound", b.Result, b.Answer)
			}
			bound, err := time.ParseDuration(strings.Fields(rest)[0])
			if err != nil {
				t.Fatalf("store-date: %q: %v", b.Answer, err)
			}
			if bound > offset {
				t.Errorf("store-date says the clocks disagree by at least %s; they disagree by %s (%q)", bound, offset, b.Answer)
			}
		})
	}
}

// emptyNamespace is the mem namespace named for t, emptied: namespaces live
// as long as the process, and go test -count=N runs t again in it.
func emptyNamespace(t *testing.T) *mem.Store {
	ns := mem.Namespace(t.Name())
	ns.Reset()
	return ns
}
