package azblob

import (
	"context"
	"errors"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/objsync/objsync/driver"
)

// TestBlobPath: every request about a key goes to the blob path that the
// SDK's container client built (url.PathEscape of the key, slashes
// included, after the container), whatever the key holds, and a shared
// access signature stays the query.
func TestBlobPath(t *testing.T) {
	const sas = "sv=2024-01-01&sig=s3cr3t-signature"
	for _, tt := range []struct{ key, rawPath string }{
		{"k", "/acct/c/k"},
		{"locks/a b", "/acct/c/locks%2Fa%20b"},
		{"a?b#c%d%2F", "/acct/c/a%3Fb%23c%25d%252F"},
		{"ünï/€ 😀", "/acct/c/%C3%BCn%C3%AF%2F%E2%82%AC%20%F0%9F%98%80"},
		{"a+b&c=d;e,f:g@h$i", "/acct/c/a+b&c=d%3Be%2Cf:g@h$i"},
		// The key is joined on its own: joined with the container, ".."
		// would be cleaned away and name the account.
		{"..", "/acct/c/.."},
	} {
		for _, creds := range []string{"shared key", "shared access signature"} {
			t.Run(tt.key+"/"+creds, func(t *testing.T) {
				if creds == "shared key" {
					withCredentials(t, map[string]string{sharedKeyEnv: testKey})
				} else {
					withCredentials(t, map[string]string{connectionStringEnv: "SharedAccessSignature=" + sas})
				}
				f := serve(t, reply{status: 200, etag: `"0x1"`, body: "x"}, reply{status: 201, etag: `"0x2"`}, reply{status: 202})
				st, key, err := azblobDriver{}.Open("azblob://acct/c/" + url.PathEscape(tt.key) + "?endpoint=" + f.url)
				if err != nil || key != tt.key {
					t.Fatalf("Open = %q, %v; want key %q", key, err, tt.key)
				}
				ctx := context.Background()
				if _, _, err := st.Read(ctx, key); err != nil {
					t.Fatal(err)
				}
				if _, err := st.Write(ctx, key, []byte("y"), `"0x1"`); err != nil {
					t.Fatal(err)
				}
				if err := st.(driver.Deleter).Delete(ctx, key); err != nil {
					t.Fatal(err)
				}
				seen := f.seen()
				if len(seen) != 3 {
					t.Fatalf("%d requests, want 3", len(seen))
				}
				for _, r := range seen {
					if r.rawPath != tt.rawPath || r.path != "/acct/c/"+tt.key {
						t.Errorf("%s went to %q (%q), want %q (%q)", r.method, r.rawPath, r.path, tt.rawPath, "/acct/c/"+tt.key)
					}
					// The SDK sorts the query's parameters.
					if q, _ := url.ParseQuery(r.query); creds != "shared key" && (len(q) != 2 || q.Get("sv") != "2024-01-01" || q.Get("sig") != "s3cr3t-signature") {
						t.Errorf("%s sent the query %q, want %q", r.method, r.query, sas)
					}
				}
			})
		}
	}
}

// TestNoExpectContinue: writes never wait for "100 Continue", not even
// after a 5xx, when the SDK's default would have them do so for a minute:
// each request has a client of its own, and a lock's few bytes are not
// worth a round trip.
func TestNoExpectContinue(t *testing.T) {
	f := serve(t, reply{status: 503, code: "ServerBusy"}, reply{status: 200, etag: `"0x1"`, body: "old"}, reply{status: 201, etag: `"0x2"`})
	st := openOn(t, f)
	if _, err := st.Write(context.Background(), "k", []byte("new"), `"0x1"`); !driver.IsRetryable(err) {
		t.Fatalf("Write = %v, want a retryable ServerBusy", err)
	}
	if _, err := st.Write(context.Background(), "k", []byte("new"), `"0x1"`); err != nil {
		t.Fatal(err)
	}
	for _, r := range f.seen() {
		if e := r.header.Get("Expect"); e != "" {
			t.Errorf("%s sent Expect: %s", r.method, e)
		}
	}
}

// TestDependencies: the driver builds its clients from the SDK's blob and
// blockblob packages only. Its service and container packages (and the
// root azblob package, which imports them) pull in Apache Arrow, which
// made every program that imports the driver 9 MB larger.
func TestDependencies(t *testing.T) {
	goCmd, err := exec.LookPath("go")
	if err != nil {
		t.Skip("the go command is not on PATH: cannot list the driver's dependencies")
	}
	cmd := exec.Command(goCmd, "list", "-deps", ".")
	// Listing must never download a module or a toolchain.
	cmd.Env = append(os.Environ(), "GOPROXY=off")
	out, err := cmd.Output()
	if err != nil {
		var exitErr *exec.ExitError
		if errors.As(err, &exitErr) {
			t.Fatalf("go list -deps: %v\n%s", err, exitErr.Stderr)
		}
		t.Fatalf("go list -deps: %v", err)
	}
	const sdk = "github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	var heavy []string
	for _, dep := range strings.Fields(string(out)) {
		if strings.HasPrefix(dep, "github.com/apache/arrow") || dep == sdk || dep == sdk+"/service" || dep == sdk+"/container" {
			heavy = append(heavy, dep)
		}
	}
	if len(heavy) > 0 {
		t.Errorf("the driver depends on Apache Arrow or on SDK packages that pull it in; build clients from blob URLs with %s/blockblob instead:\n%s", sdk, strings.Join(heavy, "\n"))
	}
}

// BenchmarkBlobClient: what building each request's blob client costs, for
// each kind of credentials.
func BenchmarkBlobClient(b *testing.B) {
	for name, env := range map[string]map[string]string{
		"shared key":              {sharedKeyEnv: testKey},
		"shared access signature": {connectionStringEnv: "SharedAccessSignature=sv=2024-01-01&sig=s3cr3t"},
		"token":                   {},
	} {
		b.Run(name, func(b *testing.B) {
			withCredentials(b, env)
			// An endpoint of its own, for a client built with env.
			st, key, err := azblobDriver{}.Open("azblob://acct/c/locks/k?endpoint=http://127.0.0.1:1/bench-" + strings.ReplaceAll(name, " ", "-"))
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := st.(*store).blob(key); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
