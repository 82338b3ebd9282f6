package integration

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/service"
)

// AzuriteEnv names the variable that says where Azurite is installed: the
// folder holding its node_modules, as scripts/install-azurite.sh prints it
// (scripts/test.sh sets it).
const AzuriteEnv = "OBJSYNC_AZURITE"

// Azurite's account for the tests, declared to it in AZURITE_ACCOUNTS, so
// that nothing depends on its well-known development account.
const (
	azuriteAccount = "objsynctest"
	azuriteKey     = "b2Jqc3luYy10ZXN0LWF6dXJpdGUta2V5LW5vdC1hLXNlY3JldA==" // base64, as Azure keys are
)

// AzureServer is a running Azurite blob service with one container made for
// the caller. Unlike the other servers it runs as a process on this machine,
// not in a container.
type AzureServer struct {
	Version   string // Azurite's npm version
	Endpoint  string // blob service URL, http://127.0.0.1:PORT/ACCOUNT
	Account   string
	Key       string // the account's shared key (base64)
	Container string // created by StartAzurite, with no blobs yet

	proc *azuriteProcess
}

// StartAzurite starts Azurite's blob service on 127.0.0.1 and creates a
// container in it. Its data lives in a folder of the test's, on disk, so it
// survives Restart. It fails the test, never skips it, when Azurite is not
// installed.
func StartAzurite(t testing.TB) AzureServer {
	t.Helper()
	prefix := os.Getenv(AzuriteEnv)
	bin := filepath.Join(prefix, "node_modules", ".bin", "azurite-blob")
	if _, err := os.Stat(bin); prefix == "" || err != nil {
		t.Fatalf("integration: Azurite is not installed (%s=%q). Run the tests through \"make test\" / "+
			"integration/scripts/test.sh, which installs it and sets %s, or run "+
			"integration/scripts/install-azurite.sh and export %s=<the folder it prints>",
			AzuriteEnv, prefix, AzuriteEnv, AzuriteEnv)
	}
	version, err := azuriteVersion(prefix)
	if err != nil {
		t.Fatalf("integration: Azurite in %s: %v", prefix, err)
	}
	location := t.TempDir()
	var proc *azuriteProcess
	// The free port is picked before Azurite binds it, so another process
	// may take it in between: try a few times.
	for range 5 {
		port := freePort(t)
		proc = &azuriteProcess{bin: bin, endpoint: "http://127.0.0.1:" + port, args: []string{
			"--blobHost", "127.0.0.1", "--blobPort", port,
			"--location", location,
			// The SDK speaks a newer API version than Azurite knows.
			"--skipApiVersionCheck",
			"--silent",
			// Azurite sends usage data to Microsoft unless told not to;
			// nothing may leave this machine.
			"--disableTelemetry",
		}}
		if err = proc.start(t); !errors.Is(err, errPortTaken) {
			break
		}
	}
	if err != nil {
		t.Fatalf("integration: start Azurite: %v", err)
	}
	t.Cleanup(func() { proc.stop(t) })
	s := AzureServer{
		Version:  version,
		Endpoint: proc.endpoint + "/" + azuriteAccount,
		Account:  azuriteAccount,
		Key:      azuriteKey,
		proc:     proc,
	}
	s.Container = bucketName()
	if _, err := s.client(t).NewContainerClient(s.Container).Create(context.Background(), nil); err != nil {
		t.Fatalf("integration: create container %s on Azurite: %v", s.Container, err)
	}
	return s
}

// Restart stops Azurite, as SIGTERM does (it saves its metadata), and
// starts it again on the same address and data.
func (s AzureServer) Restart(t testing.TB) {
	t.Helper()
	s.proc.stop(t)
	if err := s.proc.start(t); err != nil {
		t.Fatalf("integration: start Azurite again: %v", err)
	}
}

// List returns the names of the blobs of the container that start with prefix.
func (s AzureServer) List(t testing.TB, prefix string) []string {
	t.Helper()
	var names []string
	pager := s.client(t).NewContainerClient(s.Container).NewListBlobsFlatPager(&container.ListBlobsFlatOptions{Prefix: &prefix})
	for pager.More() {
		page, err := pager.NextPage(context.Background())
		if err != nil {
			t.Fatalf("integration: list %s on Azurite: %v", s.Container, err)
		}
		for _, b := range page.Segment.BlobItems {
			names = append(names, *b.Name)
		}
	}
	return names
}

func (s AzureServer) client(t testing.TB) *service.Client {
	t.Helper()
	cred, err := service.NewSharedKeyCredential(s.Account, s.Key)
	if err == nil {
		var c *service.Client
		if c, err = service.NewClientWithSharedKeyCredential(s.Endpoint, cred, nil); err == nil {
			return c
		}
	}
	t.Fatalf("integration: Azure client for %s: %v", s.Endpoint, err)
	return nil
}

// azuriteVersion reads the version of the azurite package installed under
// prefix.
func azuriteVersion(prefix string) (string, error) {
	b, err := os.ReadFile(filepath.Join(prefix, "node_modules", "azurite", "package.json"))
	if err != nil {
		return "", err
	}
	var pkg struct{ Version string }
	if err := json.Unmarshal(b, &pkg); err != nil {
		return "", err
	}
	return pkg.Version, nil
}

var errPortTaken = errors.New("port taken")

// azuriteProcess is Azurite's blob service as a child process, which can be
// stopped and started again with the same arguments.
type azuriteProcess struct {
	bin      string
	args     []string
	endpoint string // http://127.0.0.1:PORT

	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has exited
	output lockedBuffer  // of every run, for failures
}

// start runs Azurite and waits until it answers HTTP.
func (p *azuriteProcess) start(t testing.TB) error {
	t.Helper()
	p.cmd = exec.Command(p.bin, p.args...)
	// Its account, not the well-known development one.
	p.cmd.Env = append(os.Environ(), "AZURITE_ACCOUNTS="+azuriteAccount+":"+azuriteKey)
	p.cmd.Stdout, p.cmd.Stderr = &p.output, &p.output
	if err := p.cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	p.exited = exited
	go func(cmd *exec.Cmd) { _ = cmd.Wait(); close(exited) }(p.cmd)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	hc := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	defer hc.CloseIdleConnections()
	for !answers(ctx, hc, p.endpoint) {
		select {
		case <-exited:
			if strings.Contains(p.output.String(), "EADDRINUSE") {
				return errPortTaken
			}
			return fmt.Errorf("azurite-blob exited (%v) before it answered:\n%s", p.cmd.ProcessState, p.output.String())
		case <-ctx.Done():
			p.stop(t)
			return fmt.Errorf("azurite-blob at %s did not answer in time:\n%s", p.endpoint, p.output.String())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return nil
}

// stop ends Azurite with SIGTERM, which it handles by closing its
// databases, and waits for it to exit (SIGKILL after 30 s).
func (p *azuriteProcess) stop(t testing.TB) {
	t.Helper()
	select {
	case <-p.exited:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("integration: Azurite did not stop within 30 s of SIGTERM:\n%s", p.output.String())
	}
}

// lockedBuffer is a bytes.Buffer that a process writes to while tests read it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
