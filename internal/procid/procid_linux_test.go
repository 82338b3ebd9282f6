package procid

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// child starts sleep(1) and returns it with its identity.
func child(t *testing.T) (*exec.Cmd, ID) {
	t.Helper()
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	id := Of(cmd.Process.Pid)
	if !id.Known() || id.PID != cmd.Process.Pid || id.Boot != Self().Boot || id.PIDNS != Self().PIDNS {
		t.Fatalf("Of(%d) = %+v", cmd.Process.Pid, id)
	}
	return cmd, id
}

func TestSelf(t *testing.T) {
	me := Self()
	if !me.Known() || me.PID != os.Getpid() {
		t.Fatalf("Self() = %+v", me)
	}
	if Ended(me) {
		t.Fatal("this process judged ended")
	}
}

func TestEnded(t *testing.T) {
	cmd, id := child(t)
	if Ended(id) {
		t.Fatal("a running process judged ended")
	}
	// Recorded elsewhere, or without what tells processes apart: never
	// judged, before the process ends or after.
	unknown := map[string]ID{}
	for name, change := range map[string]func(*ID){
		"another host":           func(o *ID) { o.Host = "another" },
		"another boot":           func(o *ID) { o.Boot = "another" },
		"another pid namespace":  func(o *ID) { o.PIDNS = "pid:[1]" },
		"another time namespace": func(o *ID) { o.TimeNS = "time:[1]" },
		"no start time":          func(o *ID) { o.Start = 0 },
		"a pid beyond pid_t":     func(o *ID) { o.PID += 1 << 32 },
		"a group beyond pid_t":   func(o *ID) { o.Group = 1<<32 - 1 },
	} {
		other := id
		change(&other)
		unknown[name] = other
	}
	check := func() {
		for name, other := range unknown {
			if Ended(other) {
				t.Errorf("%s: judged ended", name)
			}
		}
	}
	check()
	// Killed and not reaped yet: a zombie runs no more.
	cmd.Process.Kill()
	for deadline := time.Now().Add(5 * time.Second); !Ended(id); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("a killed process (a zombie) not judged ended after 5s")
		}
	}
	cmd.Wait()
	if !Ended(id) {
		t.Fatal("a process killed and reaped not judged ended")
	}
	check()
}

// TestPIDReused: a process that has the pid but started at another time
// is another process.
func TestPIDReused(t *testing.T) {
	_, id := child(t)
	id.Start--
	if !Ended(id) {
		t.Fatal("the process with the recorded pid but another start time was taken for the recorded one")
	}
	me := Self()
	me.Start++
	if !Ended(me) {
		t.Fatal("this process's pid with another start time was taken for this process")
	}
}

// helperEnv makes the test binary, run by unshare in a new pid namespace,
// print its identity and whether the process given in the variable (as
// JSON) has ended, and exit.
const helperEnv = "PROCID_TEST_JUDGE"

func TestMain(m *testing.M) {
	if v, ok := os.LookupEnv(helperEnv); ok {
		var id ID
		if err := json.Unmarshal([]byte(v), &id); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		out, _ := json.Marshal(struct {
			Self  ID
			Ended bool
		}{Self(), Ended(id)})
		fmt.Println(string(out))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// judgeIn runs the test binary under unshare with args and returns what it
// printed: its identity, and whether it judged id ended.
func judgeIn(t *testing.T, id ID, args ...string) (ID, bool) {
	t.Helper()
	v, _ := json.Marshal(id)
	cmd := exec.Command("unshare", append(args, os.Args[0])...)
	cmd.Env = append(os.Environ(), helperEnv+"="+string(v))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("unshare %s: %v", strings.Join(args, " "), err)
	}
	var got struct {
		Self  ID
		Ended bool
	}
	line, _ := bufio.NewReader(strings.NewReader(string(out))).ReadString('\n')
	if err := json.Unmarshal([]byte(line), &got); err != nil {
		t.Fatalf("unshare %s printed %q: %v", strings.Join(args, " "), out, err)
	}
	return got.Self, got.Ended
}

// TestOtherNamespace: a process in another pid namespace, whose pids mean
// other processes, never judges one of this namespace ended, nor this
// one one of its own; nor does one whose /proc belongs to another
// namespace than its own.
func TestOtherNamespace(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root, for unshare --pid (CI runs as root)")
	}
	cmd, id := child(t)
	cmd.Process.Kill()
	cmd.Wait()
	if !Ended(id) {
		t.Fatal("a process killed and reaped not judged ended")
	}
	inner, ended := judgeIn(t, id, "--pid", "--fork", "--mount-proc")
	if !inner.Known() || inner.PIDNS == id.PIDNS || inner.Boot != id.Boot {
		t.Fatalf("identity in a new pid namespace: %+v (ours %+v)", inner, id)
	}
	if ended {
		t.Error("a process in another pid namespace judged one of ours ended")
	}
	// The inner process has ended by now: its pid (1, in its namespace)
	// is this namespace's init.
	if Ended(inner) {
		t.Error("a process of another pid namespace judged ended")
	}
	inner, ended = judgeIn(t, id, "--pid", "--fork")
	if inner.Known() || ended {
		t.Errorf("with the /proc of another namespace: identity %+v, judged ended %v; want none, false", inner, ended)
	}
}

// TestGroup: a process whose work runs in a process group has ended only
// once the group is empty too.
func TestGroup(t *testing.T) {
	_, id := child(t)
	group := exec.Command("sh", "-c", "sleep 60 & echo started; wait")
	group.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	out, err := group.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := group.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-group.Process.Pid, syscall.SIGKILL); group.Wait() })
	if line, err := bufio.NewReader(out).ReadString('\n'); line != "started\n" {
		t.Fatalf("the shell said %q (%v)", line, err)
	}
	id.Group = group.Process.Pid
	syscall.Kill(id.PID, syscall.SIGKILL)
	alone := id
	alone.Group = 0
	for deadline := time.Now().Add(5 * time.Second); !Ended(alone); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the killed process not judged ended after 5s")
		}
	}
	// The shell, then its sleep once the shell is gone.
	for range 2 {
		if Ended(id) {
			t.Fatal("judged ended with processes left in its group")
		}
		group.Process.Kill()
		group.Wait()
	}
	if Ended(id) {
		t.Fatal("judged ended with the sleep(1) left in its group")
	}
	syscall.Kill(-id.Group, syscall.SIGKILL)
	for deadline := time.Now().Add(5 * time.Second); !Ended(id); time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("not judged ended 5s after its group was killed")
		}
	}
}
