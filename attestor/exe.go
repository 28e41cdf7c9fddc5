package attestor

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"golang.org/x/sys/unix"
)

// DefaultDigestCacheSize is the number of executables a DigestCache
// remembers.
const DefaultDigestCacheSize = 1024

// DefaultMaxExeBytes is the largest executable the attestor hashes unless
// configured otherwise (max_exe_bytes): 256 MiB.
const DefaultMaxExeBytes = 256 << 20

// ErrExeTooLarge is wrapped by the error of a digest refused because the
// file is larger than the limit.
var ErrExeTooLarge = errors.New("executable too large to hash")

// DigestCache remembers the SHA-256 of executables by (device, inode,
// size, mtime, ctime), so that a binary is hashed once however many
// processes run it. Any change to the file changes its ctime (and a
// replaced file has a new inode), so a stale digest is never returned.
// Nothing weaker is safe as a key: an agent can exec another program
// (keeping its PID and manifest), rewrite its former executable in place,
// which no process runs then, and exec it again; only the ctime, which no
// unprivileged process can set back, tells the two contents apart. (Linux
// refuses to open a running executable for writing, ETXTBSY, but that
// does not cover a file between two runs, and the attestor does not rely
// on it; TestDigestCacheInvalidates rewrites a file in place with the
// same size.) A touch therefore costs a re-hash,
// bounded by the size limit. One inode is hashed by one goroutine at a
// time; concurrent requests for it wait for that digest.
//
// It is safe for concurrent use; the zero value is not, use
// [NewDigestCache].
type DigestCache struct {
	mu      sync.Mutex
	max     int
	digests map[fileKey]string
	flights map[inode]*flight
	mounts  map[mountKey]struct{} // executables' mounts known to be in a mount namespace

	// hashed counts the bytes read into hashes (for tests).
	hashed atomic.Int64
	// beforeHash, when set (tests), runs in the hashing goroutine before
	// it reads the file.
	beforeHash func()
}

type inode struct{ dev, ino uint64 }

type fileKey struct {
	inode
	size         int64
	mtime, ctime int64 // Unix nanoseconds
}

// flight is one hash in progress. Its context is cancelled when every
// caller waiting for it has given up.
type flight struct {
	key     fileKey
	done    chan struct{}
	digest  string
	err     error
	waiters int
	cancel  context.CancelFunc
}

// NewDigestCache returns a cache of at most max digests (max <= 0 means
// DefaultDigestCacheSize). When full it starts over.
func NewDigestCache(max int) *DigestCache {
	if max <= 0 {
		max = DefaultDigestCacheSize
	}
	return &DigestCache{max: max, digests: make(map[fileKey]string), flights: make(map[inode]*flight)}
}

// ProcessExeDigest returns the hex SHA-256 of the executable of pid, read
// through <procRoot>/<pid>/exe (which reaches the binary the process runs
// even when its path was deleted or replaced). An executable larger than
// maxBytes (<= 0 means DefaultMaxExeBytes) is not read: the error wraps
// [ErrExeTooLarge]. An executable the process could change while it runs
// (on a mount outside its mount namespace, or in a mount namespace its uid
// created: see checkExeMount) is an error, not hashed. When ctx ends before the digest is known it returns
// ctx's error (and the hash stops once no caller waits for it).
func (c *DigestCache) ProcessExeDigest(ctx context.Context, procRoot string, pid int, maxBytes int64) (string, error) {
	if procRoot == "" {
		procRoot = DefaultProcRoot
	}
	return c.fileDigest(ctx, filepath.Join(procRoot, strconv.Itoa(pid), "exe"), maxBytes, func(fd int) error {
		return c.checkExeMount(fd, procRoot, pid)
	})
}

// FileDigest returns the hex SHA-256 of the file at path; see
// [DigestCache.ProcessExeDigest] about maxBytes and ctx. A hit costs an
// open and an fstat, without an *os.File.
func (c *DigestCache) FileDigest(ctx context.Context, path string, maxBytes int64) (string, error) {
	return c.fileDigest(ctx, path, maxBytes, nil)
}

