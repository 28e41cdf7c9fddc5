package attestor

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"syscall"
	"time"
)

// MaxInheritDepth bounds Config.InheritDepth.
const MaxInheritDepth = 8

// Logger receives the attestor's warnings. *slog.Logger and hclog.Logger
// both implement it.
type Logger interface {
	Warn(msg string, args ...any)
	Debug(msg string, args ...any)
}

// Config is the attestor's configuration.
type Config struct {
	// ManifestDir holds the manifests ("" means DefaultManifestDir).
	ManifestDir string
	// InheritDepth is how many ancestors of a process without a manifest
	// of its own are searched for one (0..MaxInheritDepth): with 1, the
	// tools an agent spawns get the agent's task identity.
	InheritDepth int
	// AllowedOwnerUIDs are the uids that may own manifests. Nil means root
	// and the attestor's effective uid.
	AllowedOwnerUIDs []uint32
	// RequireExeSHA256 makes the attestor compare the SHA-256 of the
	// executable of the process that owns the manifest with the manifest's
	// exe_sha256, and refuse manifests without one.
	RequireExeSHA256 bool
	// MaxExeBytes is the largest executable the attestor hashes (0 means
	// DefaultMaxExeBytes). A process running a larger one gets no
	// executable pin selectors, and with RequireExeSHA256 its manifest is
	// refused: an agent must not make the SPIRE agent read gigabytes.
	MaxExeBytes int64
	// ProcRoot is where proc is mounted ("" means /proc).
	ProcRoot string
	// AllowSameUser turns off the check that the attested process could
	// not have forged its manifest ([CouldForge]): with it, a process
	// running as the launcher's uid, in its group, or as root gets the
	// selectors of the manifest it could have written itself. INSECURE:
	// only for single-user development (agentid dev).
	AllowSameUser bool
}

// Attestor maps PIDs to task selectors through manifests. It is safe for
// concurrent use and immutable: to change the configuration, build a new one
// (sharing the DigestCache).
type Attestor struct {
	cfg    Config
	log    Logger
	now    func() time.Time
	cache  *DigestCache
	owners []uint32
}

// Option configures an Attestor.
type Option interface{ apply(*Attestor) }

type optionFunc func(*Attestor)

func (f optionFunc) apply(a *Attestor) { f(a) }

// WithLogger sets where warnings go (default: nowhere).
func WithLogger(l Logger) Option { return optionFunc(func(a *Attestor) { a.log = l }) }

// WithClock sets the clock that checks task deadlines (default time.Now).
func WithClock(now func() time.Time) Option { return optionFunc(func(a *Attestor) { a.now = now }) }

// WithDigestCache shares a digest cache between attestors, e.g. across
// reconfigurations (default: a new cache).
func WithDigestCache(c *DigestCache) Option { return optionFunc(func(a *Attestor) { a.cache = c }) }

// New validates cfg, fills in its defaults and returns an Attestor.
func New(cfg Config, opts ...Option) (*Attestor, error) {
	if cfg.InheritDepth < 0 || cfg.InheritDepth > MaxInheritDepth {
		return nil, fmt.Errorf("attestor: inherit_depth %d is not 0..%d", cfg.InheritDepth, MaxInheritDepth)
	}
	if cfg.ManifestDir == "" {
		cfg.ManifestDir = DefaultManifestDir
	}
	if !filepath.IsAbs(cfg.ManifestDir) {
		return nil, fmt.Errorf("attestor: manifest_dir %q is not an absolute path", cfg.ManifestDir)
	}
	cfg.ManifestDir = filepath.Clean(cfg.ManifestDir)
	if cfg.ProcRoot == "" {
		cfg.ProcRoot = DefaultProcRoot
	}
	if cfg.MaxExeBytes < 0 {
		return nil, fmt.Errorf("attestor: max_exe_bytes %d is negative", cfg.MaxExeBytes)
	}
	if cfg.MaxExeBytes == 0 {
		cfg.MaxExeBytes = DefaultMaxExeBytes
	}
	a := &Attestor{cfg: cfg, log: nopLogger{}, now: time.Now, owners: cfg.AllowedOwnerUIDs}
	if a.owners == nil {
		a.owners = defaultOwners()
	}
	a.cfg.AllowedOwnerUIDs = slices.Clone(a.owners)
	for _, o := range opts {
		o.apply(a)
	}
	if a.cache == nil {
		a.cache = NewDigestCache(0)
	}
	return a, nil
}

// Config returns the configuration with its defaults filled in.
func (a *Attestor) Config() Config {
	c := a.cfg
	c.AllowedOwnerUIDs = slices.Clone(c.AllowedOwnerUIDs)
	return c
}

// Result is the outcome of resolving one PID.
type Result struct {
	// Selectors are the task's selector values, nil when the process has
	// no (acceptable) manifest.
	Selectors []string
	// Manifest is the manifest that matched or was refused; zero if none.
	Manifest Manifest
	// Path is the file of that manifest, "" if none was found.
	Path string
	// Depth is how many ancestors up the manifest was found (0: the
	// process's own).
	Depth int
	// Refused says why the manifest at Path was refused; nil when it was
	// accepted or none was found.
	Refused *ManifestError
}

