package attestor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
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
	// Incarnation is the incarnation of the task's entry (the task
	// record's, [TaskRecord]); required.
	Incarnation string
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
	// User, when set, is who the agent runs as: after writing the
	// manifest, Exec sets the supplementary groups, the gid and the uid
	// and no_new_privs, then execs. [Launch.CheckUser] must accept it.
	User *Credential

	ns Namespaces // recorded by Prepare
}

// Credential is the unprivileged identity a launcher execs an agent as.
type Credential struct {
	UID, GID uint32
	// Groups are the supplementary groups; none clears them.
	Groups []uint32
}

// CheckUser refuses an agent identity that could forge manifests in the
// launch's directory: root, the launcher's own uid, a uid among the
// allowed manifest owners (Policy.Owners, default root and the launcher's
// effective uid), or a uid or group that could write the directory
// according to its real owner, group and mode ([CouldForge]). The error
// says how to fix it.
func (l *Launch) CheckUser() error {
	u := l.User
	if u == nil {
		return nil
	}
	if u.UID == 0 {
		return errors.New("attestor: launch: refusing to run the agent as root (uid 0): root can write the manifest directory and forge any task's manifest; fix: create a dedicated unprivileged user (useradd --system --no-create-home --shell /usr/sbin/nologin agent-NAME) and pass it to --user")
	}
	if self := uint32(os.Getuid()); u.UID == self || u.UID == uint32(os.Geteuid()) {
		return fmt.Errorf("attestor: launch: refusing to run the agent as the launcher's own uid %d: it writes manifests; fix: run the agent as a dedicated unprivileged uid with --user", u.UID)
	}
	d, err := StatDir(l.dir())
	if err != nil {
		return err
	}
	if f := CouldForge(UserCreds(u.UID, u.GID, u.Groups), d, l.Policy.owners()); f != nil {
		return fmt.Errorf("attestor: launch: agent (uid %d) could forge manifests in %s: %s; fix: %s", u.UID, l.dir(), f.Detail, f.Fix)
	}
	return nil
}

func (l *Launch) dir() string {
	if l.Dir == "" {
		return DefaultManifestDir
	}
	return l.Dir
}

// Prepare checks the directory, removes stale manifests (unless another
// launcher is writing), and writes the manifest of the calling process,
// with the user and mount namespaces of the calling thread (Exec locks
// the thread that will exec before it calls Prepare). It returns the
// manifest's path.
func (l *Launch) Prepare() (string, error) {
	dir := l.dir()
	if err := l.Policy.Check(dir); err != nil {
		return "", err
	}
	if err := l.CheckUser(); err != nil {
		return "", err
	}
	if err := l.Claims.Check(); err != nil {
		return "", fmt.Errorf("attestor: task record: %w", err)
	}
	if !svid.ValidIncarnation(l.Incarnation) {
		return "", fmt.Errorf("attestor: task record: incarnation %q is not %d lower-case hex digits", l.Incarnation, svid.IncarnationLen)
	}
	if err := l.checkUIDUnshared(dir); err != nil {
		return "", err
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
	if l.ns, err = threadNamespaces(l.ProcRoot); err != nil {
		return "", err
	}
	m := Manifest{PID: self.PID, StartTime: self.StartTime, UserNS: l.ns.User, MntNS: l.ns.Mnt, Incarnation: l.Incarnation, Claims: l.Claims}
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
// program (execve(2): same PID, same start time). With User set it
// detaches from the controlling terminal, marks the inherited descriptors
// above 2 close-on-exec ([IsolateExec]) and drops to that identity
// ([DropPrivileges]) between the two. It returns only
// on error; if the exec itself fails, the manifest is removed (when the
// dropped identity cannot, the garbage collection will).
func (l *Launch) Exec() error {
	if l.Path == "" || len(l.Args) == 0 {
		return errors.New("attestor: launch: no program")
	}
	// no_new_privs and namespaces are per thread: set the one and
	// record the others on the thread that execs.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	path, err := l.Prepare()
	if err != nil {
		return err
	}
	if l.User != nil {
		if err := IsolateExec(); err != nil {
			os.Remove(path)
			return err
		}
		if err := DropPrivileges(*l.User); err != nil {
			os.Remove(path)
			return err
		}
	}
	// The namespaces the agent execs in are the manifest's (the attestor
	// refuses it in others).
	if ns, err := threadNamespaces(l.ProcRoot); err != nil || ns != l.ns {
		os.Remove(path)
		return fmt.Errorf("attestor: launch: namespaces changed after the manifest was written (%+v, recorded %+v): %v", ns, l.ns, err)
	}
	err = syscall.Exec(l.Path, l.Args, l.Env)
	os.Remove(path)
	return fmt.Errorf("attestor: exec %s: %w", l.Path, err)
}

// checkUIDUnshared refuses a User uid that a live agent of another task
// in dir runs as (any of its uids): an exec'd agent is dumpable, so
// processes of one uid read each other's memory (/proc/<pid>/mem and
// environ, ptrace) and with it the other task's SVID key. The same task
// may run more processes under its uid. Launchers are trusted, so this
// guards their configuration; two launches of different tasks racing
// with the same uid are not serialized.
func (l *Launch) checkUIDUnshared(dir string) error {
	if l.User == nil {
		return nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("attestor: %w", err)
	}
	for _, e := range entries {
		pid, ok := parseManifestName(e.Name())
		if !ok {
			continue
		}
		f, err := readNoFollow(filepath.Join(dir, e.Name()), MaxManifestSize)
		if err != nil || f.data == nil {
			continue
		}
		m, err := ParseManifest(f.data)
		if err != nil || (m.Claims.Agent == l.Claims.Agent && m.Claims.Task == l.Claims.Task) {
			continue
		}
		if !processMatches(l.ProcRoot, pid, m.StartTime) {
			continue // gone: a stale manifest
		}
		c, err := ReadCreds(l.ProcRoot, pid)
		if err != nil {
			continue
		}
		if slices.Contains(c.UIDs[:], l.User.UID) {
			return fmt.Errorf("attestor: launch: uid %d already runs task %s of agent %s (pid %d): tasks that share a uid can read each other's memory and SVID keys; fix: give every task its own dedicated uid (--user)", l.User.UID, m.Claims.Task, m.Claims.Agent, pid)
		}
	}
	return nil
}
