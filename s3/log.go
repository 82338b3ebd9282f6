package s3

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/aws/smithy-go/logging"
)

// sdkLogger takes the AWS SDK's log output, such as its warnings about
// response checksums or the instance metadata service, which it would
// otherwise write to every program's stderr, to slog.Default() at Debug
// level, with the SDK's classification ("WARN", "DEBUG") as an attribute.
type sdkLogger struct{ ctx context.Context }

// Logf implements logging.Logger.
func (l sdkLogger) Logf(classification logging.Classification, format string, v ...any) {
	ctx := l.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	slog.Default().Log(ctx, slog.LevelDebug, fmt.Sprintf(format, v...),
		"source", "aws-sdk-go-v2", "classification", string(classification))
}

// WithContext implements logging.ContextLogger, so that a handler sees the
// request's context.
func (sdkLogger) WithContext(ctx context.Context) logging.Logger { return sdkLogger{ctx} }
