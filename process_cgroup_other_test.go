//go:build !linux

package objsync_test

import "errors"

func startInCgroup(string, string, ...string) error {
	return errors.New("cgroups are a Linux feature")
}
