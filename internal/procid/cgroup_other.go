//go:build !linux

package procid

import "errors"

var errNoCgroups = errors.New("cgroups are a Linux feature")

func cgroupEmpty(string, uint64) bool { return false }

// CgroupPath fails: cgroups are a Linux feature.
func CgroupPath(string) (string, uint64, error) { return "", 0, errNoCgroups }

// NewCgroup fails: cgroups are a Linux feature.
func NewCgroup(string) (string, error) { return "", errNoCgroups }

// KillCgroup fails: cgroups are a Linux feature.
func KillCgroup(string) error { return errNoCgroups }

// CgroupPopulated fails: cgroups are a Linux feature.
func CgroupPopulated(string) (bool, error) { return false, errNoCgroups }

// OwnCgroup fails: cgroups are a Linux feature.
func OwnCgroup() (string, error) { return "", errNoCgroups }
