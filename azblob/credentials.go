package azblob

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/azcore"
	"github.com/Azure/azure-sdk-for-go/sdk/azcore/policy"
	"github.com/Azure/azure-sdk-for-go/sdk/azidentity"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/blockblob"

	"github.com/objsync/objsync/driver"
)

// The variables that the driver reads credentials from, in its order.
const (
	connectionStringEnv = "AZURE_STORAGE_CONNECTION_STRING"
	sharedKeyEnv        = "AZURE_STORAGE_KEY"
)

// defaultChainSource names azidentity's chain among the sources tried.
const defaultChainSource = "azidentity's DefaultAzureCredential (AZURE_CLIENT_ID and friends, workload identity, managed identity, Azure CLI, Azure Developer CLI, Azure PowerShell; narrowed by AZURE_TOKEN_CREDENTIALS)"

// storageScope is what the tokens of Microsoft Entra ID are asked for.
const storageScope = "https://storage.azure.com/.default"

// client is the credentials of one settings, from which each request's
// blob client is built.
type client struct {
	// base is the blob service URL that blob URLs are joined to; it
	// carries the shared access signature, when that is the credential.
	base string
	// sharedKey is the shared key, when that is the credential.
	sharedKey *blob.SharedKeyCredential
	// source names where the credentials came from, for messages.
	source string
	// token is the chain that gives tokens, when the credentials are
	// tokens, else nil; its failure to find any means that no
	// credentials were found.
	token *cachedToken
}

// clientOptions are the options of every blob client. The lock protocol
// retries transient errors itself, and a write retried here could turn a
// success whose answer was lost into a precondition failure. So the SDK
// never retries.
//
// Nor does it send "Expect: 100-continue" for a minute after a 429, 500 or
// 503, as by default: each request has a client of its own, which would
// not remember the answer anyway, and a lock's few bytes are not worth the
// round trip that the header costs.
var clientOptions = &blockblob.ClientOptions{
	ClientOptions:          azcore.ClientOptions{Retry: policy.RetryOptions{MaxRetries: -1}},
	ExpectContinueBehavior: blob.ExpectContinueOptions{Mode: blob.ExpectContinueModeOff},
}

// blob returns a client of the blob at blobURL, which must have been
// joined to c.base, signed with c's credentials.
func (c *client) blob(blobURL string) (*blockblob.Client, error) {
	switch {
	case c.sharedKey != nil:
		return blockblob.NewClientWithSharedKeyCredential(blobURL, c.sharedKey, clientOptions)
	case c.token != nil:
		return blockblob.NewClient(blobURL, c.token, clientOptions)
	}
	return blockblob.NewClientWithNoCredential(blobURL, clientOptions)
}

func newClient(set settings) (*client, error) {
	// A variable set to "" counts as unset, as in the "tried" list.
	if cs := os.Getenv(connectionStringEnv); cs != "" {
		return fromConnectionString(set, cs)
	}
	if key := os.Getenv(sharedKeyEnv); key != "" {
		cred, err := blob.NewSharedKeyCredential(set.account, key)
		if err != nil {
			return nil, fmt.Errorf("%s is not a shared key (base64)", sharedKeyEnv)
		}
		return &client{base: set.serviceURL(), sharedKey: cred, source: "shared key from " + sharedKeyEnv}, nil
	}
	chain, err := azidentity.NewDefaultAzureCredential(nil)
	if err != nil {
		return nil, fmt.Errorf("azidentity's DefaultAzureCredential: %w", err)
	}
	return &client{base: set.serviceURL(), source: "token from azidentity's DefaultAzureCredential",
		token: &cachedToken{source: chain}}, nil
}

// fromConnectionString builds a client on the credentials of a connection
// string, and only those: the DSN says where the blobs are. Its errors name
// fields, never values.
func fromConnectionString(set settings, cs string) (*client, error) {
	fields := map[string]string{}
	for part := range strings.SplitSeq(cs, ";") {
		if name, value, ok := strings.Cut(strings.TrimSpace(part), "="); ok {
			fields[strings.ToLower(name)] = value
		}
	}
	if fields["usedevelopmentstorage"] != "" {
		return nil, fmt.Errorf("%s: UseDevelopmentStorage is not supported; give AccountName and AccountKey, and the emulator's endpoint in the DSN", connectionStringEnv)
	}
	if name := fields["accountname"]; name != "" && name != set.account {
		return nil, fmt.Errorf("%s is for another account than the DSN's %q", connectionStringEnv, set.account)
	}
	if e := fields["blobendpoint"]; e != "" {
		if norm, err := normalizeEndpoint(e); err != nil || norm != set.serviceURL() {
			return nil, fmt.Errorf("%s names another BlobEndpoint than the DSN's %s; give it as the DSN's endpoint parameter", connectionStringEnv, set.serviceURL())
		}
	}
	source := "connection string in " + connectionStringEnv
	switch key, sas := fields["accountkey"], fields["sharedaccesssignature"]; {
	case key != "":
		cred, err := blob.NewSharedKeyCredential(set.account, key)
		if err != nil {
			return nil, fmt.Errorf("%s: AccountKey is not a shared key (base64)", connectionStringEnv)
		}
		return &client{base: set.serviceURL(), sharedKey: cred, source: "shared key from the " + source}, nil
	case sas != "":
		// runtime.JoinPaths keeps the query at the end of the URLs it joins.
		return &client{base: set.serviceURL() + "?" + strings.TrimPrefix(sas, "?"),
			source: "shared access signature from the " + source}, nil
	}
	return nil, fmt.Errorf("%s has neither AccountKey nor SharedAccessSignature", connectionStringEnv)
}

// checkCredentials asks for the token that the request about to be sent
// will carry, when the credentials are tokens, so that finding none is
// told from the store's answers. The request then finds it cached.
func (s *store) checkCredentials(ctx context.Context, op, key string) error {
	if s.client.token == nil {
		return nil
	}
	_, err := s.client.token.GetToken(ctx, policy.TokenRequestOptions{Scopes: []string{storageScope}})
	var authFailed *azidentity.AuthenticationFailedError
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &authFailed):
		// A source was configured, and failed: its own error says why.
		return s.classify(op, key, fmt.Errorf("getting a token: %w", err))
	}
	tried := []string{connectionStringEnv + " (not set)", sharedKeyEnv + " (not set)", defaultChainSource}
	return driver.NoCredentials(op, s.Location(key), tried, err)
}

// cachedToken keeps a token until five minutes before it expires: some
// sources (the Azure CLI) cache nothing and would run a program for every
// request.
type cachedToken struct {
	source azcore.TokenCredential
	mu     sync.Mutex
	token  azcore.AccessToken
	scopes string
}

// GetToken implements azcore.TokenCredential.
func (c *cachedToken) GetToken(ctx context.Context, opts policy.TokenRequestOptions) (azcore.AccessToken, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	// A claims challenge or another tenant asks for a new token.
	scopes := strings.Join(opts.Scopes, " ")
	if opts.Claims == "" && opts.TenantID == "" && scopes == c.scopes && time.Until(c.token.ExpiresOn) > 5*time.Minute {
		return c.token, nil
	}
	token, err := c.source.GetToken(ctx, opts)
	if err != nil {
		return azcore.AccessToken{}, err
	}
	if opts.Claims == "" && opts.TenantID == "" {
		c.token, c.scopes = token, scopes
	}
	return token, nil
}
