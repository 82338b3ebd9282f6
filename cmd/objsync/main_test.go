//go:build unix

package main

import (
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// bin is the objsync binary, built once by TestMain; the tests run it as a
// user would.
var bin string

func TestMain(m *testing.M) {
	recordMonotime() // when the test binary is a command the tests run
	dir, err := os.MkdirTemp("", "objsync-cmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	bin = filepath.Join(dir, "objsync")
	args := []string{"build", "-o", bin}
	if raceEnabled() {
		args = append(args, "-race")
	}
	build := exec.Command("go", append(args, ".")...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	code := 1
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building objsync:", err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// monotimeEnv makes the test binary, run as a command, append the time on
// CLOCK_MONOTONIC, in nanoseconds, to the file it names, and exit.
const monotimeEnv = "OBJSYNC_CMD_TEST_MONOTIME"

// recordMonotime does what monotimeEnv asks for, if it is set.
func recordMonotime() {
	path := os.Getenv(monotimeEnv)
	if path == "" {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err == nil {
		_, err = f.WriteString(strconv.FormatInt(monotonicNow(), 10) + "\n")
		f.Close()
	}
	if err != nil {
		os.Exit(1)
	}
	os.Exit(0)
}

func monotonicNow() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

// raceEnabled reports whether the tests run with the race detector, which
// the binary then gets too.
func raceEnabled() bool {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return false
	}
	for _, s := range info.Settings {
		if s.Key == "-race" && s.Value == "true" {
			return true
		}
	}
	return false
}

// safety bounds every wait of a test; nothing should come near it.
const safety = 20 * time.Second

// proc is one run of objsync, in a process group of its own so that the
// test can end whatever it started. Its output goes to files, which no
// process left behind can hold open the way it could a pipe.
type proc struct {
	cmd            *exec.Cmd
	stdout, stderr string // file names
	done           chan struct{}
}

// startCLI runs objsync with args in dir.
func startCLI(t *testing.T, dir string, args ...string) *proc {
	t.Helper()
	return startCLIVia(t, dir, nil, args...)
}

// startCLIVia runs objsync with args in dir, through a command (such as
// withoutCgroups) that ends by running its arguments, if via is not nil.
func startCLIVia(t *testing.T, dir string, via []string, args ...string) *proc {
	t.Helper()
	out, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	errOut, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	defer errOut.Close()
	argv := append(append(via, bin), args...)
	p := &proc{cmd: exec.Command(argv[0], argv[1:]...), stdout: out.Name(), stderr: errOut.Name(), done: make(chan struct{})}
	p.cmd.Dir = dir
	p.cmd.Stdout, p.cmd.Stderr = out, errOut
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
	})
	return p
}

// result is how a run of objsync ended.
type result struct {
	code           int
	stdout, stderr string
}

// wait waits for objsync to exit, within the safety bound.
func (p *proc) wait(t *testing.T) result {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(safety):
		t.Fatalf("%q still runs after %v", p.cmd.Args, safety)
	}
	stdout, _ := os.ReadFile(p.stdout)
	stderr, _ := os.ReadFile(p.stderr)
	return result{p.cmd.ProcessState.ExitCode(), string(stdout), string(stderr)}
}

// runCLI runs objsync with args in dir to the end.
func runCLI(t *testing.T, dir string, args ...string) result {
	t.Helper()
	return startCLI(t, dir, args...).wait(t)
}

// shell returns the arguments that have objsync lock run script with sh.
func shell(script string) []string { return []string{"--", "sh", "-c", script} }

// waitFile waits until the file at path exists.
func waitFile(t *testing.T, path string) {
	t.Helper()
	for deadline := time.Now().Add(safety); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return
		}
	}
	t.Fatalf("%s did not appear within %v", path, safety)
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

// oneLine checks that text is exactly one line, and returns it.
func oneLine(t *testing.T, what, text string) string {
	t.Helper()
	line, ok := strings.CutSuffix(text, "\n")
	if !ok || strings.Contains(line, "\n") || !strings.HasPrefix(line, "objsync: ") {
		t.Fatalf("%s = %q; want one line starting with \"objsync: \"", what, text)
	}
	return line
}

