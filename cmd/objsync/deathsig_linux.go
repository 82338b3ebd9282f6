package main

import "syscall"

// setDeathSignal has the kernel send the command SIGTERM if objsync dies
// without stopping it (kill -9, the OOM killer): nothing would renew its
// lease any more.
func setDeathSignal(attr *syscall.SysProcAttr) { attr.Pdeathsig = syscall.SIGTERM }
