//go:build !linux

package attestor

func (c *DigestCache) checkExeMount(fd int, procRoot string, pid int) error { return nil }

type mountKey struct{ ns, mnt uint64 }
