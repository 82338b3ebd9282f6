package main

import (
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

// cgroupOf returns the directory of the cgroup of process pid.
func cgroupOf(t *testing.T, pid int) string {
	t.Helper()
	return cgroupDir(t, readFile(t, "/proc/"+strconv.Itoa(pid)+"/cgroup"))
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
	cg := cgroupOf(t, pids[0])
	t.Cleanup(func() { // the guardian's job
		procid.KillCgroup(cg)
		for deadline := time.Now().Add(safety); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if os.Remove(cg) == nil {
				return
			}
		}
		t.Errorf("could not remove %s", cg)
	})
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
