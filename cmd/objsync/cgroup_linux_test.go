package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objsync/objsync/internal/procid"
)

// withoutCgroups returns a prefix that runs objsync where it cannot create
// a cgroup: in a mount namespace of its own whose cgroup v2 hierarchy is
// read-only.
func withoutCgroups(t *testing.T) []string {
	t.Helper()
	mount := cgroupMount()
	if mount == "" {
		return nil // no cgroup v2 here: objsync cannot create one anyway
	}
	if os.Geteuid() != 0 {
		dir, err := procid.NewCgroup("objsync-test-")
		if err != nil {
			return nil
		}
		os.Remove(dir)
		t.Skip("objsync may create cgroups here, and hiding them takes root")
	}
	return []string{"unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
		`mount -o remount,bind,ro "$0" && exec "$@"`, mount}
}

// needCgroups fails the test where objsync cannot run a command in a
// cgroup of its own.
func needCgroups(t *testing.T) {
	t.Helper()
	dir, err := procid.NewCgroup("objsync-test-")
	if err != nil {
		t.Fatalf("objsync cannot create a cgroup here (run the tests as root on Linux 5.14 or later, with a writable cgroup v2 hierarchy): %v", err)
	}
	os.Remove(dir)
}

// cgroupDir returns the directory of the cgroup v2 that a /proc/PID/cgroup
// names, and checks that it is a command's.
func cgroupDir(t *testing.T, procCgroup string) string {
	t.Helper()
	rel := ""
	for line := range strings.Lines(procCgroup) {
		if r, ok := strings.CutPrefix(line, "0::"); ok {
			rel = strings.TrimSpace(r)
		}
	}
	if !strings.Contains(rel, "/objsync-") {
		t.Fatalf("a command in cgroup %q, of %q", rel, procCgroup)
	}
	return filepath.Join(cgroupMount(), rel)
}

// cgroupMount returns where the cgroup v2 hierarchy is mounted, or "".
func cgroupMount() string {
	mount, _ := exec.Command("findmnt", "--noheadings", "--types", "cgroup2", "--output", "TARGET", "--first-only").Output()
	return strings.TrimSpace(string(mount))
}

// removeRecordedCgroup removes, when the test ends, the cgroup that the
// holder of the lock in dir recorded: the work of a guardian that was
// killed.
func removeRecordedCgroup(t *testing.T, dir string) {
	t.Helper()
	store, key, err := openStore(filepath.Join(dir, "lock"), "")
	if err != nil {
		t.Fatal(err)
	}
	data, _, err := store.Read(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	var obj struct{ Process struct{ Cgroup string } }
	if err := json.Unmarshal(data, &obj); err != nil || !strings.Contains(obj.Process.Cgroup, "/objsync-") {
		t.Fatalf("the lock records no cgroup (%v): %s", err, data)
	}
	cg := filepath.Join(cgroupMount(), obj.Process.Cgroup)
	t.Cleanup(func() {
		procid.KillCgroup(cg)
		for deadline := time.Now().Add(safety); ; time.Sleep(10 * time.Millisecond) {
			if err := os.Remove(cg); err == nil || os.IsNotExist(err) {
				return
			} else if time.Now().After(deadline) {
				t.Errorf("removing %s: %v", cg, err)
				return
			}
		}
	})
}

// running reports whether process pid runs: it exists and is not a zombie.
func running(pid int) bool {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	return len(fields) > 0 && fields[0] != "Z" && fields[0] != "X"
}

// pidsOf reads the pids the command wrote to file, one per line, once
// there are n.
func pidsOf(t *testing.T, file string, n int) []int {
	t.Helper()
	for deadline := time.Now().Add(safety); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		data, _ := os.ReadFile(file)
		lines := strings.Fields(string(data))
		if len(lines) < n {
			continue
		}
		var pids []int
		for _, l := range lines {
			pid, err := strconv.Atoi(l)
			if err != nil {
				t.Fatal(err)
			}
			pids = append(pids, pid)
			t.Cleanup(func() { syscall.Kill(pid, syscall.SIGKILL) })
		}
		return pids
	}
	t.Fatalf("%s did not get %d pids within %v", file, n, safety)
	return nil
}

// leftovers is a command that starts two processes that outlive it and
// ignore SIGTERM, one in its process group and one in a session of its
// own, writes the pids of all three to "pids", and waits.
const leftovers = `trap "" TERM
sleep 1000 & echo $! >> pids
setsid sleep 1000 & echo $! >> pids
echo $$ >> pids; exec sleep 1000`

