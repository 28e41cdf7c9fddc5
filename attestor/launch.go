package attestor

import (
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"

	"github.com/agentid/agentid/svid"
)

// Launch is one task launch: the manifest the launcher writes for its own
// process and the program it then becomes. Exec keeps the PID and the start
// time, which is what binds the manifest to the agent.
type Launch struct {
	// Dir is the manifest directory ("" means DefaultManifestDir).
	Dir string
	// Policy says which directories are safe; see [DirPolicy.Check].
	Policy DirPolicy
	// Claims is the task record.
	Claims svid.Claims
	// Path is the executable to run, already resolved (exec.LookPath).
	Path string
	// Args are the program's arguments, Args[0] included.
	Args []string
	// Env is the program's environment.
	Env []string
	// ExeDigest records the SHA-256 of the executable (for
	// require_exe_sha256); see [ExecutableDigest] about scripts.
	ExeDigest bool
	// ProcRoot is where proc is mounted ("" means /proc).
	ProcRoot string
	// Now is the clock that checks the deadline (nil means time.Now).
	Now func() time.Time
}

// Prepare checks the directory, removes stale manifests (unless another
// launcher is writing), and writes the manifest of the calling process. It
// returns the manifest's path.
func (l *Launch) Prepare() (string, error) {
	dir := l.Dir
	if dir == "" {
		dir = DefaultManifestDir
	}
	if err := l.Policy.Check(dir); err != nil {
		return "", err
	}
	if err := l.Claims.Check(); err != nil {
		return "", fmt.Errorf("attestor: task record: %w", err)
	}
	now := time.Now
	if l.Now != nil {
		now = l.Now
	}
	if !now().Before(l.Claims.Deadline) {
		return "", fmt.Errorf("attestor: task %s: deadline %s has passed", l.Claims.Task, l.Claims.Deadline.Format(time.RFC3339))
	}
	self, err := ReadStat(l.ProcRoot, os.Getpid())
	if err != nil {
		return "", err
	}
	m := Manifest{PID: self.PID, StartTime: self.StartTime, Claims: l.Claims}
	if l.ExeDigest {
		if m.ExeSHA256, err = ExecutableDigest(l.Path); err != nil {
			return "", err
		}
	}
	if _, err := gcIfIdle(dir, l.ProcRoot); err != nil {
		return "", err
	}
	return WriteManifest(dir, m)
}

// Exec prepares the manifest and replaces the calling process with the
// program (execve(2): same PID, same start time). It returns only on error;
// if the exec itself fails, the manifest is removed.
func (l *Launch) Exec() error {
	if l.Path == "" || len(l.Args) == 0 {
		return errors.New("attestor: launch: no program")
	}
	path, err := l.Prepare()
	if err != nil {
		return err
	}
	err = syscall.Exec(l.Path, l.Args, l.Env)
	os.Remove(path)
	return fmt.Errorf("attestor: exec %s: %w", l.Path, err)
}
