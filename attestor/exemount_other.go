//go:build !linux

package attestor

func checkExeMount(fd int, procRoot string, pid int) error { return nil }