// TestHolderKilledAtOnce kills objsync lock with SIGKILL: every process of
// its command, those that left its process group included, is dead when
// lock --try takes the lock over at once, with the next fence.
func TestHolderKilledAtOnce(t *testing.T) {
	needCgroups(t)
	dir := t.TempDir()
	h := startCLI(t, dir, append([]string{"lock", "--ttl", "1m", "lock"}, shell(leftovers)...)...)
	pids := pidsOf(t, filepath.Join(dir, "pids"), 3)
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.wait(t)
	// The next holder's command lists those still running: not zombies.
	list := strings.Join(strings.Fields(readFile(t, filepath.Join(dir, "pids"))), " ")
	check := `for p in ` + list + `; do s=$(cut -d')' -f2 /proc/$p/stat 2>/dev/null | cut -d' ' -f2)
		[ -n "$s" ] && [ "$s" != Z ] && echo $p; done > alive; echo $OBJSYNC_FENCE > fence`
	start := time.Now()
	r := runCLI(t, dir, append([]string{"lock", "--try", "--ttl", "1m", "lock"}, shell(check)...)...)
	took := time.Since(start)
	if r.code != 0 {
		t.Fatalf("lock --try right after its holder was killed: exit %d, stderr %q", r.code, r.stderr)
	}
	t.Logf("lock --try took %v", took)
	if got := readFile(t, filepath.Join(dir, "fence")); got != "2\n" {
		t.Errorf("lock --try ran with fence %q, want 2", got)
	}
	if alive := readFile(t, filepath.Join(dir, "alive")); alive != "" {
		t.Errorf("processes of the killed holder's command still ran when the lock was taken over: %q", alive)
	}
	for _, pid := range pids {
		if running(pid) {
			t.Errorf("process %d of the killed holder's command still runs", pid)
		}
	}
}

// guardianOf returns the pid of the guardian of objsync lock process
// holder.
func guardianOf(t *testing.T, holder int) int {
	t.Helper()
	out, err := exec.Command("pgrep", "-P", strconv.Itoa(holder), "-f", "^"+regexp.QuoteMeta(guardianArg0)).Output()
	pid, err2 := strconv.Atoi(strings.TrimSpace(string(out)))
	if err != nil || err2 != nil {
		t.Fatalf("no guardian of objsync lock %d: %q, %v", holder, out, err)
	}
	return pid
}

// TestHolderKilledWithGuardian kills the guardian, then objsync lock:
// nothing kills the command, which ignores SIGTERM, so the lock stays
// held, and lock --try fails.
func TestHolderKilledWithGuardian(t *testing.T) {
	needCgroups(t)
	dir := t.TempDir()
	h := startCLI(t, dir, append([]string{"lock", "--ttl", "1m", "lock"}, shell(leftovers)...)...)
	pids := pidsOf(t, filepath.Join(dir, "pids"), 3)
	removeRecordedCgroup(t, dir) // the guardian's job
	syscall.Kill(guardianOf(t, h.cmd.Process.Pid), syscall.SIGKILL)
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.wait(t)
	if r := runCLI(t, dir, "lock", "--try", "--ttl", "1m", "lock", "--", "true"); r.code != exitNotAcquired {
		t.Fatalf("lock --try while the dead holder's command runs: exit %d, stderr %q", r.code, r.stderr)
	}
	if st := status(t, dir); !st.Held || st.HolderGone {
		t.Errorf("status while the dead holder's command runs: %+v", st)
	}
	for _, pid := range pids {
		if !running(pid) {
			t.Errorf("process %d of the command, which ignores SIGTERM, has ended", pid)
		}
	}
}

// TestLostLockKillsEscapees: when the lock is lost, a process of the
// command that left its process group and ignores SIGTERM gets SIGKILL too
// when --grace ends.
func TestLostLockKillsEscapees(t *testing.T) {
	needCgroups(t)
	dir := t.TempDir()
	h := startCLI(t, dir, append([]string{"lock", "--ttl", "1s", "--grace", "200ms", "lock"}, shell(leftovers)...)...)
	pids := pidsOf(t, filepath.Join(dir, "pids"), 3)
	if r := runCLI(t, dir, "unlock", "--force", "lock"); r.code != 0 {
		t.Fatalf("unlock --force: exit %d, stderr %q", r.code, r.stderr)
	}
	if r := h.wait(t); r.code != exitLost {
		t.Errorf("exit code %d, want %d", r.code, exitLost)
	}
	for _, pid := range pids {
		if running(pid) {
			t.Errorf("process %d of the command still runs after objsync exited on a lost lock", pid)
		}
	}
}

