package s3compat

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Descriptions of the sources of AWS credentials that the AWS SDK and
// minio-go both read, for the list of sources tried in
// driver.NoCredentials. They name variables and files, never a value.
const (
	EnvKeysSource      = "environment (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY)"
	WebIdentitySource  = "web identity (AWS_WEB_IDENTITY_TOKEN_FILE)"
	ContainerSource    = "container endpoint (AWS_CONTAINER_CREDENTIALS_RELATIVE_URI, AWS_CONTAINER_CREDENTIALS_FULL_URI)"
	InstanceRoleSource = "EC2 instance role"
)

// ProfileSource describes the AWS shared config profile as a source of
// credentials: `profile "NAME" in CONFIG and CREDENTIALS`, with NAME
// profile, else AWS_PROFILE, else "default", and the files named by
// AWS_CONFIG_FILE and AWS_SHARED_CREDENTIALS_FILE, else ~/.aws/config and
// ~/.aws/credentials, as both libraries find them.
func ProfileSource(profile string) string {
	home, _ := os.UserHomeDir()
	return fmt.Sprintf("profile %q in %s and %s",
		cmp.Or(profile, os.Getenv("AWS_PROFILE"), "default"),
		cmp.Or(os.Getenv("AWS_CONFIG_FILE"), filepath.Join(home, ".aws", "config")),
		cmp.Or(os.Getenv("AWS_SHARED_CREDENTIALS_FILE"), filepath.Join(home, ".aws", "credentials")))
}

// MetadataDisabled reports whether AWS_EC2_METADATA_DISABLED forbids asking
// the EC2 instance metadata service, as the AWS SDK reads it.
func MetadataDisabled() bool {
	return strings.EqualFold(os.Getenv("AWS_EC2_METADATA_DISABLED"), "true")
}
