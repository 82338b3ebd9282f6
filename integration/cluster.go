package integration

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/moby/moby/api/types/container"
	mobynet "github.com/moby/moby/api/types/network"
	"github.com/testcontainers/testcontainers-go"
	tclog "github.com/testcontainers/testcontainers-go/log"
	"github.com/testcontainers/testcontainers-go/network"
	"github.com/testcontainers/testcontainers-go/wait"
)

// MinIOCluster is a distributed MinIO of several nodes, each in its own
// container on a private Docker network, erasure-coding objects across one
// drive per node.
//
// The nodes reach each other by their aliases on that network, node0 to
// node<Nodes-1>, and all run "minio server http://node{0...N-1}/data": one
// erasure set of Nodes drives with MinIO's default parity (2 of 4 drives for
// 4 nodes, so the write quorum is 3 and any one node may be down). Each
// node's drive is /data in its container's writable layer, which survives
// KillNode and StartNode.
//
// The embedded S3Server is node 0: its Endpoint is node 0's published
// address, the one clients talk to, and its Bucket was created through it.
// Stop, Start and Restart stop and start node 0 gracefully; KillNode never
// touches node 0.
type MinIOCluster struct {
	S3Server
	Nodes int

	nodes []*server // nodes[0] is S3Server.srv
}

// clusterPort is the port every node listens on inside its container.
const clusterPort = "9000/tcp"

// StartMinIOCluster starts a distributed MinIO of nodes nodes (at least 4,
// MinIO's minimum for erasure coding across nodes) and creates a bucket in
// it. It returns once every node answers /minio/health/cluster with 200 (its
// object layer is up and sees write quorum) and node 0 sees every drive
// online, so that any one node may be killed at once. The containers and
// then the network are removed when the test ends.
func StartMinIOCluster(t testing.TB, nodes int) *MinIOCluster {
	t.Helper()
	if nodes < 4 {
		t.Fatalf("integration: a distributed MinIO needs at least 4 nodes, not %d", nodes)
	}
	checkEnvironment(t)
	version := imageVersion(t, MinIOImage)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	nw, err := network.New(ctx, network.WithLabels(runLabels()))
	// Registered before the containers' cleanups, so it runs after them:
	// Docker refuses to remove a network that containers are attached to.
	testcontainers.CleanupNetwork(t, nw)
	if err != nil {
		t.Fatalf("integration: create a Docker network for the MinIO cluster: %v", err)
	}

	// Each node waits for the others to format the drives, so none is
	// ready before all run: start them all without waiting, then wait.
	cmd := []string{"server", fmt.Sprintf("http://node{0...%d}/data", nodes-1), "--address", ":9000"}
	c := &MinIOCluster{Nodes: nodes, nodes: make([]*server, nodes)}
	var port0 string
	for i := range nodes {
		var port string
		c.nodes[i], port = startClusterNode(ctx, t, nw, i, cmd)
		if i == 0 {
			port0 = port
		}
	}
	for i, n := range c.nodes {
		// The strategy that the container's later Starts (StartNode,
		// S3Server.Start) wait with too.
		if err := n.ctr.WaitingFor.WaitUntilReady(ctx, n.ctr); err != nil {
			t.Fatalf("integration: MinIO cluster node %d at %s not ready: %v\nnode %d:\n%s",
				i, n.endpoint, err, i, containerLogs(n.ctr))
		}
	}
	c.S3Server = newS3Server("minio", version, port0, c.nodes[0])
	for i := 1; i < nodes; i++ {
		c.waitSeenOnline(ctx, t, i)
	}
	c.Bucket = c.NewBucket(t)
	return c
}

