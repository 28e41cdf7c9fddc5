package daemon

import (
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// secretCheckEvery is how often the upstream credential file
// (upstream_header's value_file) is looked at again.
var secretCheckEvery = time.Second

// secretFile is upstream_header's value read from value_file, and read
// again when the file changes (a new inode, size or modification time of
// what the path resolves to: a replacing rename, a rewrite in place, a
// symbolic link swapped as Kubernetes swaps ..data), looked at no more
// than once per secretCheckEvery, by the request that finds it due
// (others keep the value meanwhile). A file that cannot be read, is
// empty or holds a control character keeps the last good value, with a
// warning; the verifier does not stop for it.
type secretFile struct {
	path, prefix string
	log          *slog.Logger
	now          func() time.Time

	val  atomic.Pointer[string]
	next atomic.Int64 // UnixNano of the next look

	mu      sync.Mutex // one look at a time; guards fi and lastErr
	fi      os.FileInfo
	lastErr string
}

// newSecretFile reads the file once; an error here stops the verifier's
// start, as before rotation was supported.
func newSecretFile(path, prefix string, log *slog.Logger) (*secretFile, error) {
	s := &secretFile{path: path, prefix: prefix, log: log, now: time.Now}
	fi, _ := os.Stat(path)
	v, err := upstreamValue(path, "")
	if err != nil {
		return nil, err
	}
	s.fi = fi
	s.set(v)
	s.next.Store(s.now().UnixNano() + int64(secretCheckEvery))
	return s, nil
}

func (s *secretFile) set(v string) {
	v = s.prefix + v
	s.val.Store(&v)
}

// Value is the credential to send now.
func (s *secretFile) Value() string {
	if now := s.now().UnixNano(); now >= s.next.Load() && s.mu.TryLock() {
		s.next.Store(now + int64(secretCheckEvery))
		s.refresh()
		s.mu.Unlock()
	}
	return *s.val.Load()
}

// refresh reads the file again if it changed (s.mu held).
func (s *secretFile) refresh() {
	fi, err := os.Stat(s.path)
	if err != nil {
		s.fi = nil // read it again when it is back, whatever it looks like
		s.fail(err)
		return
	}
	if s.fi != nil && os.SameFile(fi, s.fi) && fi.Size() == s.fi.Size() && fi.ModTime().Equal(s.fi.ModTime()) {
		return
	}
	s.fi = fi
	v, err := upstreamValue(s.path, "")
	if err != nil {
		s.fail(err)
		return
	}
	s.set(v)
	s.lastErr = ""
	s.log.Info("mcp gateway: upstream_header's value_file changed; the upstream gets the new credential", "file", s.path)
}

func (s *secretFile) fail(err error) {
	if msg := err.Error(); msg != s.lastErr {
		s.lastErr = msg
		s.log.Warn("mcp gateway: upstream_header's value_file cannot be read; the upstream keeps getting the last good credential", "file", s.path, "err", err)
	}
}
