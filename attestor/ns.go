package attestor

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Namespaces identifies a process's user and mount namespaces by the inode
// numbers of /proc/<pid>/ns/user and ns/mnt (the numbers in their
// "user:[N]" links; one namespace has one number on the whole system, in
// every container's proc).
type Namespaces struct {
	User, Mnt uint64
}

// ReadNamespaces reads the namespaces of pid under procRoot ("" means
// /proc). Reading another process's needs the right to ptrace it (root).
func ReadNamespaces(procRoot string, pid int) (Namespaces, error) {
	return readNamespaces(filepath.Join(procRootOr(procRoot), strconv.Itoa(pid), "ns"))
}

// threadNamespaces reads the namespaces of the calling thread (the one that
// will exec: namespaces belong to threads, and exec keeps them).
func threadNamespaces(procRoot string) (Namespaces, error) {
	return readNamespaces(filepath.Join(procRootOr(procRoot), "thread-self", "ns"))
}

func procRootOr(procRoot string) string {
	if procRoot == "" {
		return DefaultProcRoot
	}
	return procRoot
}

func readNamespaces(dir string) (Namespaces, error) {
	var ns Namespaces
	var err error
	if ns.User, err = readNamespace(dir, "user"); err != nil {
		return ns, err
	}
	ns.Mnt, err = readNamespace(dir, "mnt")
	return ns, err
}

// readNamespace parses the link dir/kind, "kind:[inode]".
func readNamespace(dir, kind string) (uint64, error) {
	path := filepath.Join(dir, kind)
	l, err := os.Readlink(path)
	if err != nil {
		return 0, fmt.Errorf("attestor: %s namespace: %w", kind, err)
	}
	s, ok := strings.CutPrefix(l, kind+":[")
	if s, ok2 := strings.CutSuffix(s, "]"); ok && ok2 {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil && n != 0 {
			return n, nil
		}
	}
	return 0, fmt.Errorf("attestor: %s: %q is not %s:[inode]", path, l, kind)
}
