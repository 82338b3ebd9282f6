//go:build unix

package file_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/driver/drivertest"
	"github.com/objsync/objsync/file"
)

// The tests re-execute the test binary as helper processes; this variable
// selects the helper's role.
const roleEnv = "OBJSYNC_FILE_TEST_ROLE"

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		if err := runRole(role, os.Args[len(os.Args)-1]); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runRole(role, path string) error {
	st, key, err := open(path)
	if err != nil {
		return err
	}
	ctx := context.Background()
	switch role {
	case "increment":
		// Add 1 to a decimal counter, many times, with compare-and-swap.
		for range incrementsPerProcess {
			for {
				data, v, err := st.Read(ctx, key)
				if err != nil {
					return err
				}
				n, err := strconv.Atoi(string(data))
				if err != nil {
					return err
				}
				_, err = st.Write(ctx, key, []byte(strconv.Itoa(n+1)), v)
				if err == nil {
					break
				}
				if !errors.Is(err, driver.ErrPrecondition) {
					return err
				}
			}
		}
		return nil
	case "rewrite":
		// Replace a large object forever, until killed.
		for i := 0; ; i++ {
			_, v, err := st.Read(ctx, key)
			if err != nil {
				return err
			}
			if _, err := st.Write(ctx, key, bigContent(i), v); err != nil {
				return err
			}
		}
	case "write":
		_, err := st.Write(ctx, key, []byte("x"), "")
		return err
	case "create":
		// Create-only; a failed condition exits preconditionExit.
		_, err := st.Write(ctx, key, []byte("x"), "")
		if errors.Is(err, driver.ErrPrecondition) {
			os.Exit(preconditionExit)
		}
		return err
	case "create-big":
		_, err := st.Write(ctx, key, bigContent(0), "")
		return err
	case "check-and-write":
		// The object must be whole, and writable.
		data, v, err := st.Read(ctx, key)
		if err != nil {
			return err
		}
		if !intact(data) {
			return fmt.Errorf("torn object (%d bytes)", len(data))
		}
		_, err = st.Write(ctx, key, bigContent(1), v)
		return err
	}
	return fmt.Errorf("unknown role %q", role)
}

const incrementsPerProcess = 200

// preconditionExit is the exit code of a helper whose write failed its
// condition.
const preconditionExit = 3

func open(dsn string) (driver.Store, string, error) {
	d, _ := driver.Lookup("file")
	return d.Open(dsn)
}

func mustOpen(t *testing.T, dsn string) (driver.Store, string) {
	t.Helper()
	s, key, err := open(dsn)
	if err != nil {
		t.Fatal(err)
	}
	return s, key
}

// bigContent is 1 MiB that ends with the SHA-256 of what precedes it, so a
// torn file is detected.
func bigContent(i int) []byte {
	body := bytes.Repeat(fmt.Appendf(nil, "%08d", i), 1<<17)
	sum := sha256.Sum256(body)
	return append(body, sum[:]...)
}

func intact(data []byte) bool {
	if len(data) < sha256.Size {
		return false
	}
	body, sum := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	got := sha256.Sum256(body)
	return bytes.Equal(got[:], sum)
}

func TestConformance(t *testing.T) {
	dir := t.TempDir()
	drivertest.Run(t, func(t *testing.T) (driver.Store, string) {
		s, _ := mustOpen(t, "file://"+dir+"/k")
		return s, strings.ReplaceAll(t.Name(), "/", "_") + "/"
	})
}

func TestOpen(t *testing.T) {
	wd, _ := os.Getwd()
	for dsn, want := range map[string]string{
		"file:///var/locks/a":   "file:///var/locks/a",
		"/var/locks/a b":        "file:///var/locks/a%20b",
		"relative/lock":         "file://" + wd + "/relative/lock",
		"file://localhost/x/y":  "file:///x/y",
		"file:///x/./y/../z.lk": "file:///x/z.lk",
		"FILE:///var/locks/a":   "file:///var/locks/a", // a scheme ignores case
		"File:///var/locks/a":   "file:///var/locks/a",
	} {
		s, key := mustOpen(t, dsn)
		if got := s.Location(key); got != want {
			t.Errorf("Open(%q).Location = %q, want %q", dsn, got, want)
		}
	}
	a, _ := mustOpen(t, "/shared/dir/a")
	b, _ := mustOpen(t, "file:///shared/dir/b")
	if a != b {
		t.Errorf("two keys in one directory got two stores")
	}
	for dsn, want := range map[string]string{
		"file:///x/y?sync=false": `unknown DSN parameter "sync"`,
		"file:///x/y?sync=%zz":   `DSN parameter "sync" has an invalid %-escape`,
		"file://remote/x/y":      `names host "remote"`,
		"/var/locks/":            "must name a file",
		"":                       "must name a file",
	} {
		if _, _, err := open(dsn); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Open(%q) err = %v, want it to contain %q", dsn, err, want)
		}
	}
}

func TestMissingDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "missing")
	s, key := mustOpen(t, dir+"/lock")
	ctx := context.Background()
	want := "directory " + dir + " does not exist"
	if _, _, err := s.Read(ctx, key); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Read err = %v, want it to contain %q", err, want)
	}
	if _, err := s.Write(ctx, key, nil, ""); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Write err = %v, want it to contain %q", err, want)
	}
	if _, err := s.Write(ctx, "sub/"+key, nil, ""); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Write in a subdirectory err = %v, want it to contain %q", err, want)
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a write created the missing directory: %v", err)
	}
}