// TestReleaseLeavesCgroup: objsync that exits as it should leaves what its
// command started in the background running, as before; the cgroup goes
// once that has ended.
func TestReleaseLeavesCgroup(t *testing.T) {
	needCgroups(t)
	dir := t.TempDir()
	r := runCLI(t, dir, append([]string{"lock", "lock"}, shell(`cat /proc/self/cgroup > cgroup
		(while [ ! -e stop ]; do sleep 0.01; done; touch stopped) > /dev/null 2>&1 &`)...)...)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("objsync lock: %+v", r)
	}
	cg := cgroupDir(t, readFile(t, filepath.Join(dir, "cgroup")))
	t.Cleanup(func() { procid.KillCgroup(cg) }) // should the test fail
	if populated, err := procid.CgroupPopulated(cg); err != nil || !populated {
		t.Fatalf("the command's cgroup after release: populated %v, %v; want the background loop in it", populated, err)
	}
	touch(t, filepath.Join(dir, "stop"))
	waitFile(t, filepath.Join(dir, "stopped"))
	for deadline := time.Now().Add(safety); ; time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(cg); os.IsNotExist(err) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still there %v after its last process ended", cg, safety)
		}
	}
}

// TestLeaderGoneAtOnce: once objsync elect has been killed, and its
// command with it, leader on the same machine reports no leader at once.
func TestLeaderGoneAtOnce(t *testing.T) {
	needCgroups(t)
	dir := t.TempDir()
	a := candidate(t, dir, "a")
	waitFile(t, filepath.Join(dir, "ready-a"))
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.wait(t)
	for deadline := time.Now().Add(safety); ; time.Sleep(10 * time.Millisecond) {
		r := runCLI(t, dir, "leader", "--json", "lock")
		if r.code == exitNotAcquired && r.stdout == "" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("leader after objsync elect was killed: %+v", r)
		}
	}
}

// TestHolderKilledInOtherNamespace: objsync lock killed in another pid
// namespace (another container of this machine) is never judged gone, so
// lock --try here still fails; only the TTL frees the lock.
func TestHolderKilledInOtherNamespace(t *testing.T) {
	needCgroups(t)
	dir := t.TempDir()
	// Not holder: the pids it records are the other namespace's.
	h := startCLIVia(t, dir, []string{"unshare", "--pid", "--fork", "--mount-proc", "--kill-child"},
		append([]string{"lock", "--ttl", "1m", "lock"}, shell("touch ready; exec sleep 1000")...)...)
	waitFile(t, filepath.Join(dir, "ready"))
	// unshare's child, objsync, gets SIGKILL with it, and the rest of the
	// namespace with objsync, its namespace's init.
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.wait(t)
	removeRecordedCgroup(t, dir) // its guardian died with the namespace, perhaps before removing it
	if r := runCLI(t, dir, "lock", "--try", "lock", "--", "true"); r.code != exitNotAcquired {
		t.Fatalf("lock --try over a holder killed in another pid namespace: exit %d, stderr %q", r.code, r.stderr)
	}
	if st := status(t, dir); !st.Held || st.HolderGone || st.HolderRunning {
		t.Errorf("status of a lock held from another pid namespace: %+v", st)
	}
}

// commandCgroups returns the cgroups that objsync lock made (not those of
// other tests), with what each holds.
func commandCgroups(t *testing.T) map[string]bool {
	t.Helper()
	own, err := procid.OwnCgroup()
	if err != nil {
		t.Fatal(err)
	}
	dirs, _ := filepath.Glob(filepath.Join(own, "objsync-????????????????"))
	set := map[string]bool{}
	for _, d := range dirs {
		set[d] = true
	}
	return set
}

// waitCgroupsGone waits until none of the cgroups that objsync lock made
// is left but those in before.
func waitCgroupsGone(t *testing.T, before map[string]bool) {
	t.Helper()
	for deadline := time.Now().Add(safety); ; time.Sleep(20 * time.Millisecond) {
		var left []string
		for d := range commandCgroups(t) {
			if !before[d] {
				left = append(left, d)
			}
		}
		if len(left) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("cgroups left %v after objsync ended: %q", safety, left)
		}
	}
}

// TestGuardianCleansUp (found by review): the guardian removes the
// command's cgroup, and those the command made below it, whenever objsync
// ends: killed at any moment of its start, or after the command made a
// cgroup of its own.
func TestGuardianCleansUp(t *testing.T) {
	needCgroups(t)
	before := commandCgroups(t)
	dir := t.TempDir()
	for i := range 20 {
		p := startCLI(t, dir, "lock", "--quiet", fmt.Sprint("lock", i), "--", "sleep", "60")
		time.Sleep(time.Duration(i) * 2 * time.Millisecond)
		p.cmd.Process.Signal(syscall.SIGKILL)
		p.wait(t)
	}
	r := runCLI(t, dir, append([]string{"lock", "nested"}, shell(`mkdir "`+cgroupMount()+`$(sed -n "s/^0:://p" /proc/self/cgroup)/inner"`)...)...)
	if r.code != 0 {
		t.Fatalf("a command that makes a cgroup: %+v", r)
	}
	waitCgroupsGone(t, before)
}