// startClusterNode runs node i, on the network under the alias node<i>, with
// its S3 port published on 127.0.0.1, and returns without waiting for it to
// be ready, with its host port. The container's wait strategy is set for
// later: its own /minio/health/cluster answers 200.
func startClusterNode(ctx context.Context, t testing.TB, nw *testcontainers.DockerNetwork, i int, cmd []string) (*server, string) {
	t.Helper()
	name := fmt.Sprintf("minio cluster node %d", i)
	cport := mobynet.MustParsePort(clusterPort)
	var lastErr error
	// The free port is picked before Docker binds it, so another process
	// may take it in between: try a few times.
	for range 5 {
		hostPort := freePort(t)
		ctr, err := testcontainers.Run(ctx, MinIOImage,
			testcontainers.WithLogger(tclog.TestLogger(t)),
			testcontainers.WithExposedPorts(clusterPort),
			testcontainers.WithHostConfigModifier(func(hc *container.HostConfig) {
				// An explicit host port, on loopback only, so that a
				// restarted node keeps its address.
				hc.PortBindings = mobynet.PortMap{cport: {{
					HostIP:   netip.MustParseAddr("127.0.0.1"),
					HostPort: hostPort,
				}}}
			}),
			testcontainers.WithLabels(runLabels()),
			testcontainers.WithEnv(map[string]string{
				"MINIO_ROOT_USER":     accessKey,
				"MINIO_ROOT_PASSWORD": secretKey,
				"MINIO_UPDATE":        "off",
				"MINIO_BROWSER":       "off",
				// Distributed MinIO refuses drives on the root
				// filesystem ("drive is part of root drive, will not be
				// used") unless it runs in CI mode; /data is in the
				// container's writable layer, on the root filesystem.
				"MINIO_CI_CD": "on",
			}),
			// The image's entry point is "/minio server /data", a
			// single-drive server.
			testcontainers.WithEntrypoint("/minio"),
			testcontainers.WithCmd(cmd...),
			network.WithNetwork([]string{"node" + strconv.Itoa(i)}, nw),
		)
		// Registered before the error check: a container that was created
		// but did not start must go too.
		testcontainers.CleanupContainer(t, ctr)
		if err == nil {
			ctr.WaitingFor = wait.ForHTTP("/minio/health/cluster").WithPort(clusterPort).
				WithStartupTimeout(3 * time.Minute)
			return &server{name: name, ctr: ctr, endpoint: "http://127.0.0.1:" + hostPort}, hostPort
		}
		lastErr = err
		if !portTaken(err) {
			t.Fatalf("integration: start %s from %s: %v", name, MinIOImage, err)
		}
	}
	t.Fatalf("integration: start %s: no free port after 5 tries: %v", name, lastErr)
	return nil, ""
}

// NodeEndpoint returns node i's published address, http://127.0.0.1:PORT,
// for requests to a node other than node 0. It stays the same across
// KillNode and StartNode. NodeEndpoint(0) is Endpoint.
func (c *MinIOCluster) NodeEndpoint(i int) string {
	return c.nodes[i].endpoint
}

