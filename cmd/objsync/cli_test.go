//go:build unix

package main

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/objsync/objsync/internal/s3compat/s3test"
)

// TestHelpEverywhere: -h and --help on every command, and help COMMAND,
// show its usage, its example and its flags; help of an unknown command
// is a usage error.
func TestHelpEverywhere(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"lock", "status", "unlock", "check", "elect", "leader", "bench"} {
		for _, args := range [][]string{{name, "-h"}, {name, "--help"}, {"help", name}, {name, "-help"}} {
			r := runCLI(t, dir, args...)
			for _, want := range []string{"Usage: objsync " + name, "Example:\n  objsync ", "Flags:\n", "--driver name", "Global flags:\n", "-v, --verbose"} {
				if !strings.Contains(r.stdout, want) {
					t.Errorf("objsync %s: stdout does not contain %q:\n%s", strings.Join(args, " "), want, r.stdout)
				}
			}
			if r.code != 0 || r.stderr != "" {
				t.Errorf("objsync %s: exit %d, stderr %q", strings.Join(args, " "), r.code, r.stderr)
			}
		}
	}
	if r := runCLI(t, dir, "help", "help"); r.code != 0 || !strings.Contains(r.stdout, "\n\nShow COMMAND's usage") {
		t.Errorf("objsync help help: exit %d, stdout %q; want a description", r.code, r.stdout)
	}
	// -h alone after the DSN is help too.
	for _, args := range [][]string{{"lock", "l", "-h"}, {"elect", "--value", "v", "l", "--help"}} {
		if r := runCLI(t, dir, args...); r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "Usage: objsync "+args[0]) {
			t.Errorf("objsync %s: exit %d, stdout %q, stderr %q; want help", strings.Join(args, " "), r.code, r.stdout, r.stderr)
		}
	}
	for _, args := range [][]string{{"help", "nosuch"}, {"help", "lock", "extra"}} {
		r := runCLI(t, dir, args...)
		if line := oneLine(t, "stderr", r.stderr); r.code != exitUsage || !strings.Contains(line, `unknown command`) || !strings.Contains(line, "see 'objsync --help'") {
			t.Errorf("objsync %s: exit %d, stderr %q; want %d, one line naming it", strings.Join(args, " "), r.code, line, exitUsage)
		}
	}
	r := runCLI(t, dir, "lokc", "l")
	if line := oneLine(t, "stderr", r.stderr); r.code != exitUsage || !strings.Contains(line, `unknown command "lokc" (did you mean lock?`) {
		t.Errorf("objsync lokc: exit %d, stderr %q", r.code, line)
	}
}

// TestHelpWrapped: the prose of every help text is wrapped to 80 columns,
// without a line broken early, as "so\nthat COMMAND is\ndead before" was.
// (Indented lines, tables and examples, and the flags are left alone.)
func TestHelpWrapped(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{"", "lock", "status", "unlock", "check", "elect", "leader", "bench", "completion", "help"} {
		r := runCLI(t, dir, strings.Fields(name+" --help")...)
		text, _, _ := strings.Cut(r.stdout, "\nFlags:\n")
		lines := strings.Split(text, "\n")
		prose := func(line string) bool { return line != "" && !strings.HasPrefix(line, " ") }
		for i, line := range lines {
			if !prose(line) {
				continue
			}
			if len(line) > 80 {
				t.Errorf("objsync %s --help: line %d is %d columns long: %q", name, i+1, len(line), line)
			}
			if i+1 < len(lines) && prose(lines[i+1]) {
				next, _, _ := strings.Cut(lines[i+1], " ")
				if len(line) < 60 && len(line)+1+len(next) <= 76 {
					t.Errorf("objsync %s --help: line %d is broken early: %q, then %q", name, i+1, line, lines[i+1])
				}
			}
		}
	}
}

