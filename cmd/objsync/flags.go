//go:build unix

package main

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// seconds is a duration flag that also takes a bare number of seconds, as
// flock -w, sleep and timeout do: 5, 0.5, 1m30s. It refuses negative
// durations, and durations too long for time.Duration rather than let them
// wrap.
type seconds time.Duration

func durationFlag(fs *pflag.FlagSet, p *time.Duration, name, shorthand string, value time.Duration, usage string) {
	*p = value
	fs.VarP((*seconds)(p), name, shorthand, usage)
}

func (s *seconds) Set(text string) error {
	d, err := parseSeconds(text)
	if err != nil {
		return err
	}
	*s = seconds(d)
	return nil
}

func (s *seconds) String() string {
	if *s == 0 {
		return "0" // which pflag takes for no default
	}
	return time.Duration(*s).String()
}

func (s *seconds) Type() string { return "duration" }

var errNotDuration = errors.New("want a duration such as 90s or 1m30s, or a number of seconds")

// parseSeconds parses a Go duration or a number of seconds.
func parseSeconds(text string) (time.Duration, error) {
	d, err := time.ParseDuration(text)
	if err == nil {
		if d < 0 {
			return 0, errors.New("cannot be negative")
		}
		return d, nil
	}
	secs, err := strconv.ParseFloat(text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, tooLong(text)
	}
	switch {
	case math.IsNaN(secs):
		return 0, errors.New("not a number")
	case secs < 0:
		return 0, errors.New("cannot be negative")
	case secs*float64(time.Second) >= math.MaxInt64: // Inf too
		return 0, fmt.Errorf("too long: at most %v", time.Duration(math.MaxInt64))
	}
	return time.Duration(math.Round(secs * float64(time.Second))), nil
}

// tooLong tells a duration that time.ParseDuration refused for its size
// ("3000000h") from one it could not read.
func tooLong(text string) error {
	for _, unit := range []struct {
		suffix string
		size   time.Duration
	}{{"ns", time.Nanosecond}, {"us", time.Microsecond}, {"µs", time.Microsecond}, {"ms", time.Millisecond}, {"s", time.Second}, {"m", time.Minute}, {"h", time.Hour}} {
		n, ok := strings.CutSuffix(text, unit.suffix)
		if v, err := strconv.ParseFloat(n, 64); ok && err == nil && v >= 0 && v*float64(unit.size) >= math.MaxInt64 {
			return fmt.Errorf("too long: at most %v", time.Duration(math.MaxInt64))
		}
	}
	return errNotDuration
}
