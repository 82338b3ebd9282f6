// Package integration starts real object stores for tests: MinIO, Ceph RGW
// and SeaweedFS (S3) and fake-gcs-server (GCS), each in a local Docker
// container made from the images that scripts/build-images.sh builds on
// this machine. Nothing is ever pulled from a registry.
//
// Every server listens on 127.0.0.1 only, is terminated when the test ends
// (also when it fails), and comes with a fresh bucket. Each can be stopped
// and started again, and keeps its buckets and objects as a real server
// restart does (see S3Server.Restart and GCSServer.Restart).
//
// The environment must have TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 and
// TESTCONTAINERS_RYUK_DISABLED=true; scripts/test.sh (run by "make test")
// sets both.
package integration

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"cloud.google.com/go/storage"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	s3types "github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/wait"
	"google.golang.org/api/googleapi"
	"google.golang.org/api/option"
)

// Local images built by scripts/build-images.sh.
const (
	MinIOImage   = "objsync-test/minio:latest"
	CephImage    = "objsync-test/ceph:latest"
	FakeGCSImage = "objsync-test/fake-gcs:latest"
	SeaweedImage = "objsync-test/seaweedfs:latest"
)

// ContainerLabel is set on every container and network this package
// starts, to the run's label (see runLabels), so that scripts/test.sh can
// remove what a run left behind, and only that.
const ContainerLabel = "objsync.test"

// runLabels returns the labels of this run's containers: ContainerLabel set
// to $OBJSYNC_TEST_RUN, which scripts/test.sh sets to an id of its own, or
// to "1" for a run without it.
func runLabels() map[string]string {
	run := os.Getenv("OBJSYNC_TEST_RUN")
	if run == "" {
		run = "1"
	}
	return map[string]string{ContainerLabel: run}
}

// Region is the S3 region the servers are used with. Neither MinIO nor Ceph
// checks it, but request signatures include it.
const Region = "us-east-1"

// GCSProject is the project the fake GCS buckets are created in.
const GCSProject = "objsync-test"

const (
	accessKey = "objsync-test"
	secretKey = "objsync-test-secret" // MinIO wants at least 8 characters
	// stopTimeout bounds a graceful stop before Docker kills the container.
	stopTimeout = 10 * time.Second
)

// S3Server is a running S3-compatible server (MinIO, Ceph RGW or SeaweedFS) with one
// bucket made for the caller. Use path-style addressing (UsePathStyle) with
// it: there is no DNS for virtual-hosted buckets.
type S3Server struct {
	Kind      string // "minio", "ceph" or "seaweedfs"
	Version   string // version of the server the image holds
	Endpoint  string // http://127.0.0.1:PORT
	Region    string
	AccessKey string
	SecretKey string
	Bucket    string // created by the Start function, with no objects yet

	srv *server
}

// GCSServer is a running fake-gcs-server with one bucket made for the caller.
//
// Point the Go client at it with NewClient, or with
// option.WithEndpoint(Endpoint+"/storage/v1/") and
// option.WithoutAuthentication(), or through STORAGE_EMULATOR_HOST=Host
// (process-wide, so not for parallel tests).
type GCSServer struct {
	Version   string // fake-gcs-server version
	Endpoint  string // http://127.0.0.1:PORT
	Host      string // 127.0.0.1:PORT, the STORAGE_EMULATOR_HOST form
	ProjectID string
	Bucket    string // created by StartFakeGCS, with no objects yet

	srv *server
}

// server is a started container and what it takes to stop the server in it
// and start it again.
type server struct {
	name     string
	ctr      *testcontainers.DockerContainer
	endpoint string // http://127.0.0.1:PORT
	// Signals that stop and start the server inside a running container,
	// when its data would not survive a container restart (Ceph, see
	// StartCeph). Empty: stop and start the container.
	stopSignal, startSignal string
}