// fileDigest is FileDigest that runs check, when not nil, on the open file
// before it is hashed or looked up.
func (c *DigestCache) fileDigest(ctx context.Context, path string, maxBytes int64, check func(fd int) error) (string, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultMaxExeBytes
	}
	fd, err := syscall.Open(path, syscall.O_RDONLY|syscall.O_CLOEXEC, 0)
	if err != nil {
		return "", fmt.Errorf("attestor: %w", &os.PathError{Op: "open", Path: path, Err: err})
	}
	if check != nil {
		if err := check(fd); err != nil {
			syscall.Close(fd)
			return "", err
		}
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(fd, &st); err != nil {
		syscall.Close(fd)
		return "", fmt.Errorf("attestor: %w", &os.PathError{Op: "fstat", Path: path, Err: err})
	}
	if st.Size > maxBytes {
		syscall.Close(fd)
		return "", fmt.Errorf("attestor: %s: %w: %d bytes, over max_exe_bytes %d (raise max_exe_bytes to pin it)", path, ErrExeTooLarge, st.Size, maxBytes)
	}
	key := fileKey{inode: inode{uint64(st.Dev), st.Ino}, size: st.Size, mtime: mtimeOf(&st), ctime: ctimeOf(&st)}
	defer syscall.Close(fd)
	for {
		c.mu.Lock()
		if d, ok := c.digests[key]; ok {
			c.mu.Unlock()
			return d, nil
		}
		fl := c.flights[key.inode]
		if fl == nil {
			fl = c.start(key, fd, path)
		}
		fl.waiters++
		c.mu.Unlock()
		d, err := c.wait(ctx, fl)
		switch {
		case err == nil && fl.key == key:
			return d, nil
		case err == nil, errors.Is(err, context.Canceled) && ctx.Err() == nil:
			// The digest of another version of the inode, or a hash
			// whose callers all left before this one came: look again.
		default:
			return "", err
		}
	}
}

// start hashes the file open as fd in a goroutine of its own (c.mu held).
// The goroutine reads a duplicate of fd, as the caller may leave before it
// is done.
func (c *DigestCache) start(key fileKey, fd int, path string) *flight {
	ctx, cancel := context.WithCancel(context.Background())
	fl := &flight{key: key, done: make(chan struct{}), cancel: cancel}
	c.flights[key.inode] = fl
	dup, err := unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		fl.err = fmt.Errorf("attestor: %w", &os.PathError{Op: "dup", Path: path, Err: err})
		c.finish(fl)
		return fl
	}
	go func() {
		g := os.NewFile(uintptr(dup), path)
		defer g.Close()
		if c.beforeHash != nil {
			c.beforeHash()
		}
		fl.digest, fl.err = c.hash(ctx, g, key.size)
		c.mu.Lock()
		c.finish(fl)
		c.mu.Unlock()
	}()
	return fl
}

// finish records fl's result (c.mu held).
func (c *DigestCache) finish(fl *flight) {
	if fl.err == nil {
		if len(c.digests) >= c.max {
			clear(c.digests)
		}
		c.digests[fl.key] = fl.digest
	}
	delete(c.flights, fl.key.inode)
	fl.cancel()
	close(fl.done)
}

// wait returns fl's result, or ctx's error if ctx ends first; the last
// waiter to leave cancels the hash.
func (c *DigestCache) wait(ctx context.Context, fl *flight) (string, error) {
	select {
	case <-fl.done:
		return fl.digest, fl.err
	case <-ctx.Done():
		c.mu.Lock()
		if fl.waiters--; fl.waiters == 0 {
			fl.cancel()
		}
		c.mu.Unlock()
		return "", fmt.Errorf("attestor: hashing the executable: %w", ctx.Err())
	}
}

// hash reads the size bytes of f in 1 MiB chunks, stopping when ctx
// ends; a file that turns out longer is an error, not read further.
func (c *DigestCache) hash(ctx context.Context, f *os.File, size int64) (string, error) {
	h := sha256.New()
	buf := make([]byte, 1<<20)
	r := io.LimitReader(f, size+1)
	var total int64
	for {
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("attestor: hashing %s: %w", f.Name(), err)
		}
		n, err := r.Read(buf)
		h.Write(buf[:n])
		c.hashed.Add(int64(n))
		if total += int64(n); total > size {
			return "", fmt.Errorf("attestor: %s: changed while it was hashed", f.Name())
		}
		if err == io.EOF {
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if err != nil {
			return "", fmt.Errorf("attestor: %w", err)
		}
	}
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
	return NewDigestCache(1).FileDigest(context.Background(), bin, math.MaxInt64)
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
