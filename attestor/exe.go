package attestor

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// DefaultDigestCacheSize is the number of executables a DigestCache
// remembers.
const DefaultDigestCacheSize = 1024

// DigestCache remembers the SHA-256 of executables by (device, inode,
// size, mtime, ctime), so that a binary is hashed once however many
// processes run it. Any change to the file changes its ctime (and a
// replaced file has a new inode), so a stale digest is never returned.
// It is safe for concurrent use; the zero value is not, use
// [NewDigestCache].
type DigestCache struct {
	mu      sync.Mutex
	max     int
	digests map[fileKey]string
}

type fileKey struct {
	dev, ino     uint64
	size         int64
	mtime, ctime int64 // Unix nanoseconds
}

// NewDigestCache returns a cache of at most max digests (max <= 0 means
// DefaultDigestCacheSize). When full it starts over.
func NewDigestCache(max int) *DigestCache {
	if max <= 0 {
		max = DefaultDigestCacheSize
	}
	return &DigestCache{max: max, digests: make(map[fileKey]string)}
}

// ProcessExeDigest returns the hex SHA-256 of the executable of pid, read
// through <procRoot>/<pid>/exe (which reaches the binary the process runs
// even when its path was deleted or replaced).
func (c *DigestCache) ProcessExeDigest(procRoot string, pid int) (string, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	return c.FileDigest(filepath.Join(procRoot, strconv.Itoa(pid), "exe"))
}

// FileDigest returns the hex SHA-256 of the file at path.
// A hit costs an open and an fstat, without an *os.File.
func (c *DigestCache) FileDigest(path string) (string, error) {
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("attestor: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return "", fmt.Errorf("attestor: %w", &os.PathError{Op: "fstat", Path: path, Err: err})
	}
	key := fileKey{dev: uint64(st.Dev), ino: st.Ino, size: st.Size, mtime: mtimeOf(&st), ctime: ctimeOf(&st)}
	c.mu.Lock()
	d, ok := c.digests[key]
	c.mu.Unlock()
	if ok {
		syscall.Close(fd)
		return d, nil
	}
	f := os.NewFile(uintptr(fd), path)
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("attestor: %w", err)
	}
	d = hex.EncodeToString(h.Sum(nil))
	c.mu.Lock()
	if len(c.digests) >= c.max {
		clear(c.digests)
	}
	c.digests[key] = d
	c.mu.Unlock()
	return d, nil
}

// ExecutableDigest returns the hex SHA-256 of the binary the kernel will
// run for path, i.e. what /proc/<pid>/exe shows after exec(path): path
// itself, or for a script its "#!" interpreter (for "#!/usr/bin/env NAME",
// NAME looked up in PATH, as env does). Pinning a script's digest pins its
// interpreter, not the script.
func ExecutableDigest(path string) (string, error) {
	bin, err := interpreterOf(path)
	if err != nil {
		return "", err
	}
	return NewDigestCache(1).FileDigest(bin)
}

// interpreterOf follows "#!" lines (at most 4 levels, as the kernel does).
func interpreterOf(path string) (string, error) {
	for range 4 {
		next, err := shebang(path)
		if err != nil || next == "" {
			return path, err
		}
		path = next
	}
	return "", fmt.Errorf("attestor: %s: too many levels of #! interpreters", path)
}

// shebang returns the interpreter named by path's "#!" line, or "".
func shebang(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("attestor: %w", err)
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 256).Peek(256)
	if !bytes.HasPrefix(line, []byte("#!")) {
		return "", nil // a binary (or empty): the kernel runs it as is
	}
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	} else if err == nil {
		return "", fmt.Errorf("attestor: %s: #! line too long", path)
	}
	words := strings.Fields(string(line[2:]))
	if len(words) == 0 {
		return "", fmt.Errorf("attestor: %s: empty #! line", path)
	}
	if filepath.Base(words[0]) == "env" {
		for _, w := range words[1:] {
			if !strings.HasPrefix(w, "-") && !strings.Contains(w, "=") {
				p, err := exec.LookPath(w)
				if err != nil {
					return "", fmt.Errorf("attestor: %s: #! interpreter: %w", path, err)
				}
				return p, nil
			}
		}
	}
	return words[0], nil
}