// StartMinIO starts MinIO in a container and creates a bucket in it. Its
// data lives in the container's writable layer (/data), so it survives
// Restart, which stops and starts the container.
func StartMinIO(t testing.TB) S3Server {
	t.Helper()
	srv, port, version := start(t, containerSpec{
		name:  "minio",
		image: MinIOImage,
		port:  "9000/tcp",
		env: map[string]string{
			"MINIO_ROOT_USER":     accessKey,
			"MINIO_ROOT_PASSWORD": secretKey,
			// No update check (nothing may leave the machine) and no web
			// console (not needed, starts faster).
			"MINIO_UPDATE":  "off",
			"MINIO_BROWSER": "off",
		},
		wait: wait.ForHTTP("/minio/health/ready").WithPort("9000/tcp"),
	})
	s := newS3Server("minio", version, port, srv)
	s.Bucket = s.NewBucket(t)
	return s
}

// StartCeph starts a one-node Ceph cluster with its RADOS gateway in a
// container and creates a bucket in it.
//
// The OSD keeps objects in memory (memstore), and the image's start script
// makes a fresh cluster at every container start, so restarting the
// container would lose every object. Stop, Start and Restart therefore
// restart only the RADOS gateway (radosgw), the HTTP server clients talk to,
// as a real gateway restart does: the container stays up, the monitor and
// the OSD keep running and keep the data. The image's start script does it
// on signals (images/ceph/start.sh).
func StartCeph(t testing.TB) S3Server {
	t.Helper()
	srv, port, version := start(t, containerSpec{
		name:  "ceph",
		image: CephImage,
		port:  "7480/tcp",
		env: map[string]string{
			"RGW_ACCESS_KEY": accessKey,
			"RGW_SECRET_KEY": secretKey,
		},
		// The image's start script creates the S3 user before the gateway
		// listens, so any HTTP answer means ready.
		wait: wait.ForHTTP("/").WithPort("7480/tcp").
			WithStatusCodeMatcher(func(int) bool { return true }),
		// The start script stops the gateway on SIGUSR1 and starts it
		// again on SIGUSR2.
		stopSignal:  "SIGUSR1",
		startSignal: "SIGUSR2",
	})
	s := newS3Server("ceph", version, port, srv)
	s.Bucket = s.NewBucket(t)
	return s
}

// StartSeaweedFS starts SeaweedFS (master, volume server, filer and S3
// gateway in one process) in a container and creates a bucket in it. Its
// data lives in the container's writable layer (/data), so it survives
// Restart, which stops and starts the container.
func StartSeaweedFS(t testing.TB) S3Server {
	t.Helper()
	srv, port, version := start(t, containerSpec{
		name:  "seaweedfs",
		image: SeaweedImage,
		port:  "8333/tcp",
		// These make the gateway's admin identity.
		env: map[string]string{
			"AWS_ACCESS_KEY_ID":     accessKey,
			"AWS_SECRET_ACCESS_KEY": secretKey,
		},
		// The gateway answers /healthz once the filer it stands on does,
		// some seconds before conditional writes work: see Start.
		wait: wait.ForHTTP("/healthz").WithPort("8333/tcp"),
	})
	s := newS3Server("seaweedfs", version, port, srv)
	s.Bucket = s.NewBucket(t)
	s.waitConditionalWrites(t)
	return s
}

// StartFakeGCS starts fake-gcs-server in a container and creates a bucket in
// it.
//
// It uses its filesystem backend in the container's writable layer
// (/storage), so buckets and objects, with their generations, survive
// Restart, which stops and starts the container.
func StartFakeGCS(t testing.TB) GCSServer {
	t.Helper()
	srv, port, version := start(t, containerSpec{
		name:  "fake-gcs",
		image: FakeGCSImage,
		port:  "4443/tcp",
		// The server writes its own address into the URLs it hands out
		// (resumable upload sessions): it must be the published one.
		cmd: func(hostPort string) []string {
			return []string{
				"-public-host", "127.0.0.1:" + hostPort,
				"-external-url", "http://127.0.0.1:" + hostPort,
			}
		},
		wait: wait.ForHTTP("/storage/v1/b").WithPort("4443/tcp"),
	})
	g := GCSServer{
		Version:   version,
		Endpoint:  "http://127.0.0.1:" + port,
		Host:      "127.0.0.1:" + port,
		ProjectID: GCSProject,
		srv:       srv,
	}
	g.Bucket = g.NewBucket(t)
	return g
}

