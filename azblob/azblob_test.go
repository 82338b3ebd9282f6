package azblob

import (
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/s3compat/s3test"
)

// testKey is a shared key for the fakes (base64 of
// "s3cr3t-shared-key-never-shown").
const testKey = "czNjcjN0LXNoYXJlZC1rZXktbmV2ZXItc2hvd24="

// azureVariables are the variables that the driver and azidentity's chain
// read credentials from.
var azureVariables = []string{
	connectionStringEnv, sharedKeyEnv, "AZURE_STORAGE_ACCOUNT",
	"AZURE_CLIENT_ID", "AZURE_TENANT_ID", "AZURE_CLIENT_SECRET",
	"AZURE_CLIENT_CERTIFICATE_PATH", "AZURE_CLIENT_CERTIFICATE_PASSWORD",
	"AZURE_USERNAME", "AZURE_PASSWORD", "AZURE_FEDERATED_TOKEN_FILE",
	"AZURE_AUTHORITY_HOST", "AZURE_TOKEN_CREDENTIALS",
}

// TestMain isolates the tests from the machine's Azure configuration:
// credentials are the test key unless a test says otherwise, and
// azidentity's chain is narrowed to the environment, so that no test ever
// asks a managed identity endpoint or runs a CLI.
func TestMain(m *testing.M) {
	for _, name := range azureVariables {
		os.Unsetenv(name)
	}
	os.Setenv(sharedKeyEnv, testKey)
	os.Setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
	os.Exit(m.Run())
}

// withCredentials leaves only the Azure variables in env set for the rest
// of the test (and azidentity's chain narrowed to the environment).
func withCredentials(t testing.TB, env map[string]string) {
	t.Helper()
	for _, name := range azureVariables {
		t.Setenv(name, "") // restored after the test
		os.Unsetenv(name)
	}
	t.Setenv("AZURE_TOKEN_CREDENTIALS", "EnvironmentCredential")
	for name, value := range env {
		t.Setenv(name, value)
	}
}

func TestRegistered(t *testing.T) {
	if _, ok := driver.Lookup("azblob"); !ok {
		t.Fatal(`driver "azblob" is not registered`)
	}
}

func TestParseDSN(t *testing.T) {
	for _, tt := range []struct {
		dsn, container, key string
		want                settings
	}{
		{"azblob://acct/c/k", "c", "k", settings{account: "acct"}},
		{"azblob://myaccount/locks/deploy/a", "locks", "deploy/a", settings{account: "myaccount"}},
		{"azblob://acct/c/a%3Fb%23c", "c", "a?b#c", settings{account: "acct"}},
		{"azblob://devstoreaccount1/c/k?endpoint=http://127.0.0.1:10000/devstoreaccount1", "c", "k",
			settings{account: "devstoreaccount1", endpoint: "http://127.0.0.1:10000/devstoreaccount1"}},
		{"azblob://acct/c/k?endpoint=HTTP://Azurite.LOCAL:10000/acct/", "c", "k",
			settings{account: "acct", endpoint: "http://azurite.local:10000/acct"}},
	} {
		set, container, key, err := parseDSN(tt.dsn)
		if err != nil {
			t.Errorf("parseDSN(%q): %v", tt.dsn, err)
			continue
		}
		if set != tt.want || container != tt.container || key != tt.key {
			t.Errorf("parseDSN(%q) = %+v, %q, %q; want %+v, %q, %q", tt.dsn, set, container, key, tt.want, tt.container, tt.key)
		}
	}
}

func TestOpenRejects(t *testing.T) {
	const secret = "s3cr3t"
	s3test.OpenRejects(t, azblobDriver{}, secret, []struct{ DSN, Err string }{
		{"azblob://acct", "missing container"},
		{"azblob://acct/", "missing container"},
		{"azblob://acct/c", "missing key"},
		{"azblob://acct/c/", "missing key"},
		{"azblob:///c/k", "missing account"},
		{"azblob:acct/c/k", "want azblob://ACCOUNT/CONTAINER/KEY"},
		{"s3://acct/c/k", "scheme must be azblob"},
		{"azblob://Acct/c/k", "an account name is 3 to 24 lower-case letters and digits"},
		{"azblob://a.evil.example/c/k", "an account name is 3 to 24 lower-case letters and digits"},
		{"azblob://acct/c/k?endpiont=http://127.0.0.1:1", `unknown DSN parameter "endpiont" (known: endpoint)`},
		{"azblob://acct/c/k?sig=" + secret, `unknown DSN parameter "sig"`},
		// url.URL.Query would drop the endpoint, and the lock would go to Azure.
		{"azblob://acct/c/k?endpoint=http%zz://127.0.0.1:1", `DSN parameter "endpoint" has an invalid %-escape`},
		{"azblob://acct/c/k?endpoint=127.0.0.1:10000", "endpoint must be an http:// or https:// URL"},
		{"azblob://acct/c/k?endpoint=http://127.0.0.1:1/acct?sv=" + secret, "must not have user information, a query or a fragment"},
		{"azblob://acct/c/k#frag", "unexpected '#'"},
		{"azblob://acct:10000/c/k", "an account name has no port"},
		{"azblob://acct:" + secret + "@acct/c/k", "credentials do not belong in the DSN"},
	})
}

func TestOpenSharesOneClientPerSettings(t *testing.T) {
	s3test.OpenSharesOneClientPerSettings(t, azblobDriver{}, s3test.Sharing{
		DSN: func(i int) string {
			return fmt.Sprintf("azblob://sharing/c%d/locks/%d?endpoint=http://127.0.0.1:1/sharing", i%7, i)
		},
		Others: []string{"azblob://sharing/c0/k?endpoint=http://127.0.0.1:2/sharing", "azblob://sharing/c0/k"},
		Client: func(st driver.Store) any { return st.(*store).client },
		Built:  clients.Len,
	})
}

// TestLocation: a location names the endpoint when it is not Azure's, so
// that the same blob on two servers never reads alike; and DSNs that differ
// only in their key open the same store, so that Mutexes share.
func TestLocation(t *testing.T) {
	for dsn, want := range map[string]string{
		"azblob://acct/c/locks/a":                                  "azblob://acct/c/locks/a",
		"azblob://acct/c/locks/a?endpoint=http://127.0.0.1:1/acct": "azblob://acct/c/locks/a?endpoint=http://127.0.0.1:1/acct",
		"azblob://acct/c/locks/a?endpoint=http://127.0.0.1:2/acct": "azblob://acct/c/locks/a?endpoint=http://127.0.0.1:2/acct",
	} {
		st, key, err := azblobDriver{}.Open(dsn)
		if err != nil {
			t.Fatal(err)
		}
		if got := st.Location(key); got != want {
			t.Errorf("Open(%s).Location = %q, want %q", dsn, got, want)
		}
		again, _, err := azblobDriver{}.Open(strings.Replace(dsn, "locks/a", "locks/b", 1))
		if err != nil || again != st {
			t.Errorf("another key of %s opened another store (err %v)", dsn, err)
		}
	}
}