func TestBadKeys(t *testing.T) {
	s, _ := mustOpen(t, t.TempDir()+"/k")
	for _, key := range []string{"../escape", "a//b", "a/./b", ".objsync-flock", "x/.objsync-tmp-y"} {
		if _, err := s.Write(context.Background(), key, nil, ""); err == nil {
			t.Errorf("Write(%q) succeeded", key)
		}
	}
}

func TestReadOnlyDirectory(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ro")
	if err := os.Mkdir(dir, 0o555); err != nil {
		t.Fatal(err)
	}
	cmd := helper(t, "write", dir+"/lock")
	cmd.Stderr = nil
	if os.Geteuid() == 0 {
		// Root ignores permissions: write as nobody instead, from a copy
		// of the test binary that nobody may run.
		parent := filepath.Dir(dir)
		bin, err := os.ReadFile(os.Args[0])
		if err == nil {
			err = os.WriteFile(parent+"/helper", bin, 0o755)
		}
		for _, d := range []string{parent, filepath.Dir(parent)} {
			if err == nil {
				err = os.Chmod(d, 0o755)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		cmd.Path = parent + "/helper"
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	}
	out, err := cmd.CombinedOutput()
	if _, ok := err.(*exec.ExitError); !ok {
		t.Fatalf("write in a read-only directory: err = %v, want a failed exit; output: %s", err, out)
	}
	if want := "no permission to write in " + dir; !strings.Contains(string(out), want) {
		t.Fatalf("output %q does not contain %q", out, want)
	}
}

func helper(t *testing.T, role, dsn string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$", dsn)
	cmd.Env = append(os.Environ(), roleEnv+"="+role)
	cmd.Stderr = os.Stderr
	return cmd
}

// TestProcessesRace has 4 processes increment one counter with
// compare-and-swap: any lost update shows in the total.
func TestProcessesRace(t *testing.T) {
	const processes = 4
	path := t.TempDir() + "/counter"
	s, key := mustOpen(t, path)
	if _, err := s.Write(context.Background(), key, []byte("0"), ""); err != nil {
		t.Fatal(err)
	}
	var cmds []*exec.Cmd
	for range processes {
		cmd := helper(t, "increment", path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds = append(cmds, cmd)
	}
	for _, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("helper: %v", err)
		}
	}
	data, _, err := s.Read(context.Background(), key)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(data), strconv.Itoa(processes*incrementsPerProcess); got != want {
		t.Fatalf("counter = %s, want %s", got, want)
	}
}

// TestKill9 kills a writer at arbitrary moments: the object must always be
// present, whole, and writable afterwards.
func TestKill9(t *testing.T) {
	path := t.TempDir() + "/big"
	s, key := mustOpen(t, path)
	ctx := context.Background()
	if _, err := s.Write(ctx, key, bigContent(0), ""); err != nil {
		t.Fatal(err)
	}
	for i := range 20 {
		cmd := helper(t, "rewrite", path)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(20+i*7) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		data, v, err := s.Read(ctx, key)
		if err != nil {
			t.Fatalf("after kill %d: %v", i, err)
		}
		if !intact(data) {
			t.Fatalf("after kill %d: torn object (%d bytes)", i, len(data))
		}
		if _, err := s.Write(ctx, key, bigContent(0), v); err != nil {
			t.Fatalf("after kill %d the object is not writable: %v", i, err)
		}
	}
}

func TestVersionsSurviveReopen(t *testing.T) {
	dir := t.TempDir()
	s, key := mustOpen(t, dir+"/k")
	ctx := context.Background()
	v, err := s.Write(ctx, key, []byte("a"), "")
	if err != nil {
		t.Fatal(err)
	}
	// A new process would read the version from the file itself.
	other := file.NewStore(dir)
	if _, err := other.Write(ctx, key, []byte("b"), v); err != nil {
		t.Fatalf("replace with the version from before: %v", err)
	}
	if _, err := s.Write(ctx, key, []byte("c"), v); !errors.Is(err, driver.ErrPrecondition) {
		t.Fatalf("stale version accepted: %v", err)
	}
}

func TestForeignFile(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(dir+"/k", []byte(`{"not":"ours"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	s, key := mustOpen(t, dir+"/k")
	ctx := context.Background()
	data, v, err := s.Read(ctx, key)
	if err != nil || string(data) != `{"not":"ours"}` {
		t.Fatalf("Read = %q, %v", data, err)
	}
	if _, err := s.Write(ctx, key, []byte("x"), ""); !errors.Is(err, driver.ErrPrecondition) {
		t.Fatalf("create-only over a foreign file: %v", err)
	}
	if _, err := s.Write(ctx, key, []byte("x"), v); err != nil {
		t.Fatalf("replace a foreign file with its version: %v", err)
	}
}

func TestDelete(t *testing.T) {
	dir := t.TempDir()
	s, key := mustOpen(t, dir+"/k")
	d := s.(driver.Deleter)
	ctx := context.Background()
	v, err := s.Write(ctx, key, []byte("a"), "")
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second time the key is absent: not an error either
		if err := d.Delete(ctx, key); err != nil {
			t.Fatalf("Delete: %v", err)
		}
	}
	if _, err := os.Stat(dir + "/k"); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the file is still there: %v", err)
	}
	if _, err := s.Write(ctx, key, []byte("a"), v); !errors.Is(err, driver.ErrPrecondition) {
		t.Fatalf("replace of a deleted object: %v, want ErrPrecondition", err)
	}
	if err := d.Delete(ctx, "missing/dir/k"); err != nil {
		t.Fatalf("Delete in a missing directory: %v", err)
	}
	if err := d.Delete(ctx, "../escape"); err == nil {
		t.Fatal("Delete of a key outside the directory succeeded")
	}
}