func newS3Server(kind, version, port string, srv *server) S3Server {
	return S3Server{
		Kind:      kind,
		Version:   version,
		Endpoint:  "http://127.0.0.1:" + port,
		Region:    Region,
		AccessKey: accessKey,
		SecretKey: secretKey,
		srv:       srv,
	}
}

// Client returns an S3 client for the server: path-style addressing, static
// credentials, and checksums only where the API requires them (recent SDKs
// add CRC32 checksums that S3-compatible stores may reject).
func (s S3Server) Client() *s3.Client {
	return s3.New(s3.Options{
		Region:                     s.Region,
		BaseEndpoint:               aws.String(s.Endpoint),
		UsePathStyle:               true,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// NewBucket creates another bucket, with a name unique to this call, and
// returns its name.
func (s S3Server) NewBucket(t testing.TB) string {
	t.Helper()
	name := bucketName()
	s.createBucket(t, name)
	return name
}

func (s S3Server) createBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	for {
		_, err := s.Client().CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(name)})
		var owned *s3types.BucketAlreadyOwnedByYou
		var apiErr smithy.APIError
		switch {
		case err == nil || errors.As(err, &owned):
			return
		case errors.As(err, &apiErr) && apiErr.ErrorCode() == "XMinioServerNotInitialized" && ctx.Err() == nil:
			// MinIO can still say so for a moment after its readiness
			// check passed (seen in CI on a loaded machine).
			time.Sleep(200 * time.Millisecond)
		default:
			t.Fatalf("integration: create bucket %s on %s at %s: %v", name, s.Kind, s.Endpoint, err)
		}
	}
}

// Restart is Stop then Start: the server goes away and comes back on the
// same address with all its buckets and objects, ETags unchanged, as after
// a real server restart.
//
//   - MinIO: the container is stopped and started again; the data is in its
//     writable layer.
//   - Ceph: only the RADOS gateway is restarted (stopped with SIGTERM, then
//     started again with the same configuration and port); the monitor and
//     the memstore OSD keep running with the data. See StartCeph.
//   - SeaweedFS: as MinIO, the container is stopped and started again.
//
// Call it from the test's goroutine (it calls t.Fatal).
func (s S3Server) Restart(t testing.TB) {
	t.Helper()
	s.Stop(t)
	s.Start(t)
}

// Stop stops the server, for tests of an unreachable store, and returns once
// it no longer answers. Start brings it back. MinIO's container is stopped,
// so clients get "connection refused". Ceph's gateway stops in a container
// that keeps running: Docker's port proxy still accepts connections and
// closes them at once, so clients get "connection reset by peer", "broken
// pipe" or EOF instead.
func (s S3Server) Stop(t testing.TB) {
	t.Helper()
	s.srv.stop(t)
}

// Start starts a stopped server again on the same address, waits until it
// answers, and checks that Bucket is still there (a restart keeps the data;
// see Restart).
func (s S3Server) Start(t testing.TB) {
	t.Helper()
	s.srv.start(t)
	if s.Bucket != "" {
		s.checkBucket(t, s.Bucket)
		s.waitConditionalWrites(t)
	}
}

// waitConditionalWrites returns once a create-only PUT to Bucket succeeds.
// SeaweedFS runs conditional writes under a lock of its filer, and its
// filer's lock ring forms some 10 s after the gateway answers: until then
// they wait or fail. The other servers pass at the first try.
func (s S3Server) waitConditionalWrites(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	key := "objsync-ready/" + bucketName()
	c := s.Client()
	for {
		try, cancelTry := context.WithTimeout(ctx, 5*time.Second)
		_, err := c.PutObject(try, &s3.PutObjectInput{
			Bucket: aws.String(s.Bucket), Key: aws.String(key),
			Body: strings.NewReader("ready"), IfNoneMatch: aws.String("*"),
		})
		cancelTry()
		var apiErr smithy.APIError
		if err == nil || errors.As(err, &apiErr) && apiErr.ErrorCode() == "PreconditionFailed" {
			break // a try that timed out landed after all: it works too
		}
		if ctx.Err() != nil {
			t.Fatalf("integration: %s at %s takes no create-only PUT: %v\n%s", s.Kind, s.Endpoint, err, containerLogs(s.srv.ctr))
		}
		time.Sleep(100 * time.Millisecond)
	}
	if _, err := c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.Bucket), Key: aws.String(key)}); err != nil {
		t.Fatalf("integration: remove %s from %s: %v", key, s.Kind, err)
	}
}