// Attest returns the selector values of the task pid runs (its own
// manifest's, or the nearest ancestor's within InheritDepth). A process
// without a manifest gets no selectors and no error; a refused manifest
// gets no selectors, no error, and a warning naming the file and the
// reason. The error is for processes that do not exist or a /proc that
// cannot be read.
func (a *Attestor) Attest(pid int) ([]string, error) {
	return a.AttestContext(context.Background(), pid)
}

// AttestContext is Attest that gives up hashing the executable when ctx
// ends: then it returns ctx's error (wrapped) and no selectors.
func (a *Attestor) AttestContext(ctx context.Context, pid int) ([]string, error) {
	res, err := a.ResolveContext(ctx, pid)
	return res.Selectors, err
}

// Resolve is Attest with the details: which manifest matched, at what depth,
// or why it was refused.
func (a *Attestor) Resolve(pid int) (Result, error) {
	return a.ResolveContext(context.Background(), pid)
}

// ResolveContext is Resolve that gives up when ctx ends, as AttestContext.
func (a *Attestor) ResolveContext(ctx context.Context, pid int) (Result, error) {
	st, err := ReadStat(a.cfg.ProcRoot, pid)
	if err != nil {
		return Result{}, err
	}
	dir, err := a.checkDir()
	if err != nil {
		return a.refused(Result{}, err), nil
	}
	for depth := 0; ; depth++ {
		res, found := a.lookup(ctx, st)
		if err := ctx.Err(); err != nil {
			return Result{}, fmt.Errorf("attestor: pid %d: %w", pid, err)
		}
		if found {
			res.Depth = depth
			if res.Refused == nil && !a.cfg.AllowSameUser {
				res.Refused = a.checkForger(res.Path, dir, pid, st.PID)
			}
			if res.Refused != nil {
				return a.refused(res, res.Refused), nil
			}
			return res, nil
		}
		if depth == a.cfg.InheritDepth || st.PPID <= 0 {
			return Result{}, nil
		}
		child := st
		if st, err = ReadStat(a.cfg.ProcRoot, child.PPID); err != nil {
			return Result{}, nil // the ancestor exited: nothing to inherit
		}
		if st.StartTime > child.StartTime {
			// Not the child's parent: it exited and its PID was reused
			// by a later process after the child's stat was read.
			a.log.Debug("Not inheriting from a process younger than its child", "pid", st.PID,
				"start_time", st.StartTime, "child", child.PID, "child_start_time", child.StartTime)
			return Result{}, nil
		}
	}
}

// checkForger refuses the manifest at path when the attested process pid,
// or the process holder whose manifest it inherits, could have written it
// ([CouldForge]).
func (a *Attestor) checkForger(path string, d DirStat, pid, holder int) *ManifestError {
	for _, p := range []int{pid, holder} {
		c, err := ReadCreds(a.cfg.ProcRoot, p)
		if err != nil {
			return refuse(path, ReasonAgentWritesDir, "credentials of pid %d: %v", p, err)
		}
		if f := CouldForge(c, d, a.owners); f != nil {
			return refuse(path, f.Reason, "pid %d: %s; fix: %s (agentid run --user, see docs/attestor.md)", p, f.Detail, f.Fix)
		}
		if holder == pid {
			break
		}
	}
	return nil
}

func (a *Attestor) refused(res Result, err error) Result {
	var me *ManifestError
	if !errors.As(err, &me) {
		me = &ManifestError{Path: a.cfg.ManifestDir, Reason: ReasonUnsafeDir, Detail: err.Error()}
	}
	a.log.Warn("Refusing agentid task manifest", "path", me.Path, "reason", me.Reason.String(), "detail", me.Detail)
	res.Selectors, res.Refused = nil, me
	return res
}

// checkDir refuses a directory that is a symlink, owned by a uid outside
// the allowed set (root is always allowed) or world-writable. Group write
// is accepted: every manifest's owner and mode are checked.
func (a *Attestor) checkDir() (DirStat, error) {
	d, err := DirPolicy{Owners: a.owners, GroupWritable: true}.check(a.cfg.ManifestDir)
	var de *DirError
	if errors.As(err, &de) && errors.Is(de.Err, fs.ErrNotExist) {
		return d, nil // no directory, no manifests: lookups find nothing
	}
	if err != nil {
		return d, refuse(a.cfg.ManifestDir, ReasonUnsafeDir, "%v", err)
	}
	return d, nil
}