// TestGuardianClosesInheritedFDs (found by review): a descriptor that
// objsync inherited without close-on-exec reaches the command, but not
// the guardian, which could hold a pipe open after the command ended.
func TestGuardianClosesInheritedFDs(t *testing.T) {
	needCgroups(t)
	dir := t.TempDir()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.Command(bin, append([]string{"lock", "--quiet", "lock"}, shell(`echo through fd 3 >&3; touch ready; sleep 60`)...)...)
	cmd.Dir, cmd.ExtraFiles = dir, []*os.File{w}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	waitFile(t, filepath.Join(dir, "ready"))
	line := make([]byte, 64)
	if n, _ := r.Read(line); string(line[:n]) != "through fd 3\n" {
		t.Fatalf("the command wrote %q to fd 3", line[:n])
	}
	guardian := guardianOf(t, cmd.Process.Pid)
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", guardian))
	if err != nil {
		t.Fatal(err)
	}
	var pipe syscall.Stat_t
	syscall.Fstat(int(r.Fd()), &pipe)
	for _, fd := range fds {
		var st syscall.Stat_t
		if syscall.Stat(fmt.Sprintf("/proc/%d/fd/%s", guardian, fd.Name()), &st) == nil && st.Ino == pipe.Ino && st.Dev == pipe.Dev {
			t.Errorf("the guardian holds the inherited pipe as fd %s", fd.Name())
		}
	}
}

// TestNoCgroup: with --no-cgroup the command runs in objsync's cgroup and
// the lock records no process, so that only its ttl frees it after kill
// -9, as for a command that hands its work to a daemon.
func TestNoCgroup(t *testing.T) {
	dir := t.TempDir()
	h := startCLI(t, dir, append([]string{"lock", "--no-cgroup", "--ttl", "1m", "lock"}, shell("cat /proc/self/cgroup > cgroup.tmp; mv cgroup.tmp cgroup; exec sleep 60")...)...)
	waitFile(t, filepath.Join(dir, "cgroup"))
	if cg := readFile(t, filepath.Join(dir, "cgroup")); strings.Contains(cg, "/objsync-") {
		t.Errorf("with --no-cgroup the command ran in a cgroup of its own: %q", cg)
	}
	if st := status(t, dir); !st.Held || st.HolderRunning {
		t.Errorf("status of a lock held with --no-cgroup: %+v; want no process recorded", st)
	}
	h.cmd.Process.Signal(syscall.SIGKILL)
	h.wait(t)
	if r := runCLI(t, dir, "lock", "--try", "lock", "--", "true"); r.code != exitNotAcquired {
		t.Fatalf("lock --try after kill -9 of a --no-cgroup holder: %+v", r)
	}
}

// TestTryHolderRunsHere: lock --try on a lock whose holder's process runs
// on this machine says so, and gives no advice for a dead holder.
func TestTryHolderRunsHere(t *testing.T) {
	needCgroups(t)
	dir := t.TempDir()
	holder(t, dir)
	r := runCLI(t, dir, "lock", "--try", "lock", "--", "true")
	if line := oneLine(t, "stderr", r.stderr); r.code != exitNotAcquired || !strings.HasSuffix(line, "; not waiting (--try); its holder's process runs on this machine") {
		t.Fatalf("lock --try: exit %d, stderr %q", r.code, line)
	}
}

// TestNoCgroupSaysWhy: where objsync cannot create a cgroup, -v says why
// it runs the command without one (slog's default log, which drivers use
// too); without -v, nothing is said.
func TestNoCgroupSaysWhy(t *testing.T) {
	dir := t.TempDir()
	via := withoutCgroups(t)
	r := startCLIVia(t, dir, via, "lock", "lock", "--", "true").wait(t)
	if r.code != 0 || r.stderr != "" {
		t.Fatalf("lock without a cgroup: exit %d, stderr %q; want 0 and nothing", r.code, r.stderr)
	}
	r = startCLIVia(t, dir, via, "-v", "lock", "lock", "--", "true").wait(t)
	if r.code != 0 || !regexp.MustCompile(`level=DEBUG msg="running the command without a cgroup of its own: only the ttl frees the lock if objsync dies" reason=\S`).MatchString(r.stderr) {
		t.Errorf("lock -v without a cgroup: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