// KillNode kills node i (SIGKILL, as a crash or a power cut would) and
// returns once its container has stopped. i is 1 to Nodes-1: node 0, the one
// clients talk to, is never killed.
//
// Nothing tells node 0: the node's address on the network vanishes with its
// container, as with a machine that lost power, so node 0's connections to
// it time out rather than being refused. Writes and HEADs through node 0 went
// on at once (the remaining drives hold write quorum), but for about 40 s
// after the kill a GET through node 0 could take 10 s, MinIO's internode dial
// timeout, before succeeding (or answer at once: it varied); then node 0
// treats the node as offline and GETs are fast again. With two of 4 nodes
// killed, only read quorum left, the first GET took 10 to 40 s. Give
// requests generous timeouts, and retry.
//
// StartNode brings the node back with its drive.
func (c *MinIOCluster) KillNode(t testing.TB, i int) {
	t.Helper()
	if i < 1 || i >= c.Nodes {
		t.Fatalf("integration: KillNode(%d): the node must be 1 to %d (node 0 is the one clients use and is never killed)", i, c.Nodes-1)
	}
	n := c.nodes[i]
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	n.signal(ctx, t, "SIGKILL")
	for {
		st, err := n.ctr.State(ctx)
		if err == nil && !st.Running {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("integration: %s still running after SIGKILL (%v)", n.name, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// StartNode starts node i again (1 to Nodes-1) after KillNode, on the same
// address and with the drive it had. It returns once node i answers
// /minio/health/cluster with 200 (it is up and sees write quorum) and node 0
// sees it and its drive online again, so that node 0 writes to all drives
// once more and another node may then be killed.
func (c *MinIOCluster) StartNode(t testing.TB, i int) {
	t.Helper()
	if i < 1 || i >= c.Nodes {
		t.Fatalf("integration: StartNode(%d): the node must be 1 to %d (node 0 goes through Stop and Start)", i, c.Nodes-1)
	}
	n := c.nodes[i]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	// Start waits with the container's strategy: node i's own cluster
	// health.
	if err := n.ctr.Start(ctx); err != nil {
		t.Fatalf("integration: start %s again: %v\n%s", n.name, err, containerLogs(n.ctr))
	}
	c.waitSeenOnline(ctx, t, i)
}

// Start starts node 0 again after Stop, on the same address, and returns
// once it answers /minio/health/cluster with 200, Bucket is there, and it
// sees every other running node online again.
func (c *MinIOCluster) Start(t testing.TB) {
	t.Helper()
	c.S3Server.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	for i := 1; i < c.Nodes; i++ {
		st, err := c.nodes[i].ctr.State(ctx)
		if err != nil {
			t.Fatalf("integration: state of %s: %v", c.nodes[i].name, err)
		}
		if st.Running {
			c.waitSeenOnline(ctx, t, i)
		}
	}
}

// Restart is Stop then Start: node 0 stops gracefully and comes back with its
// drive; see Start.
func (c *MinIOCluster) Restart(t testing.TB) {
	t.Helper()
	c.Stop(t)
	c.Start(t)
}

// waitSeenOnline waits until node 0 reports node i and its drive online
// (admin API, "mc admin info"). Node 0's own /minio/health/cluster does not
// tell: it answers 200 as long as it sees write quorum, with one node down
// too.
func (c *MinIOCluster) waitSeenOnline(ctx context.Context, t testing.TB, i int) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{Proxy: nil, DisableKeepAlives: true}}
	defer hc.CloseIdleConnections()
	var last string
	for {
		online, detail, err := c.seenOnline(ctx, hc, i)
		if online {
			return
		}
		last = detail
		if err != nil {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("integration: node 0 of the MinIO cluster does not see node %d online: %s\nnode 0:\n%s\nnode %d:\n%s",
				i, last, containerLogs(c.nodes[0].ctr), i, containerLogs(c.nodes[i].ctr))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// emptySHA256 is the SHA-256 of an empty body, in hex.
const emptySHA256 = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"

// seenOnline asks node 0 for the server information of the cluster (GET
// /minio/admin/v3/info, signed like an S3 request) and reports whether it
// sees node i online with all its drives "ok", and what it sees of every
// node.
func (c *MinIOCluster) seenOnline(ctx context.Context, hc *http.Client, i int) (bool, string, error) {
	// The answer waits for every node; a node that just went down can
	// hold it for tens of seconds.
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.Endpoint+"/minio/admin/v3/info", nil)
	if err != nil {
		return false, "", err
	}
	// MinIO wants the payload hash in the header as well.
	req.Header.Set("X-Amz-Content-Sha256", emptySHA256)
	creds := aws.Credentials{AccessKeyID: c.AccessKey, SecretAccessKey: c.SecretKey}
	if err := v4.NewSigner().SignHTTP(ctx, creds, req, emptySHA256, "s3", c.Region, time.Now()); err != nil {
		return false, "", err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return false, "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return false, "", err
	}
	if resp.StatusCode != http.StatusOK {
		return false, "", fmt.Errorf("admin info: %s: %s", resp.Status, body)
	}
	var info struct {
		Servers []struct {
			Endpoint string `json:"endpoint"`
			State    string `json:"state"`
			Drives   []struct {
				Endpoint string `json:"endpoint"`
				State    string `json:"state"`
			} `json:"drives"`
		} `json:"servers"`
	}
	if err := json.Unmarshal(body, &info); err != nil {
		return false, "", fmt.Errorf("admin info: %v: %.200s", err, body)
	}
	want := "node" + strconv.Itoa(i) + ":9000"
	online := false
	var seen []string
	for _, s := range info.Servers {
		drives := make([]string, len(s.Drives))
		ok := s.State == "online" && len(s.Drives) > 0
		for j, d := range s.Drives {
			drives[j] = d.State
			ok = ok && d.State == "ok"
		}
		if s.Endpoint == want {
			online = ok
		}
		seen = append(seen, fmt.Sprintf("%s %s, drives %s", s.Endpoint, s.State, strings.Join(drives, " ")))
	}
	return online, strings.Join(seen, "; "), nil
}
