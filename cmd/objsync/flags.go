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
// durations, durations too long for time.Duration rather than let them
// wrap, and positive ones that round to 0, which --timeout and others read
// as "none" ("for ever").
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

var errRoundsToZero = errors.New("too short: below 1ns, it would be 0")

// parseSeconds parses a Go duration or a number of seconds written in
// decimal.
func parseSeconds(text string) (time.Duration, error) {
	d, err := time.ParseDuration(text)
	if err == nil {
		switch {
		case d < 0:
			return 0, errors.New("cannot be negative")
		case d == 0 && strings.ContainsAny(text, "123456789"): // 0.1ns
			return 0, errRoundsToZero
		}
		return d, nil
	}
	// ParseFloat also reads hexadecimal floats (0x1p4) and digits with
	// underscores (1_000), which are no numbers of seconds.
	if strings.ContainsAny(text, "xX_") {
		return 0, errNotDuration
	}
	secs, err := strconv.ParseFloat(text, 64)
	if err != nil && !errors.Is(err, strconv.ErrRange) {
		return 0, tooLong(text)
	}
	d = time.Duration(math.Round(secs * float64(time.Second)))
	switch {
	case math.IsNaN(secs):
		return 0, errors.New("not a number")
	case secs < 0:
		return 0, errors.New("cannot be negative")
	case secs*float64(time.Second) >= math.MaxInt64: // Inf too
		return 0, fmt.Errorf("too long: at most %v", time.Duration(math.MaxInt64))
	case secs > 0 && d == 0:
		return 0, errRoundsToZero
	}
	return d, nil
}

// decimal is an int flag written in decimal only: pflag's own reads 0x10
// as 16 and 010 as 8, which an exit code or a count never means.
type decimal int

func decimalFlag(fs *pflag.FlagSet, p *int, name, shorthand string, value int, usage string) {
	*p = value
	fs.VarP((*decimal)(p), name, shorthand, usage)
}

func (n *decimal) Set(text string) error {
	v, err := strconv.Atoi(text)
	switch {
	case errors.Is(err, strconv.ErrRange):
		return errors.New("out of range")
	case err != nil:
		return errors.New("want a decimal integer")
	}
	*n = decimal(v)
	return nil
}

func (n *decimal) String() string { return strconv.Itoa(int(*n)) }

func (n *decimal) Type() string { return "int" }

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
