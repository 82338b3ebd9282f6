//go:build !linux

package procid

import "errors"

var errNoCgroups = errors.New("cgroups are a Linux feature")

func cgroupEmpty(string, uint64) bool { return false }

// CgroupPath fails: cgroups are a Linux feature.
func CgroupPath(string) (string, uint64, error) { return "", 0, errNoCgroups }

// OwnCgroup fails: cgroups are a Linux feature.
func OwnCgroup() (string, error) { return "", errNoCgroups }