// lookup reads the manifest of the process st describes. found is false
// when there is none or it is stale (and then removed).
func (a *Attestor) lookup(ctx context.Context, st Stat) (res Result, found bool) {
	path := filepath.Join(a.cfg.ManifestDir, ManifestName(st.PID))
	res.Path = path
	f, err := readNoFollow(path, MaxManifestSize)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Result{}, false
	case isSymlinkErr(err):
		res.Refused = refuse(path, ReasonNotRegular, "a symlink")
		return res, true
	case err != nil:
		res.Refused = refuse(path, ReasonMalformed, "%v", err)
		return res, true
	}
	if res.Refused = a.checkFile(path, &f.st); res.Refused != nil {
		return res, true
	}
	m, err := ParseManifest(f.data)
	if err != nil {
		res.Refused = refuse(path, ReasonMalformed, "%v", err)
		return res, true
	}
	res.Manifest = m
	if m.PID != st.PID {
		res.Refused = refuse(path, ReasonPIDMismatch, "file of pid %d holds pid %d", st.PID, m.PID)
		return res, true
	}
	if m.StartTime != st.StartTime {
		a.log.Debug("Removing stale agentid task manifest", "path", path,
			"manifest_start_time", m.StartTime, "process_start_time", st.StartTime)
		removeStale(a.cfg.ManifestDir, a.cfg.ProcRoot, st.PID)
		return Result{}, false
	}
	exe, exeErr := a.cache.ProcessExeDigest(ctx, a.cfg.ProcRoot, m.PID, a.cfg.MaxExeBytes)
	// After the hash: a process that left its namespaces cannot come back
	// (it holds no capability there), so if it is in them now, it was
	// while its executable was hashed.
	if res.Refused = a.checkNamespaces(path, m); res.Refused != nil {
		return res, true
	}
	if errors.Is(exeErr, ErrExeTooLarge) && !a.cfg.RequireExeSHA256 {
		a.log.Warn("No executable pin selector: executable over max_exe_bytes", "pid", m.PID, "error", exeErr.Error())
	}
	res.Refused = a.checkClaims(path, m, exe, exeErr)
	if res.Refused == nil {
		res.Selectors = m.Selectors()
		if exeErr == nil {
			res.Selectors = append(res.Selectors, m.ExeSelectors(exe)...)
		} else {
			// Entries pinned to an executable do not match then.
			a.log.Debug("No executable pin selector", "pid", m.PID, "error", exeErr.Error())
		}
	}
	return res, true
}

// checkNamespaces refuses the manifest m when its process is not in the
// user and mount namespaces it was launched in.
func (a *Attestor) checkNamespaces(path string, m Manifest) *ManifestError {
	ns, err := ReadNamespaces(a.cfg.ProcRoot, m.PID)
	switch {
	case err != nil:
		return refuse(path, ReasonNamespace, "pid %d: %v", m.PID, err)
	case ns.User != m.UserNS:
		return refuse(path, ReasonNamespace, "pid %d is in user namespace %d, launched in %d: a process in a user namespace of its own can mount a filesystem that changes its executable while it runs; run the agent's sandboxing in a child process, not in the agent (docs/attestor.md)", m.PID, ns.User, m.UserNS)
	case ns.Mnt != m.MntNS:
		return refuse(path, ReasonNamespace, "pid %d is in mount namespace %d, launched in %d (docs/attestor.md)", m.PID, ns.Mnt, m.MntNS)
	}
	return nil
}

// checkFile enforces the file rules: regular, one link, allowed owner, not
// writable by group or others.
func (a *Attestor) checkFile(path string, st *syscall.Stat_t) *ManifestError {
	switch {
	case st.Mode&syscall.S_IFMT != syscall.S_IFREG:
		return refuse(path, ReasonNotRegular, "file type %#o", st.Mode&syscall.S_IFMT)
	case st.Size > MaxManifestSize:
		return refuse(path, ReasonMalformed, "%d bytes, at most %d", st.Size, MaxManifestSize)
	case st.Nlink != 1:
		return refuse(path, ReasonHardLinked, "%d links", st.Nlink)
	case !slices.Contains(a.owners, st.Uid):
		return refuse(path, ReasonOwner, "owned by uid %d, allowed %v", st.Uid, a.owners)
	case st.Mode&0o022 != 0:
		return refuse(path, ReasonWritable, "mode %04o", st.Mode&0o7777)
	}
	return nil
}

// checkClaims checks the deadline and, if required, the executable (exe
// is the digest of the process's executable, or exeErr why there is none).
func (a *Attestor) checkClaims(path string, m Manifest, exe string, exeErr error) *ManifestError {
	if now := a.now(); !now.Before(m.Claims.Deadline) {
		return refuse(path, ReasonExpired, "deadline %s passed", m.Claims.Deadline.Format(time.RFC3339))
	}
	if !a.cfg.RequireExeSHA256 {
		return nil
	}
	if m.ExeSHA256 == "" {
		return refuse(path, ReasonExeMismatch, "require_exe_sha256 is set but the manifest has no exe_sha256")
	}
	if exeErr != nil {
		return refuse(path, ReasonExeMismatch, "%v", exeErr)
	}
	if exe != m.ExeSHA256 {
		return refuse(path, ReasonExeMismatch, "process runs sha256 %s, manifest pins %s", exe, m.ExeSHA256)
	}
	return nil
}

// GC removes the stale manifests of the attestor's directory; see [GC].
func (a *Attestor) GC() (int, error) { return GC(a.cfg.ManifestDir, a.cfg.ProcRoot) }

type nopLogger struct{}

func (nopLogger) Warn(string, ...any)  {}
func (nopLogger) Debug(string, ...any) {}

var _ Logger = nopLogger{}
