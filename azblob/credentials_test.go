package azblob

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/objsync/objsync/driver"
)

// TestCredentialSources: the connection string comes before the shared
// key, and each signs its own way; a refused request names the source.
func TestCredentialSources(t *testing.T) {
	const sas = "sv=2024-01-01&sig=s3cr3t-signature"
	for _, tt := range []struct {
		name   string
		env    func(f *fake) map[string]string
		signed func(r request) bool
		source string
	}{
		{
			"shared key",
			func(*fake) map[string]string { return map[string]string{sharedKeyEnv: testKey} },
			func(r request) bool { return strings.HasPrefix(r.header.Get("Authorization"), "SharedKey acct:") },
			"shared key from AZURE_STORAGE_KEY",
		},
		{
			"shared key, with an empty connection string",
			func(*fake) map[string]string {
				return map[string]string{connectionStringEnv: "", sharedKeyEnv: testKey}
			},
			func(r request) bool { return strings.HasPrefix(r.header.Get("Authorization"), "SharedKey acct:") },
			"shared key from AZURE_STORAGE_KEY",
		},
		{
			"connection string with a key, before the shared key",
			func(f *fake) map[string]string {
				return map[string]string{
					connectionStringEnv: "DefaultEndpointsProtocol=http;AccountName=acct;AccountKey=" + testKey + ";BlobEndpoint=" + f.url + "/;",
					sharedKeyEnv:        "bm90LXRoaXMtb25l",
				}
			},
			func(r request) bool { return strings.HasPrefix(r.header.Get("Authorization"), "SharedKey acct:") },
			"shared key from the connection string in AZURE_STORAGE_CONNECTION_STRING",
		},
		{
			"connection string with a shared access signature",
			func(*fake) map[string]string {
				return map[string]string{connectionStringEnv: "SharedAccessSignature=?" + sas}
			},
			func(r request) bool {
				return r.header.Get("Authorization") == "" && strings.Contains(r.query, "sig=s3cr3t-signature")
			},
			"shared access signature from the connection string in AZURE_STORAGE_CONNECTION_STRING",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := serve(t, reply{status: 403, code: "AuthenticationFailed"})
			withCredentials(t, tt.env(f))
			_, _, err := openOn(t, f).Read(context.Background(), "k")
			want := "access denied, check the credentials (" + tt.source + ")"
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Read = %v, want it to contain %q", err, want)
			}
			if err != nil && (strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), "s3cr3t")) {
				t.Errorf("the error shows a secret: %v", err)
			}
			if seen := f.seen(); len(seen) != 1 || !tt.signed(seen[0]) {
				t.Errorf("the request was not signed with the %s: %+v", tt.name, seen)
			}
		})
	}
}

// TestNoCredentials: with no connection string, no shared key and nothing
// for azidentity's chain, reads, writes and deletes fail with
// ErrNoCredentials, naming the location and the sources tried, and send
// nothing to the store.
func TestNoCredentials(t *testing.T) {
	withCredentials(t, nil)
	f := serve(t, reply{status: 200, etag: `"0x1"`})
	st := openOn(t, f)
	_, _, readErr := st.Read(context.Background(), "k")
	_, writeErr := st.Write(context.Background(), "k", []byte("v"), "")
	deleteErr := st.(driver.Deleter).Delete(context.Background(), "k")
	for _, err := range []error{readErr, writeErr, deleteErr} {
		if !errors.Is(err, driver.ErrNoCredentials) {
			t.Errorf("err = %v, want ErrNoCredentials", err)
			continue
		}
		for _, want := range []string{
			"azblob://acct/c/k?endpoint=" + f.url + ": no credentials found; tried, in order: ",
			"AZURE_STORAGE_CONNECTION_STRING (not set); AZURE_STORAGE_KEY (not set); azidentity's DefaultAzureCredential",
			"EnvironmentCredential", // the chain's own account of what it tried
		} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("err = %v\nwant it to contain %q", err, want)
			}
		}
		if driver.IsRetryable(err) {
			t.Errorf("missing credentials are retryable: %v", err)
		}
	}
	if n := len(f.seen()); n != 0 {
		t.Errorf("the store was sent %d requests without credentials", n)
	}
}

// TestBadCredentialsRefusedAtOpen: credentials that cannot be for the DSN
// are refused when it is opened, naming the variable, never a value.
func TestBadCredentialsRefusedAtOpen(t *testing.T) {
	for _, tt := range []struct {
		env  map[string]string
		want string
	}{
		{map[string]string{sharedKeyEnv: "not base64 s3cr3t"}, "AZURE_STORAGE_KEY is not a shared key (base64)"},
		{map[string]string{connectionStringEnv: "AccountName=other;AccountKey=" + testKey}, `AZURE_STORAGE_CONNECTION_STRING is for another account than the DSN's "acct"`},
		{map[string]string{connectionStringEnv: "AccountName=acct;AccountKey=" + testKey + ";BlobEndpoint=http://127.0.0.1:9/acct"},
			"AZURE_STORAGE_CONNECTION_STRING names another BlobEndpoint than the DSN's http://127.0.0.1:"},
		{map[string]string{connectionStringEnv: "AccountName=acct;AccountKey=" + testKey + ";BlobEndpoint=s3cr3t"}, "names another BlobEndpoint"},
		{map[string]string{connectionStringEnv: "UseDevelopmentStorage=true"}, "UseDevelopmentStorage is not supported"},
		{map[string]string{connectionStringEnv: "AccountName=acct"}, "has neither AccountKey nor SharedAccessSignature"},
		{map[string]string{connectionStringEnv: "AccountName=acct;AccountKey=s3cr3t!"}, "AccountKey is not a shared key (base64)"},
	} {
		withCredentials(t, tt.env)
		f := serve(t, reply{status: 500})
		_, _, err := azblobDriver{}.Open("azblob://acct/c/k?endpoint=" + f.url)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("with %v, Open = %v; want an error containing %q", tt.env, err, tt.want)
		}
		if err != nil && (strings.Contains(err.Error(), testKey) || strings.Contains(err.Error(), "s3cr3t")) {
			t.Errorf("the error shows a secret: %v", err)
		}
	}
}