// checkBucket fails the test unless the bucket exists: a Start that lost it
// lost the data, which a restart must not.
func (s S3Server) checkBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := s.Client().HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("integration: bucket %s on %s at %s after a restart: %v", name, s.Kind, s.Endpoint, err)
	}
}

// NewClient returns a Go storage client for the emulator, without
// authentication. The caller closes it.
func (g GCSServer) NewClient(t testing.TB) *storage.Client {
	t.Helper()
	c, err := storage.NewClient(context.Background(),
		option.WithEndpoint(g.Endpoint+"/storage/v1/"),
		option.WithoutAuthentication())
	if err != nil {
		t.Fatalf("integration: storage client for %s: %v", g.Endpoint, err)
	}
	return c
}

// NewBucket creates another bucket, with a name unique to this call, and
// returns its name.
func (g GCSServer) NewBucket(t testing.TB) string {
	t.Helper()
	name := bucketName()
	g.createBucket(t, name)
	return name
}

func (g GCSServer) createBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := g.NewClient(t)
	defer c.Close()
	err := c.Bucket(name).Create(ctx, g.ProjectID, nil)
	var gerr *googleapi.Error
	if err != nil && !(errors.As(err, &gerr) && gerr.Code == http.StatusConflict) {
		t.Fatalf("integration: create bucket %s on fake-gcs at %s: %v", name, g.Endpoint, err)
	}
}

// Restart is Stop then Start: the emulator's container is stopped and
// started again on the same address. Its filesystem backend keeps buckets and
// objects in the container's writable layer, so they come back with their
// generations, as after a real server restart. New generations are the
// server's wall clock in microseconds (fake-gcs-server's rule in both
// backends), so they keep growing across a restart; nothing is counted in
// memory. Call it from the test's goroutine (it calls t.Fatal).
func (g GCSServer) Restart(t testing.TB) {
	t.Helper()
	g.Stop(t)
	g.Start(t)
}

// Stop stops the emulator's container, for tests of an unreachable store;
// clients then get "connection refused". Start brings it back.
func (g GCSServer) Stop(t testing.TB) {
	t.Helper()
	g.srv.stop(t)
}

// Start starts a stopped emulator again on the same address, waits until it
// is ready, and checks that Bucket is still there (see Restart).
func (g GCSServer) Start(t testing.TB) {
	t.Helper()
	g.srv.start(t)
	if g.Bucket != "" {
		g.checkBucket(t, g.Bucket)
	}
}

// checkBucket fails the test unless the bucket exists: a Start that lost it
// lost the data, which a restart must not.
func (g GCSServer) checkBucket(t testing.TB, name string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := g.NewClient(t)
	defer c.Close()
	if _, err := c.Bucket(name).Attrs(ctx); err != nil {
		t.Fatalf("integration: bucket %s on fake-gcs at %s after a restart: %v", name, g.Endpoint, err)
	}
}

func (s *server) stop(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if s.stopSignal != "" {
		s.signal(ctx, t, s.stopSignal)
		// The signal is handled asynchronously: return only once the
		// server is gone, so that the caller sees it stopped.
		s.waitAnswering(ctx, t, false)
		return
	}
	timeout := stopTimeout
	if err := s.ctr.Stop(ctx, &timeout); err != nil {
		t.Fatalf("integration: stop %s: %v", s.name, err)
	}
}

func (s *server) start(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if s.startSignal != "" {
		s.signal(ctx, t, s.startSignal)
		s.waitAnswering(ctx, t, true)
		return
	}
	// Start waits for readiness again. The port binding is explicit, so the
	// server comes back on the same address.
	if err := s.ctr.Start(ctx); err != nil {
		t.Fatalf("integration: start %s again: %v\n%s", s.name, err, containerLogs(s.ctr))
	}
}

