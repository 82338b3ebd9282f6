package s3

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	smithy "github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/objsync/objsync/driver"
	"github.com/objsync/objsync/internal/s3compat"
)

// transient is the SDK's own judgement of which errors are worth retrying:
// 5xx answers, throttling codes such as SlowDown, RequestTimeout, timeouts,
// refused and reset connections. Cancellation is not transient.
var transient = retry.IsErrorRetryables(retry.DefaultRetryables)

// checkCredentials asks the client's credentials cache for the credentials
// that the request about to be sent will sign with, so that a failure to get
// them is told from the store's answers. The SDK then finds them cached:
// nothing is asked twice.
func (s *store) checkCredentials(ctx context.Context, op, key string) error {
	_, err := s.client.credentials.Retrieve(ctx)
	switch {
	case err == nil:
		return nil
	case !s.client.lastResort || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return s.classify(op, key, fmt.Errorf("getting credentials: %w", err))
	case s3compat.MetadataDisabled():
		tried := slices.Concat(s.client.tried, []string{s3compat.InstanceRoleSource + " (not asked: AWS_EC2_METADATA_DISABLED=true)"})
		return driver.NoCredentials(op, s.Location(key), tried, nil)
	}
	tried := slices.Concat(s.client.tried, []string{s3compat.InstanceRoleSource})
	err = driver.NoCredentials(op, s.Location(key), tried, err)
	if transient.IsErrorRetryable(err) == aws.TrueTernary { // a metadata service that may answer again
		return driver.Retryable(err)
	}
	return err
}

// readError maps a GetObject error to the driver's vocabulary.
func (s *store) readError(key string, err error) error {
	if errorCode(err) != "NoSuchBucket" && (errorCode(err) == "NoSuchKey" || statusCode(err) == http.StatusNotFound) {
		return fmt.Errorf("read %s: %w", s.Location(key), driver.ErrNotExist)
	}
	return s.classify("read", key, err)
}

// writeError maps a PutObject error to the driver's vocabulary.
func (s *store) writeError(key string, ifVersion driver.Version, err error) error {
	switch {
	case errors.Is(err, driver.ErrPrecondition):
		return fmt.Errorf("write %s: %w", s.Location(key), err)
	case statusCode(err) == http.StatusPreconditionFailed:
		return fmt.Errorf("write %s: %w", s.Location(key), driver.ErrPrecondition)
	// S3 answers an If-Match write to a missing key with 404, not 412.
	case ifVersion != "" && statusCode(err) == http.StatusNotFound && errorCode(err) != "NoSuchBucket":
		return fmt.Errorf("write %s: object does not exist: %w", s.Location(key), driver.ErrPrecondition)
	}
	return s.classify("write", key, err)
}

// classify names the errors that are not about the object itself.
func (s *store) classify(op, key string, err error) error {
	loc := s.Location(key)
	var dnsErr *net.DNSError
	var opErr *net.OpError
	switch code := errorCode(err); {
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%s %s: %w", op, loc, err)
	case code == "NoSuchBucket":
		return fmt.Errorf("%s %s: bucket %q does not exist: %w", op, loc, s.bucket, err)
	case code == "InvalidAccessKeyId" || code == "SignatureDoesNotMatch" ||
		code == "ExpiredToken" || code == "InvalidToken" || statusCode(err) == http.StatusForbidden:
		return fmt.Errorf("%s %s: access denied, check the credentials: %w", op, loc, err)
	case errors.As(err, &dnsErr) || (errors.As(err, &opErr) && opErr.Op == "dial"):
		err = fmt.Errorf("%s %s: endpoint unreachable: %w", op, loc, err)
	case code == "ConditionalRequestConflict":
		// Only left after the driver's own retries.
		return driver.Retryable(fmt.Errorf("%s %s: conflicting concurrent writes: %w", op, loc, err))
	default:
		err = fmt.Errorf("%s %s: %w", op, loc, err)
	}
	if transient.IsErrorRetryable(err) == aws.TrueTernary || statusCode(err) == http.StatusTooManyRequests {
		return driver.Retryable(err)
	}
	return err
}

// errorCode returns the S3 error code in err ("NoSuchKey", "SlowDown"...), or "".
func errorCode(err error) string {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode()
	}
	return ""
}

// statusCode returns the HTTP status of the answer that caused err, or 0.
func statusCode(err error) int {
	var respErr *smithyhttp.ResponseError
	if errors.As(err, &respErr) {
		return respErr.HTTPStatusCode()
	}
	return 0
}
