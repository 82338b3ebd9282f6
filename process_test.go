package objsync_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/objsync/objsync"
)

// The multi-process tests re-execute the test binary; roleEnv selects what
// the child does, and the arguments after it say where.
const roleEnv = "OBJSYNC_TEST_ROLE"

const processHolds = 25

// runRole runs a child process's part and returns its exit code.
func runRole(role string) int {
	lock, journal := os.Getenv("OBJSYNC_TEST_LOCK"), os.Getenv("OBJSYNC_TEST_JOURNAL")
	if role != "contend" {
		fmt.Fprintf(os.Stderr, "unknown role %q\n", role)
		return 2
	}
	m, err := objsync.Open("file", lock, objsync.WithBackoff(time.Millisecond, 20*time.Millisecond))
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
	for range processHolds {
		fence, err := m.Lock(context.Background(), 10*time.Second)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		// One write(2) per line on an O_APPEND file: lines never mix.
		fmt.Fprintf(j, "enter %d %d\n", fence, os.Getpid())
		time.Sleep(time.Millisecond)
		fmt.Fprintf(j, "leave %d %d\n", fence, os.Getpid())
		if err := m.Unlock(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	return 0
}

// TestProcessesContend has 4 processes take turns on a file lock and
// journal every hold: enters and leaves must alternate, each leave
// matching its enter, and fences must rise by one each time.
func TestProcessesContend(t *testing.T) {
	const processes = 4
	dir := t.TempDir()
	journal := dir + "/journal"
	if err := os.WriteFile(journal, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	for range processes {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), roleEnv+"=contend", "OBJSYNC_TEST_LOCK="+dir+"/lock", "OBJSYNC_TEST_JOURNAL="+journal)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("child: %v", err)
		}
	}
	f, err := os.Open(journal)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var line int
	var fence int64
	var holder string
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		n, _ := strconv.ParseInt(fields[1], 10, 64)
		switch {
		case line%2 == 0 && fields[0] == "enter" && n == fence+1:
			fence, holder = n, fields[2]
		case line%2 == 1 && fields[0] == "leave" && n == fence && fields[2] == holder:
		default:
			t.Fatalf("journal line %d %q breaks the sequence (fence %d, holder %s)", line+1, sc.Text(), fence, holder)
		}
		line++
	}
	if want := 2 * processes * processHolds; line != want {
		t.Fatalf("journal has %d lines, want %d", line, want)
	}
}
