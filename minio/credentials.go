package minio

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"

	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/s3compat"
)

// chain is minio-go's credential chain, which sends requests anonymous when
// no source has a key, and remembers whether its last answer was that, so
// that a refusal of an anonymous request can be reported as missing
// credentials. With no key it is asked again at every request, so the
// answer it remembers is that of the request that failed, unless the
// sources changed in between.
type chain struct {
	credentials.Chain
	anonymous atomic.Bool
}

// Retrieve implements credentials.Provider.
func (c *chain) Retrieve() (credentials.Value, error) { return c.RetrieveWithCredContext(nil) }

// RetrieveWithCredContext implements credentials.Provider.
func (c *chain) RetrieveWithCredContext(cc *credentials.CredContext) (credentials.Value, error) {
	v, err := c.Chain.RetrieveWithCredContext(cc)
	c.anonymous.Store(err == nil && v.SignerType.IsAnonymous())
	return v, err
}

// iamUnlessMetadataDisabled is minio-go's IAM source, which asks a web
// identity token, a container endpoint or, when neither is configured, the
// EC2 instance metadata service; except that, like the AWS SDK, it does not
// ask the instance metadata service when AWS_EC2_METADATA_DISABLED is true.
type iamUnlessMetadataDisabled struct{ credentials.IAM }

var errMetadataDisabled = errors.New("EC2 instance metadata disabled by AWS_EC2_METADATA_DISABLED")

// Retrieve implements credentials.Provider.
func (p *iamUnlessMetadataDisabled) Retrieve() (credentials.Value, error) {
	return p.RetrieveWithCredContext(nil)
}

// RetrieveWithCredContext implements credentials.Provider.
func (p *iamUnlessMetadataDisabled) RetrieveWithCredContext(cc *credentials.CredContext) (credentials.Value, error) {
	if instanceRoleOnly() && s3compat.MetadataDisabled() {
		return credentials.Value{}, errMetadataDisabled
	}
	return p.IAM.RetrieveWithCredContext(cc)
}

// instanceRoleOnly reports whether the IAM source would ask the instance
// metadata service: no web identity token and no container endpoint.
func instanceRoleOnly() bool {
	return os.Getenv("AWS_WEB_IDENTITY_TOKEN_FILE") == "" &&
		os.Getenv("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI") == "" &&
		os.Getenv("AWS_CONTAINER_CREDENTIALS_FULL_URI") == ""
}

// noCredentials reports a request that the store refused (err) after it
// was sent anonymous because no source had a key, naming the sources in
// the chain's order.
func (s *store) noCredentials(op, key string, err error) error {
	home, _ := os.UserHomeDir()
	mcConfig := filepath.Join(home, ".mc", "config.json")
	if runtime.GOOS == "windows" {
		mcConfig = filepath.Join(home, "mc", "config.json")
	}
	instanceRole := s3compat.InstanceRoleSource
	if instanceRoleOnly() && s3compat.MetadataDisabled() {
		instanceRole += " (not asked: AWS_EC2_METADATA_DISABLED=true)"
	}
	tried := []string{
		"the DSN's user information",
		"environment (MINIO_ROOT_USER, MINIO_ROOT_PASSWORD, or MINIO_ACCESS_KEY, MINIO_SECRET_KEY)",
		s3compat.EnvKeysSource,
		fmt.Sprintf("alias %q in %s", cmp.Or(os.Getenv("MINIO_ALIAS"), "s3"),
			cmp.Or(os.Getenv("MINIO_SHARED_CREDENTIALS_FILE"), mcConfig)),
		s3compat.ProfileSource(""),
		s3compat.WebIdentitySource,
		s3compat.ContainerSource,
		instanceRole,
	}
	return driver.NoCredentials(op, s.Location(key), tried,
		fmt.Errorf("the store refused the request sent without them: %w", err))
}