func TestUsageErrors(t *testing.T) {
	const secret = "supersecretvalue"
	tests := []struct {
		args []string
		want []string // in the one line on stderr
	}{
		{nil, []string{"missing command"}},
		{[]string{"frobnicate"}, []string{`unknown command "frobnicate"`}},
		{[]string{"version"}, []string{`unknown command "version" (did you mean --version?`}},
		{[]string{"lock"}, []string{"lock: want one DSN, got 0 arguments"}},
		{[]string{"lock", "l"}, []string{"lock: missing -- COMMAND"}},
		{[]string{"lock", "l", "--"}, []string{"lock: missing -- COMMAND"}},
		{[]string{"lock", "l", "m", "--", "true"}, []string{"lock: want one DSN, got 2 arguments"}},
		{[]string{"lock", "--ttl", "5ms", "l", "--", "true"}, []string{"lock: --ttl: ttl 5ms is below the minimum 100ms"}},
		{[]string{"lock", "--store-clock", "l", "--", "true"}, []string{"lock: --store-clock: file://", "cannot tell an object's age by the store's clock"}},
		{[]string{"lock", "--ttl", "soon", "l", "--", "true"}, []string{`lock: invalid argument "soon" for "--ttl" flag: want a duration`, "objsync lock --help"}},
		// A TTL whose drift margin once overflowed, and gave two holders.
		{[]string{"lock", "--ttl", "2562047h", "l", "--", "true"}, []string{"lock: --ttl: ttl 2562047h0m0s is above the maximum 720h0m0s"}},
		{[]string{"elect", "--value", "v", "--ttl", "721h", "l", "--", "true"}, []string{"elect: --ttl: ttl 721h0m0s is above the maximum 720h0m0s"}},
		// The command must be dead before the lease ends.
		{[]string{"lock", "--ttl", "30s", "--grace", "16s", "l", "--", "true"}, []string{"lock: --grace 16s does not fit --ttl 30s", "at most 15s"}},
		{[]string{"elect", "--value", "v", "--grace", "10s", "l", "--", "true"}, []string{"elect: --grace 10s does not fit --ttl 15s", "at most 7.5s"}},
		{[]string{"lock", "--try", "--timeout", "1s", "l", "--", "true"}, []string{"--try and --timeout exclude each other"}},
		{[]string{"status", "--bogus", "l"}, []string{"status: unknown flag: --bogus", "objsync status --help"}},
		{[]string{"status"}, []string{"status: want one DSN, got 0 arguments"}},
		{[]string{"status", "l", "--", "x"}, []string{"status: unexpected arguments after --"}},
		// The DSN written after --, where the command goes.
		{[]string{"lock", "-n", "--", "l", "true"}, []string{"lock: missing DSN: it comes before --, the command after it"}},
		{[]string{"status", "--", "l"}, []string{"status: missing DSN: it comes before --"}},
		{[]string{"status", "foo://bucket/key"}, []string{`unknown scheme "foo"`, "s3://, minio://, gs://, azblob://, file://", "--driver"}},
		{[]string{"check", "mem://ns/key"}, []string{`unknown scheme "mem"`}},
		{[]string{"status", "s3://bucket-only"}, []string{"s3: invalid DSN: missing key"}},
		{[]string{"status", "AZBLOB://acct/container"}, []string{"azblob: invalid DSN: missing key"}},
		{[]string{"status", "--driver", "s3", "azblob://acct/c/k"}, []string{"--driver s3 cannot open a azblob: DSN, which is the azblob driver's"}},
		{[]string{"status", "--driver", "nope", "l"}, []string{`unknown driver "nope" (known: azblob, file, gcs, minio, s3)`}},
		// A driver that takes no DSN parameters never lists them as "(known: )".
		{[]string{"status", "file:///l?regoin=x"}, []string{`file: unknown DSN parameter "regoin" (this driver takes no parameters)`}},
		{[]string{"status", "gs://b/k?regoin=x"}, []string{`gcs: invalid DSN: unknown DSN parameter "regoin" (this driver takes no parameters)`}},
		{[]string{"status", "s3://b/k?regoin=x"}, []string{`unknown DSN parameter "regoin" (known: region, endpoint, path_style, profile)`}},
		{[]string{"status", "minio://AK:" + secret + "@127.0.0.1:9000/bucket"}, []string{"minio: invalid DSN: missing key"}},
		// --driver never reads one driver's DSN with another.
		{[]string{"status", "--driver", "file", "minio://AK:" + secret + "@host/bucket/"}, []string{"--driver file cannot open a minio: DSN, which is the minio driver's"}},
		{[]string{"status", "--driver", "file", "s3://b/k"}, []string{"--driver file cannot open a s3: DSN, which is the s3 driver's"}},
		{[]string{"status", "--driver", "minio", "S3://b/k"}, []string{"--driver minio cannot open a s3: DSN"}},
		{[]string{"status", "--driver", "s3", "./lock"}, []string{"--driver s3 cannot open a plain path, which is the file driver's"}},
		// The file driver quotes its DSN in errors: the password is masked.
		{[]string{"status", "--driver", "file", "file://AK:" + secret + "@host/bucket/"}, []string{"only local paths", "AK:xxxxx@host"}},
		{[]string{"unlock", "l"}, []string{"unlock: refusing without --force", "the holder's work may go on"}},
		{[]string{"lock", "--ttl", "minio://AK:" + secret + "@host/bucket/key", "l", "--", "true"}, []string{`invalid argument "minio://AK:xxxxx@host/bucket/key" for "--ttl" flag`}},
		// Durations: Go's or seconds, never negative, NaN or wrapped.
		{[]string{"lock", "-w", "-1", "l", "--", "true"}, []string{`lock: invalid argument "-1" for "-w, --timeout" flag: cannot be negative`}},
		{[]string{"lock", "--timeout=-2s", "l", "--", "true"}, []string{`invalid argument "-2s" for "-w, --timeout" flag: cannot be negative`}},
		{[]string{"lock", "--ttl", "NaN", "l", "--", "true"}, []string{`invalid argument "NaN" for "--ttl" flag: not a number`}},
		{[]string{"lock", "--ttl", "1e30", "l", "--", "true"}, []string{`invalid argument "1e30" for "--ttl" flag: too long: at most 2562047h47m16.854775807s`}},
		{[]string{"lock", "--grace", "3000000h", "l", "--", "true"}, []string{`invalid argument "3000000h" for "--grace" flag: too long`}},
		{[]string{"status", "--for", "-0.5", "l"}, []string{`status: invalid argument "-0.5" for "--for" flag: cannot be negative`}},
		{[]string{"bench", "--duration", "inf", "l"}, []string{`bench: invalid argument "inf" for "--duration" flag: too long`}},
		{[]string{"lock", "--ttl", "5x", "l", "--", "true"}, []string{`want a duration such as 90s or 1m30s, or a number of seconds`}},
		// A positive duration that rounds to 0 would mean "for ever".
		{[]string{"lock", "-w", "1e-12", "l", "--", "true"}, []string{`invalid argument "1e-12" for "-w, --timeout" flag: too short: below 1ns`}},
		{[]string{"lock", "-w", "0.1ns", "l", "--", "true"}, []string{`invalid argument "0.1ns" for "-w, --timeout" flag: too short`}},
		{[]string{"status", "--for", "1e-10", "l"}, []string{`invalid argument "1e-10" for "--for" flag: too short`}},
		// Decimal numbers only.
		{[]string{"lock", "-w", "0x1p4", "l", "--", "true"}, []string{`invalid argument "0x1p4" for "-w, --timeout" flag: want a duration`}},
		{[]string{"lock", "-w", "1_000", "l", "--", "true"}, []string{`invalid argument "1_000" for "-w, --timeout" flag: want a duration`}},
		{[]string{"lock", "-E", "0x10", "l", "--", "true"}, []string{`invalid argument "0x10" for "-E, --conflict-exit-code" flag: want a decimal integer`}},
		{[]string{"lock", "-E", "1_0", "l", "--", "true"}, []string{`want a decimal integer`}},
		// bench's counts are bounded before anything is allocated or started,
		// and their products never wrap.
		{[]string{"bench", "--procs", "99999999999", "l"}, []string{"bench: at most 256 --procs"}},
		{[]string{"bench", "--procs", "2", "--goroutines", "4611686018427387904", "l"}, []string{"bench: at most 256 --procs, 10000 --goroutines"}},
		{[]string{"bench", "--procs", "100", "--goroutines", "101", "l"}, []string{"10000 contenders in all"}},
		{[]string{"bench", "--procs", "100", "--goroutines", "100", "--holds", "1001", "l"}, []string{"bench: at most 10000000 holds in all"}},
		{[]string{"bench", "--holds", "9223372036854775807", "l"}, []string{"bench: at most 10000000 holds in all"}},
		{[]string{"bench", "--procs", "0x10", "l"}, []string{`invalid argument "0x10" for "--procs" flag: want a decimal integer`}},
		// flock's flags.
		{[]string{"lock", "-E", "256", "l", "--", "true"}, []string{"lock: --conflict-exit-code 256: an exit code is 0 to 255", "objsync lock --help"}},
		{[]string{"elect", "--value", "v", "-E", "-1", "l", "--", "true"}, []string{"elect: --conflict-exit-code -1: an exit code is 0 to 255"}},
		{[]string{"lock", "-c", "true", "l", "--", "true"}, []string{"lock: -c and -- COMMAND exclude each other"}},
		{[]string{"lock", "-c", "true", "l", "m"}, []string{"lock: want one DSN, got 2 arguments"}},
		{[]string{"lock", "-n", "-w", "3", "l", "--", "true"}, []string{"--try and --timeout exclude each other"}},
		// A command without its --: the hint shows the line with it.
		{[]string{"lock", "--ttl", "1m", "l", "echo", "-n", "it's"}, []string{`lock: missing -- before the command: objsync lock --ttl 1m l -- echo -n 'it'\''s'`}},
		{[]string{"-v", "elect", "minio://AK:" + secret + "@127.0.0.1:9/b/k", "--value", "v", "run"}, []string{"elect: missing -- before the command: objsync -v elect minio://AK:xxxxx@127.0.0.1:9/b/k --value v -- run"}},
		{[]string{"lock", "-w5", "l"}, []string{"lock: missing -- COMMAND (or -c 'COMMAND STRING')"}},
		// A -h or --help among the command's words is the command's.
		{[]string{"lock", "l", "df", "-h"}, []string{"lock: missing -- before the command: objsync lock l -- df -h (see"}},
		{[]string{"elect", "--value", "a", "l", "du", "-h", "."}, []string{"elect: missing -- before the command: objsync elect --value a l -- du -h . (see"}},
		{[]string{"lock", "l", "terraform", "-help"}, []string{"objsync lock l -- terraform -help (see"}},
		{[]string{"lock", "-h", "l", "df"}, []string{"objsync lock -h l -- df (see"}},
		// The hint shows the words as typed.
		{[]string{"lock", "l", "go", "test", "-timeout", "5m", "./..."}, []string{"objsync lock l -- go test -timeout 5m ./... (see"}},
		// Flags before the command, as cobra reads them.
		{[]string{"--ttl", "5", "lock", "l", "true"}, []string{"lock: missing -- before the command: objsync --ttl 5 lock l -- true (see"}},
		{[]string{"--value", "status", "lock", "l", "true"}, []string{"lock: missing -- before the command: objsync --value status lock l -- true (see"}},
		{[]string{"--", "lock", "l", "--", "true"}, []string{"-- before the command: write the command first"}},
		// cobra's own errors, in objsync's words.
		{[]string{"--bogus"}, []string{"unknown flag: --bogus (see 'objsync --help')"}},
		{[]string{"help", "nosuch"}, []string{`help: unknown command "nosuch"`}},
		{[]string{"--log-format", "minio://AK:" + secret + "@host/b/k", "status", "l"}, []string{`--log-format "minio://AK:xxxxx@host/b/k": want text or json`}},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			r := runCLI(t, t.TempDir(), tt.args...)
			if r.code != exitUsage {
				t.Errorf("exit code %d, want %d", r.code, exitUsage)
			}
			line := oneLine(t, "stderr", r.stderr)
			for _, want := range tt.want {
				if !strings.Contains(line, want) {
					t.Errorf("stderr %q does not contain %q", line, want)
				}
			}
			if strings.Contains(line, secret) {
				t.Errorf("stderr reveals the secret: %q", line)
			}
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	r := runCLI(t, t.TempDir(), "--help")
	if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "Exit codes:") || !strings.Contains(r.stdout, "Example:") {
		t.Errorf("objsync --help: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	for _, args := range [][]string{{"lock", "--help"}, {"status", "-h"}, {"unlock", "--help"}, {"check", "--help"}, {"help", "lock"}} {
		r := runCLI(t, t.TempDir(), args...)
		for _, want := range []string{"Usage: objsync " + args[0], "Example:\n  objsync ", "Flags:", "-driver name"} {
			if args[0] == "help" {
				want = strings.Replace(want, "objsync help", "objsync lock", 1)
			}
			if !strings.Contains(r.stdout, want) {
				t.Errorf("objsync %s: stdout does not contain %q:\n%s", strings.Join(args, " "), want, r.stdout)
			}
		}
		if r.code != 0 || r.stderr != "" {
			t.Errorf("objsync %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
		}
	}
}

// TestPasswordsMasked: a DSN's password is masked however it is written
// and wherever a message quotes it, and a short one masks nothing else.
func TestPasswordsMasked(t *testing.T) {
	dir := t.TempDir()
	for _, password := range []string{"1", "true", "pa/ss", `a'b"c`, "x?y#z", `long\pass/word`} {
		dsn := "minio://user:" + password + "@127.0.0.1:1/bkt/k"
		for _, args := range [][]string{
			{"status", dsn},
			{"lock", dsn, "echo", "hi"},
			{"--log-format", dsn, "status", "l"},
			{"lock", "s3://b/k?endpoint=http://user:" + password + "@127.0.0.1:1", "echo", "hi"},
			{"lock", "s3://b/k?endpoint=" + url.QueryEscape("http://user:"+password+"@127.0.0.1:1"), "echo", "hi"},
		} {
			r := runCLI(t, dir, args...)
			line := oneLine(t, "stderr", r.stderr)
			leaks := []string{":" + password + "@", strconv.Quote(password), ":" + url.QueryEscape(password) + "%40", `":pa"`, "x?y"}
			if len(password) > 4 {
				leaks = append(leaks, password, strconv.Quote(password)[1:len(password)+1], url.QueryEscape(password))
			}
			for _, leak := range leaks {
				if strings.Contains(line, leak) {
					t.Errorf("objsync %q: stderr %q reveals the password %q as %q", args, line, password, leak)
				}
			}
			// Nothing else is masked.
			intact := "minio://127.0.0.1:1/bkt/k" // the lock's location
			if args[0] != "status" {
				intact = "user:xxxxx@127.0.0.1"
				if strings.Contains(args[1], "%3A") {
					intact = "user%3Axxxxx%40127.0.0.1"
				}
			}
			if (len(password) < 3 || args[0] != "status") && !strings.Contains(line, intact) {
				t.Errorf("objsync %q: stderr %q; want %q, the password masked and the rest intact", args, line, intact)
			}
		}
	}
}

// TestShortPasswordsMaskNothingElse: a short password is masked only as a
// URL's, so that output that holds it, JSON's true, is intact. (Which
// output holds a password of the command line is up to a store, so this
// one is not black-box.)
func TestShortPasswordsMaskNothingElse(t *testing.T) {
	var p printer
	p.hideSecretsOf("minio://u:true@h/b/k")
	p.hideSecretsOf("minio://u:1@127.0.0.1:1/b/k")
	var b strings.Builder
	p.print(&b, `{"held": true} minio://u:1@127.0.0.1:1/b/k "minio://u:true@h"`)
	if want := `{"held": true} minio://u:xxxxx@127.0.0.1:1/b/k "minio://u:xxxxx@h"`; b.String() != want {
		t.Errorf("printed %q; want %q", b.String(), want)
	}
}
