//go:build unix

package main

import (
	"log/slog"
	"os"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/objsync/objsync"
	"github.com/objsync/objsync/driver"
)

// logging holds the global flags -v and --log-format, and the logger
// they make (nil without -v).
var logging struct {
	verbose bool
	format  string
	logger  *slog.Logger
}

func logFlags(fs *pflag.FlagSet) {
	fs.BoolVarP(&logging.verbose, "verbose", "v", false, "log what the lock does (acquisitions, renewals, losses, the store's warnings) on stderr")
	fs.StringVar(&logging.format, "log-format", "text", "the log's `format` with -v: text or json")
}

// startLogging sets up the log that -v asks for, as slog's default too:
// drivers log there, at Debug level, what a user sees only with -v.
func startLogging(cmd *cobra.Command, _ []string) error {
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	w := scrubbed{os.Stderr}
	var h slog.Handler
	switch logging.format {
	case "text":
		h = slog.NewTextHandler(w, opts)
	case "json":
		// JSON's durations would be nanoseconds; "1.5s" is what the text
		// form and every message of objsync say.
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}
		h = slog.NewJSONHandler(w, opts)
	default:
		return usageOf(cmd.Root(), "--log-format %q: want text or json", logging.format)
	}
	if logging.verbose {
		logging.logger = slog.New(h)
		slog.SetDefault(logging.logger)
	}
	return nil
}

// newMutex opens a lock with opts, logging to the -v log.
func newMutex(store driver.Store, key string, opts ...objsync.Option) *objsync.Mutex {
	if logging.logger != nil {
		opts = append(opts, objsync.WithLogger(logging.logger))
	}
	return objsync.NewMutex(store, key, opts...)
}