// signal sends a signal to the container's main process (docker kill
// --signal).
func (s *server) signal(ctx context.Context, t testing.TB, sig string) {
	t.Helper()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatalf("integration: docker client: %v", err)
	}
	defer cli.Close()
	if _, err := cli.ContainerKill(ctx, s.ctr.GetContainerID(), client.ContainerKillOptions{Signal: sig}); err != nil {
		t.Fatalf("integration: send %s to %s: %v\n%s", sig, s.name, err, containerLogs(s.ctr))
	}
}

// waitAnswering polls the server's address until it answers HTTP (any
// status) or, with up false, until it does not. It fails the test if the
// container stops meanwhile: the start script exits when a daemon dies.
func (s *server) waitAnswering(ctx context.Context, t testing.TB, up bool) {
	t.Helper()
	// A new connection for every try (no keep-alive), straight to
	// loopback (no proxy).
	hc := &http.Client{
		Timeout:   2 * time.Second,
		Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true},
	}
	defer hc.CloseIdleConnections()
	want := "answer"
	if !up {
		want = "stop answering"
	}
	for {
		if answers(ctx, hc, s.endpoint) == up {
			return
		}
		if st, err := s.ctr.State(ctx); err == nil && !st.Running {
			t.Fatalf("integration: %s exited (status %d) while waiting for it to %s:\n%s",
				s.name, st.ExitCode, want, containerLogs(s.ctr))
		}
		select {
		case <-ctx.Done():
			t.Fatalf("integration: %s at %s did not %s in time:\n%s", s.name, s.endpoint, want, containerLogs(s.ctr))
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// answers reports whether an HTTP server answers GET / at endpoint.
func answers(ctx context.Context, hc *http.Client, endpoint string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint+"/", nil)
	if err != nil {
		return false
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return true
}

type containerSpec struct {
	name  string
	image string
	port  string // container port, "9000/tcp"
	env   map[string]string
	cmd   func(hostPort string) []string
	wait  *wait.HTTPStrategy
	// See server.
	stopSignal, startSignal string
}

// start checks the environment and the image, then runs the container with
// its port published on 127.0.0.1, and returns the host port and the
// server's version (the image's objsync.version label).
func start(t testing.TB, spec containerSpec) (*server, string, string) {
	t.Helper()
	checkEnvironment(t)
	version := imageVersion(t, spec.image)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cport := network.MustParsePort(spec.port)
	var lastErr error
	// The free port is picked before Docker binds it, so another process
	// may take it in between: try a few times.
	for range 5 {
		hostPort := freePort(t)
		opts := []testcontainers.ContainerCustomizer{
			testcontainers.WithLogger(tclog.TestLogger(t)),
			testcontainers.WithExposedPorts(spec.port),
			testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
				// An explicit host port, on loopback only, so that a
				// restarted container keeps its address.
				hc.PortBindings = network.PortMap{cport: {{
					HostIP:   netip.MustParseAddr("127.0.0.1"),
					HostPort: hostPort,
				}}}
			}),
			testcontainers.WithLabels(runLabels()),
			testcontainers.WithEnv(spec.env),
			testcontainers.WithWaitStrategyAndDeadline(3*time.Minute, spec.wait),
		}
		if spec.cmd != nil {
			opts = append(opts, testcontainers.WithCmdArgs(spec.cmd(hostPort)...))
		}
		ctr, err := testcontainers.Run(ctx, spec.image, opts...)
		// Registered before the error check: a container that started but
		// never got ready must go too.
		testcontainers.CleanupContainer(t, ctr)
		if err == nil {
			return &server{
				name:        spec.name,
				ctr:         ctr,
				endpoint:    "http://127.0.0.1:" + hostPort,
				stopSignal:  spec.stopSignal,
				startSignal: spec.startSignal,
			}, hostPort, version
		}
		lastErr = err
		if !portTaken(err) {
			// testcontainers has already logged the container's output.
			t.Fatalf("integration: start %s from %s: %v", spec.name, spec.image, err)
		}
	}
	t.Fatalf("integration: start %s: no free port after 5 tries: %v", spec.name, lastErr)
	return nil, "", ""
}

