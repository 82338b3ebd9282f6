package objsync_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/internal/locktest"
)

// The multi-process tests re-execute the test binary; roleEnv selects what
// the child does, and the arguments after it say where.
const roleEnv = "OBJSYNC_TEST_ROLE"

const processHolds = 25

// runRole runs a child process's part and returns its exit code.
func runRole(role string) int {
	lock, journal := os.Getenv("OBJSYNC_TEST_LOCK"), os.Getenv("OBJSYNC_TEST_JOURNAL")
	opts := []objsync.Option{objsync.WithBackoff(time.Millisecond, 20*time.Millisecond)}
	switch role {
	case "queue", "hold-queue":
		opts = append(opts, objsync.WithQueue())
	case "hold-unchecked":
		opts = append(opts, objsync.WithoutProcessCheck())
	case "hold-group":
		// Work in a process group of its own, which outlives this one.
		g := exec.Command("sleep", "60")
		g.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := g.Start(); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		fmt.Printf("group %d\n", g.Process.Pid)
		opts = append(opts, objsync.WithProcessGroup(g.Process.Pid))
	case "hold-cgroup":
		// Work in a cgroup, which outlives this process.
		cg := os.Getenv("OBJSYNC_TEST_CGROUP")
		if err := startInCgroup(cg, "sleep", "60"); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		opts = append(opts, objsync.WithCgroup(cg))
	}
	m, err := objsync.Open("file", lock, opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer m.Close()
	j, err := os.OpenFile(journal, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer j.Close()
	switch role {
	case "contend", "queue":
		err = contend(m, j)
	case "elect":
		err = elect(m, j)
	case "hold", "hold-queue", "hold-unchecked", "hold-group", "hold-cgroup":
		err = holdUntilKilled(m)
	default:
		err = fmt.Errorf("unknown role %q", role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func contend(m *objsync.Mutex, j *os.File) error {
	for range processHolds {
		fence, err := m.Lock(context.Background(), 10*time.Second)
		if err != nil {
			return err
		}
		// One write(2) per line on an O_APPEND file: lines never mix.
		fmt.Fprintf(j, "enter %d %d\n", fence, os.Getpid())
		time.Sleep(time.Millisecond)
		fmt.Fprintf(j, "leave %d %d\n", fence, os.Getpid())
		if err := m.Unlock(context.Background()); err != nil {
			return err
		}
	}
	return nil
}

// holdUntilKilled takes the lock for a minute, says so on standard output,
// and waits to be killed.
func holdUntilKilled(m *objsync.Mutex) error {
	fence, err := m.Lock(context.Background(), time.Minute)
	if err != nil {
		return err
	}
	fmt.Printf("held %d\n", fence)
	select {}
}

// electionTTL is the leaders' lease in the election processes.
const electionTTL = 500 * time.Millisecond

// elect campaigns once and leads until SIGTERM, journalling its term.
func elect(m *objsync.Mutex, j *os.File) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	e := objsync.NewElection(m, objsync.WithLeaderTTL(electionTTL))
	err := e.Run(ctx, strconv.Itoa(os.Getpid()), func(lctx context.Context) error {
		fmt.Fprintf(j, "lead %d %d\n", m.Fence(), os.Getpid())
		<-lctx.Done()
		fmt.Fprintf(j, "end %d %d\n", m.Fence(), os.Getpid())
		return nil
	})
	if ctx.Err() != nil {
		return nil // asked to stop, while leading or before
	}
	return err
}

func startRole(t *testing.T, role, lock, journal string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), roleEnv+"="+role, "OBJSYNC_TEST_LOCK="+lock, "OBJSYNC_TEST_JOURNAL="+journal)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func newJournal(t *testing.T) (dir, journal string) {
	dir = t.TempDir()
	journal = dir + "/journal"
	if err := os.WriteFile(journal, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, journal
}

// TestProcessesContend has 4 processes take turns on a file lock and
// journal every hold: enters and leaves must alternate, each leave
// matching its enter, and fences must rise by one each time.
func TestProcessesContend(t *testing.T) {
	const processes = 4
	dir, journal := newJournal(t)
	var cmds []*exec.Cmd
	for range processes {
		cmds = append(cmds, startRole(t, "contend", dir+"/lock", journal))
	}
	waitAll(t, cmds)
	checkTurns(t, journal, 1, processes*processHolds)
}

// TestQueueProcesses has 8 processes take turns on a queue lock. While
// the test holds it, they join its queue one after the other, and must
// then hold it in that order; then they contend freely. The journal is
// judged as in TestProcessesContend.
func TestQueueProcesses(t *testing.T) {
	const processes = 8
	dir, journal := newJournal(t)
	m, err := objsync.Open("file", dir+"/lock", objsync.WithQueue())
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	first, err := m.Lock(context.Background(), time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	var joined []string // pids in the order they joined
	for i := range processes {
		cmd := startRole(t, "queue", dir+"/lock", journal)
		cmds, joined = append(cmds, cmd), append(joined, strconv.Itoa(cmd.Process.Pid))
		locktest.WaitWaiters(t, m, i+1)
	}
	if err := m.Unlock(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitAll(t, cmds)
	holders := checkTurns(t, journal, first+1, processes*processHolds)
	if got := holders[:processes]; !slices.Equal(got, joined) {
		t.Fatalf("the first holders were %v, want the order they joined in, %v", got, joined)
	}
}

func waitAll(t *testing.T, cmds []*exec.Cmd) {
	t.Helper()
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
	}
}

// checkTurns reads a journal of holds (lines "enter FENCE PID" and "leave
// FENCE PID"): enters and leaves must alternate, each leave matching its
// enter, fences must rise by one from first, and there must be holds of
// them. It returns the holders' pids in order.
func checkTurns(t *testing.T, journal string, first int64, holds int) (holders []string) {
	t.Helper()
	f, err := os.Open(journal)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var line int
	fence := first - 1
	var holder string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		n, _ := strconv.ParseInt(fields[1], 10, 64)
		switch {
		case line%2 == 0 && fields[0] == "enter" && n == fence+1:
			fence, holder = n, fields[2]
			holders = append(holders, holder)
		case line%2 == 1 && fields[0] == "leave" && n == fence && fields[2] == holder:
		default:
			t.Fatalf("journal line %d %q breaks the sequence (fence %d, holder %s)", line+1, sc.Text(), fence, holder)
		}
		line++
	}
	if line != 2*holds {
		t.Fatalf("journal has %d lines, want %d", line, 2*holds)
	}
	return holders
}

// TestElectionProcesses has five candidate processes. The test watches the
// leader with Observe and kills the first two leaders with SIGKILL, then
// stops the next three with SIGTERM, which makes them resign. Each time a
// new leader must follow with the next fence, and the journal must show
// that no term began before the previous one ended, unless its leader was
// killed.
func TestElectionProcesses(t *testing.T) {
	const candidates = 5
	dir, journal := newJournal(t)
	procs := map[int]*exec.Cmd{}
	for range candidates {
		cmd := startRole(t, "elect", dir+"/lock", journal)
		procs[cmd.Process.Pid] = cmd
	}
	t.Cleanup(func() {
		for _, cmd := range procs {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	m, err := objsync.Open("file", dir+"/lock", objsync.WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	leaders := objsync.NewElection(m).Observe(ctx)
	killed := map[int64]bool{}
	for term := int64(1); term <= candidates; term++ {
		l, ok := <-leaders
		if !ok {
			t.Fatalf("no leader for term %d", term)
		}
		if l.Fence != term {
			t.Fatalf("leader %+v, want fence %d", l, term)
		}
		pid, _ := strconv.Atoi(l.Value)
		cmd := procs[pid]
		// The leader journals its term just after it is elected.
		waitForLine(t, journal, fmt.Sprintf("lead %d %d\n", term, pid))
		if term <= 2 {
			cmd.Process.Kill()
			killed[term] = true
		} else {
			cmd.Process.Signal(syscall.SIGTERM)
		}
		if err := cmd.Wait(); err != nil && term > 2 {
			t.Fatalf("leader %d after SIGTERM: %v", pid, err)
		}
		delete(procs, pid)
	}

	data, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for term := int64(1); term <= candidates; term++ {
		want = append(want, fmt.Sprintf("lead %d", term))
		if !killed[term] {
			want = append(want, fmt.Sprintf("end %d", term))
		}
	}
	var got []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		got = append(got, f[0]+" "+f[1])
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("journal %v, want %v", got, want)
	}
}

// waitForLine waits until the file holds line.
func waitForLine(t *testing.T, path, line string) {
	t.Helper()
	for start := time.Now(); time.Since(start) < 30*time.Second; time.Sleep(5 * time.Millisecond) {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(data), line) {
			return
		}
	}
	t.Fatalf("%s never held %q", path, line)
}