func TestVersion(t *testing.T) {
	if r := runCLI(t, t.TempDir(), "--version", "extra"); r.code != exitUsage || r.stdout != "" || !strings.Contains(r.stderr, `--version takes no arguments, got "extra"`) {
		t.Errorf("objsync --version extra: exit %d, stdout %q, stderr %q; want %d", r.code, r.stdout, r.stderr, exitUsage)
	}
	r := runCLI(t, t.TempDir(), "--version")
	// go build of a work tree records no module version; this one's
	// test build may record no commit either.
	if r.code != 0 || r.stderr != "" || !strings.HasPrefix(r.stdout, "objsync (devel)") || !strings.HasSuffix(r.stdout, ", "+runtime.Version()+"\n") {
		t.Errorf("objsync --version: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestCompletion: the shell completion scripts are made, and bash's parses.
func TestCompletion(t *testing.T) {
	dir := t.TempDir()
	for _, shell := range []string{"bash", "zsh", "fish"} {
		r := runCLI(t, dir, "completion", shell)
		if r.code != 0 || r.stderr != "" || !strings.Contains(r.stdout, "objsync") || len(r.stdout) < 1000 {
			t.Fatalf("completion %s: exit %d, stderr %q, %d bytes", shell, r.code, r.stderr, len(r.stdout))
		}
		if shell != "bash" {
			continue
		}
		script := filepath.Join(dir, "objsync.bash")
		if err := os.WriteFile(script, []byte(r.stdout), 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("bash", "-n", script).CombinedOutput(); err != nil {
			t.Errorf("bash -n of the completion script: %v\n%s", err, out)
		}
	}
	// An unknown shell, or none, is a usage error naming them.
	for _, args := range [][]string{{"completion", "ksh"}, {"completion"}} {
		r := runCLI(t, dir, args...)
		if line := oneLine(t, "stderr", r.stderr); r.code != exitUsage || !strings.Contains(line, "want bash, zsh, fish or powershell") || r.stdout != "" {
			t.Errorf("objsync %s: exit %d, stderr %q, stdout %q; want %d, the shells named", strings.Join(args, " "), r.code, line, r.stdout, exitUsage)
		}
	}
	if r := runCLI(t, dir, "completion", "--help"); r.code != 0 || !strings.Contains(r.stdout, "bash, zsh, fish or powershell") {
		t.Errorf("completion --help: exit %d, stdout %q", r.code, r.stdout)
	}
	// The completions of lock's flags include the new ones.
	r := runCLI(t, dir, "__complete", "lock", "--con")
	if !strings.Contains(r.stdout, "--conflict-exit-code") {
		t.Errorf("completions of lock --con: %q", r.stdout)
	}
}

// TestGoFlagSpellings: the one-dash spellings of Go's flag package, which
// objsync took before, still work for the long flags; a flag's value that
// looks like one is left alone.
func TestGoFlagSpellings(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI(t, dir, "lock", "-ttl", "5s", "-timeout=3s", "-value", "-try", "-queue=false", "lock", "--", "true"); r.code != 0 || r.stderr != "" {
		t.Fatalf("lock with -ttl, -timeout=, -value, -queue=: exit %d, stderr %q", r.code, r.stderr)
	}
	if st := status(t, dir); st.TTLMillis != 5000 || st.Value != "-try" {
		t.Errorf("after lock -ttl 5s -value -try: %+v", st)
	}
	h := holder(t, dir)
	if r := runCLI(t, dir, "lock", "-try", "-quiet", "lock", "--", "true"); r.code != exitNotAcquired {
		t.Errorf("lock -try of a held lock: exit %d, stderr %q", r.code, r.stderr)
	}
	r := runCLI(t, dir, "status", "-json", "lock")
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || !st.Held {
		t.Errorf("status -json: %v, %+v", err, r)
	}
	// After --, every word is the command's, one dash or not.
	h.cmd.Process.Signal(os.Interrupt)
	h.wait(t)
	if r := runCLI(t, dir, "lock", "lock", "--", "echo", "-ttl", "-json"); r.code != 0 || r.stdout != "-ttl -json\n" {
		t.Errorf("lock -- echo -ttl -json: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
}

// TestSecondsAndFlockFlags: durations as bare seconds; -n, -w, -E and -c
// as flock(1) has them; --quiet skips silently.
func TestSecondsAndFlockFlags(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI(t, dir, "lock", "--ttl", "5", "lock", "-c", `echo "$OBJSYNC_FENCE" > fence; echo 'quoted; words'`); r.code != 0 || r.stdout != "quoted; words\n" {
		t.Fatalf("lock --ttl 5 -c ...: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if got := readFile(t, filepath.Join(dir, "fence")); got != "1\n" {
		t.Errorf("the -c command wrote the fence %q, want 1", got)
	}
	if st := status(t, dir); st.TTLMillis != 5000 {
		t.Errorf("--ttl 5: ttl_ms %d, want 5000", st.TTLMillis)
	}
	r := runCLI(t, dir, "status", "--for", "0.3", "--json", "lock")
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.WatchedMillis < 300 {
		t.Errorf("status --for 0.3: %v, %+v", err, r)
	}

	holder(t, dir)
	for _, tt := range []struct {
		args []string
		code int
		why  string
	}{
		{[]string{"-n"}, exitNotAcquired, "not waiting (--try)"},
		{[]string{"-n", "-E", "0"}, 0, "not waiting (--try)"},
		{[]string{"-nE", "7"}, 7, "not waiting (--try)"},
		{[]string{"-w", "0.3", "--conflict-exit-code=255"}, 255, "gave up after 300ms (--timeout)"},
		{[]string{"--timeout", "0.2"}, exitNotAcquired, "gave up after 200ms (--timeout)"},
	} {
		r := runCLI(t, dir, append(append([]string{"lock"}, tt.args...), "lock", "--", "touch", "ran")...)
		lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n") // the waiting line, then why
		if last := lines[len(lines)-1]; r.code != tt.code || !strings.Contains(last, tt.why) {
			t.Errorf("lock %s of a held lock: exit %d, stderr %q; want %d, %q", strings.Join(tt.args, " "), r.code, r.stderr, tt.code, tt.why)
		}
		// --quiet says nothing: the exit code tells.
		r = runCLI(t, dir, append(append([]string{"lock", "--quiet"}, tt.args...), "lock", "--", "touch", "ran")...)
		if r.code != tt.code || r.stderr != "" {
			t.Errorf("lock --quiet %s of a held lock: exit %d, stderr %q; want %d, nothing", strings.Join(tt.args, " "), r.code, r.stderr, tt.code)
		}
	}
	// flock -w 5 -E 3, as written in flock's manual: five seconds.
	start := time.Now()
	r = runCLI(t, dir, "lock", "-w", "5", "-E", "3", "lock", "--", "touch", "ran")
	if took := time.Since(start); r.code != 3 || !strings.Contains(r.stderr, "gave up after 5s (--timeout)") || took < 5*time.Second {
		t.Errorf("lock -w 5 -E 3 of a held lock: exit %d after %v, stderr %q; want 3 after 5s", r.code, took, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, "ran")); err == nil {
		t.Error("a command ran without the lock")
	}
}

// TestVerbose: -v logs the lock's doings at Debug level on stderr, as text
// or JSON, with durations written as durations; without it, nothing.
func TestVerbose(t *testing.T) {
	dir := t.TempDir()
	if r := runCLI(t, dir, "lock", "--ttl", "1.5", "lock", "--", "true"); r.code != 0 || r.stderr != "" {
		t.Fatalf("lock without -v: exit %d, stderr %q", r.code, r.stderr)
	}
	r := runCLI(t, dir, "-v", "lock", "--ttl", "1.5", "lock", "--", "true")
	if r.code != 0 || !strings.Contains(r.stderr, `level=DEBUG msg="objsync: acquired" lock=file://`+dir+"/lock fence=2 ttl=1.5s\n") {
		t.Errorf("lock -v: exit %d, stderr:\n%s", r.code, r.stderr)
	}
	r = runCLI(t, dir, "lock", "--verbose", "--log-format", "json", "--ttl", "1.5", "lock", "--", "true")
	var acquired struct {
		Level, Msg string
		TTL        any
	}
	first, _, _ := strings.Cut(r.stderr, "\n")
	if err := json.Unmarshal([]byte(first), &acquired); r.code != 0 || err != nil || acquired.Level != "DEBUG" || acquired.Msg != "objsync: acquired" || acquired.TTL != "1.5s" {
		t.Errorf("lock --verbose --log-format json: exit %d, %v, %+v; stderr:\n%s", r.code, err, acquired, r.stderr)
	}
	r = runCLI(t, dir, "--log-format", "xml", "status", "lock")
	if line := oneLine(t, "stderr", r.stderr); r.code != exitUsage || !strings.Contains(line, `--log-format "xml": want text or json`) {
		t.Errorf("--log-format xml: exit %d, stderr %q", r.code, line)
	}
}

// TestVerboseRenewalCause: with -v each failed renewal is logged with its
// cause, and the loss of the lock says it too, not "context deadline
// exceeded". The command makes the lock's directory unwritable, or, as root,
// whom no mode stops, makes the file driver's lock file a symbolic link to
// itself.
func TestVerboseRenewalCause(t *testing.T) {
	dir := t.TempDir()
	t.Cleanup(func() { os.Chmod(dir, 0o700) }) // before TempDir's removal
	block, cause := "chmod 500 .", "permission denied"
	if os.Geteuid() == 0 {
		block, cause = "rm .objsync-flock; ln -s .objsync-flock .objsync-flock", "too many levels of symbolic links"
	}
	r := runCLI(t, dir, "-v", "lock", "--ttl", "1", "--grace", "0.2", "--no-cgroup", "lock", "--", "sh", "-c", block+"; sleep 10")
	lines := strings.Split(strings.TrimSuffix(r.stderr, "\n"), "\n")
	var retries int
	for _, line := range lines {
		if strings.Contains(line, `level=DEBUG msg="objsync: renewal failed, retrying"`) {
			retries++
			if !strings.Contains(line, cause) {
				t.Errorf("a failed renewal logged without its cause %q: %s", cause, line)
			}
		}
	}
	last := lines[len(lines)-1]
	if r.code != exitLost || retries == 0 || !strings.HasPrefix(last, "objsync: lock lost: ") || !strings.Contains(last, cause) || strings.Contains(r.stderr, "deadline exceeded") {
		t.Errorf("lock -v whose renewals fail: exit %d, %d retries logged; want %d, the cause %q:\n%s", r.code, retries, exitLost, cause, r.stderr)
	}
}

// TestStatusExitCodesAndStale: status exits 0 for a held lock, 1 for a
// free one, 3 for none; stale says whether the holder's lease ran out by
// what this objsync saw.
func TestStatusExitCodesAndStale(t *testing.T) {
	dir := t.TempDir()
	for _, args := range [][]string{{"status", "lock"}, {"status", "--json", "lock"}} {
		if r := runCLI(t, dir, args...); r.code != exitStatusAbsent || r.stderr != "" {
			t.Errorf("%s of no lock: exit %d, stderr %q; want %d", strings.Join(args, " "), r.code, r.stderr, exitStatusAbsent)
		}
	}
	store, key, err := openStore(filepath.Join(dir, "lock"), "")
	if err != nil {
		t.Fatal(err)
	}
	// A holder on another host that stopped renewing a lease of 200ms.
	obj := `{"objsync_lock":1,"state":"held","holder":"gone","fence":3,"seq":1,"ttl_ms":200,"host":"elsewhere","pid":1,"acquired_at":"2026-12-03T00:00:00Z","written_at":"2026-12-03T00:00:00Z"}`
	if _, err := store.Write(t.Context(), key, []byte(obj), ""); err != nil {
		t.Fatal(err)
	}
	if st := status(t, dir); !st.Held || st.Stale {
		t.Errorf("one read of a held lock: %+v; want held, not stale", st)
	}
	r := runCLI(t, dir, "status", "--for", "0.4", "--json", "lock")
	var st statusJSON
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != exitStatusHeld || !st.Stale {
		t.Errorf("status --for 0.4 of a lock whose 200ms lease ran out: exit %d, %v, %+v; want held and stale", r.code, err, st)
	}
	r = runCLI(t, dir, "status", "--for", "0.4", "lock")
	if r.code != exitStatusHeld || !strings.Contains(r.stdout, "\nstale      true\n") {
		t.Errorf("status --for 0.4: exit %d, stdout:\n%s", r.code, r.stdout)
	}
	if r := runCLI(t, dir, "status", "lock"); !strings.Contains(r.stdout, "\nstale      false\n") {
		t.Errorf("status: stdout:\n%s", r.stdout)
	}
	if r := runCLI(t, dir, "unlock", "--force", "lock"); r.code != 0 {
		t.Fatalf("unlock --force: %+v", r)
	}
	if r := runCLI(t, dir, "status", "lock"); r.code != exitStatusFree || strings.Contains(r.stdout, "stale") {
		t.Errorf("status of a free lock: exit %d, stdout:\n%s", r.code, r.stdout)
	}
}

// TestNoCredentialsCLI: without credentials anywhere, objsync says so and
// names the sources it tried, not "access denied", and asks the store
// nothing; the AWS SDK's warning that the instance metadata service (a fake
// on loopback that knows no IMDSv2 token) made it fall back to IMDSv1 is
// shown only with -v, in its log. Credentials the store refuses are
// "access denied".
func TestNoCredentialsCLI(t *testing.T) {
	s3test.WithoutCredentials(t)
	metadata := httptest.NewServer(http.NotFoundHandler())
	defer metadata.Close()
	t.Setenv("AWS_EC2_METADATA_DISABLED", "false")
	t.Setenv("AWS_EC2_METADATA_SERVICE_ENDPOINT", metadata.URL)
	fake := s3test.Serve(t, nil, s3test.Reply{Status: 200, ETag: `"e1"`})
	dsn := "s3://bucket/lock?region=us-east-1&endpoint=" + fake.URL
	dir := t.TempDir()
	for _, args := range [][]string{{"status", dsn}, {"lock", "-n", dsn, "--", "true"}, {"unlock", "--force", dsn}} {
		r := runCLI(t, dir, args...)
		line := oneLine(t, "stderr", r.stderr)
		for _, want := range []string{
			"no credentials found; tried, in order: environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)",
			`profile "default" in `, "container endpoint", "; EC2 instance role: ",
		} {
			if r.code != exitFailed || !strings.Contains(line, want) || strings.Contains(strings.ToLower(line), "access denied") {
				t.Errorf("objsync %s without credentials: exit %d, stderr %q; want %d, containing %q", args[0], r.code, line, exitFailed, want)
			}
		}
	}
	r := runCLI(t, dir, "-v", "status", dsn)
	if !strings.Contains(r.stderr, `level=DEBUG msg="falling back to IMDSv1: `) || !strings.Contains(r.stderr, "no credentials found") {
		t.Errorf("status -v without credentials: stderr %q; want the SDK's warning in the log", r.stderr)
	}
	if n := len(fake.Seen()); n != 0 {
		t.Errorf("the store was sent %d requests without credentials", n)
	}

	t.Setenv("AWS_ACCESS_KEY_ID", "AKTEST")
	t.Setenv("AWS_SECRET_ACCESS_KEY", "refused-secret")
	denied := s3test.Serve(t, nil, s3test.Reply{Status: http.StatusForbidden, Code: "AccessDenied"})
	r = runCLI(t, dir, "status", "s3://bucket/lock?region=us-east-1&endpoint="+denied.URL)
	if line := oneLine(t, "stderr", r.stderr); r.code != exitFailed || !strings.Contains(strings.ToLower(line), "access denied") || strings.Contains(line, "no credentials") {
		t.Errorf("status with refused credentials: exit %d, stderr %q; want %d, access denied", r.code, line, exitFailed)
	}
}

// TestUnknownDriver: the list of known drivers is never printed empty. (A
// build of objsync always has drivers, so this one is not black-box.)
func TestUnknownDriver(t *testing.T) {
	for _, tt := range []struct {
		known []string
		want  string
	}{
		{nil, `unknown driver "x": this objsync has no drivers built in`},
		{[]string{"file", "s3"}, `unknown driver "x" (known: file, s3)`},
	} {
		var e *exitError
		if err := unknownDriver("x", tt.known); !errors.As(err, &e) || e.code != exitUsage || err.Error() != tt.want {
			t.Errorf("unknownDriver(x, %q) = %v; want a usage error %q", tt.known, err, tt.want)
		}
	}
}

// TestShellCommandLikeAnOption: a -c string that starts with - or + is
// sh's command, not its options; $0 stays sh.
func TestShellCommandLikeAnOption(t *testing.T) {
	dir := t.TempDir()
	for _, command := range []string{"-try", "+x"} {
		r := runCLI(t, dir, "lock", "lock", "-c", command)
		if r.code != exitNotFound || !strings.Contains(r.stderr, command+": not found") {
			t.Errorf("lock -c %s: exit %d, stderr %q; want %d, sh saying it is not found", command, r.code, r.stderr, exitNotFound)
		}
	}
	if r := runCLI(t, dir, "lock", "lock", "-c", `echo "$0" "$#"`); r.code != 0 || r.stdout != "sh 0\n" {
		t.Errorf(`lock -c 'echo "$0" "$#"': exit %d, stdout %q, stderr %q`, r.code, r.stdout, r.stderr)
	}
}

// TestVersionOf: a build stamped from a modified work tree says so once.
// (go build stamps the tests' binary from no commit, so this one is not
// black-box.)
func TestVersionOf(t *testing.T) {
	rev := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.modified", Value: "true"}}
	for _, tt := range []struct {
		main     string
		settings []debug.BuildSetting
		want     string
	}{
		{"v0.0.0-20261203152530-0123abc+dirty", rev, "v0.0.0-20261203152530-0123abc, commit 0123abc, modified, go1.26.0"},
		{"v1.2.0", rev[:1], "v1.2.0, commit 0123abc, go1.26.0"},
		{"", nil, "(devel), go1.26.0"},
		{"(devel)", rev, "(devel), commit 0123abc, modified, go1.26.0"},
	} {
		info := &debug.BuildInfo{GoVersion: "go1.26.0", Main: debug.Module{Version: tt.main}, Settings: tt.settings}
		if got := versionOf(info); got != tt.want {
			t.Errorf("versionOf(%q, %v) = %q; want %q", tt.main, tt.settings, got, tt.want)
		}
	}
}