func portTaken(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "port is already allocated") ||
		strings.Contains(msg, "address already in use")
}

// freePort returns a port of 127.0.0.1 that nothing listens on right now.
func freePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("integration: find a free port: %v", err)
	}
	defer l.Close()
	return strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}

// containerLogs returns the end of a container's output, for failures.
func containerLogs(ctr *testcontainers.DockerContainer) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	rc, err := ctr.Logs(ctx)
	if err != nil {
		return fmt.Sprintf("(no log: %v)", err)
	}
	defer rc.Close()
	b, _ := io.ReadAll(rc)
	const max = 8 << 10
	if len(b) > max {
		b = b[len(b)-max:]
	}
	return string(b)
}

var (
	envOnce sync.Once
	envErr  error
)

// checkEnvironment fails the test unless testcontainers is set up for this
// machine and a Docker engine answers. It never skips: a suite that quietly
// skips its real-server tests would look green and test nothing.
func checkEnvironment(t testing.TB) {
	t.Helper()
	envOnce.Do(func() { envErr = environmentError() })
	if envErr != nil {
		t.Fatal(envErr)
	}
}

func environmentError() error {
	switch host := os.Getenv("TESTCONTAINERS_HOST_OVERRIDE"); host {
	case "127.0.0.1", "::1":
	default:
		return fmt.Errorf("integration: TESTCONTAINERS_HOST_OVERRIDE is %q; it must be 127.0.0.1 (or ::1). "+
			"Without it testcontainers may decide it runs inside a container (a /.dockerenv file is enough) "+
			"and send test traffic to the default gateway instead of loopback, where the ports are published. "+
			"Run the tests through \"make test\" / integration/scripts/test.sh, or export "+
			"TESTCONTAINERS_HOST_OVERRIDE=127.0.0.1 TESTCONTAINERS_RYUK_DISABLED=true", host)
	}
	if v, _ := strconv.ParseBool(os.Getenv("TESTCONTAINERS_RYUK_DISABLED")); !v {
		return errors.New("integration: TESTCONTAINERS_RYUK_DISABLED must be true: the Ryuk reaper image " +
			"would have to be pulled from a registry, which these tests never do (each test removes " +
			"its containers itself, and scripts/test.sh removes leftovers). Run the tests through " +
			"\"make test\" / integration/scripts/test.sh, or export it")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err == nil {
		_, err = cli.Ping(ctx, client.PingOptions{})
		cli.Close()
	}
	if err != nil {
		return fmt.Errorf("integration: no Docker engine answers (%v). These tests run MinIO, Ceph RGW, "+
			"SeaweedFS and fake-gcs-server in local containers. Run \"make test\" as root on Debian (it installs and starts "+
			"docker.io through integration/scripts/ensure-docker.sh), or install and start Docker yourself", err)
	}
	return nil
}

var imageVersions sync.Map // image name -> version label

// imageVersion fails the test unless the image exists locally (it is never
// pulled), and returns its objsync.version label.
func imageVersion(t testing.TB, image string) string {
	t.Helper()
	if v, ok := imageVersions.Load(image); ok {
		return v.(string)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cli, err := testcontainers.NewDockerClientWithOpts(ctx)
	if err != nil {
		t.Fatalf("integration: docker client: %v", err)
	}
	defer cli.Close()
	img, err := cli.ImageInspect(ctx, image)
	if err != nil {
		t.Fatalf("integration: image %s is not on this machine (%v). It is built locally, never pulled: "+
			"run integration/scripts/build-images.sh, or \"make test\" which runs it", image, err)
	}
	version := ""
	if img.Config != nil {
		version = img.Config.Labels["objsync.version"]
	}
	imageVersions.Store(image, version)
	return version
}

// bucketName returns a bucket name unique to this call, valid on S3 and GCS.
func bucketName() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return "objsync-" + hex.EncodeToString(b[:])
}
