package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"strings"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/svid"
)

func init() {
	register("run", "launch an agent task: write its PID-bound manifest, then exec the agent", func(env *cli, args []string) error {
		return env.run(args)
	})
}

type runFlags struct {
	taskFile, agent, task, model, prompt, principal, deadline, incarnation string
	promptFiles, scopes, chain                                             []string
	manifestDir, user, group                                               string
	groups                                                                 []string
	groupWritable, exeDigest, gc                                           bool
}

const runUsage = `run [flags] -- COMMAND [ARGS...]
       agentid run --gc [--manifest-dir DIR]

Writes the task manifest for this process (PID, start time, user and mount
namespaces) into the manifest directory and then execs COMMAND in its place,
so that the agent keeps the PID and start time the manifest names and the
agentid SPIRE attestor gives it the task's selectors (as long as it stays in
those namespaces). The task record comes from
--task-file (what 'agentid task create --output' and 'agentid task show
--output' write: the incarnation of the task's entry and its claims) or from
the task flags and --incarnation. A record without an incarnation is
refused: the agent would match no entry. With --gc it only removes stale
manifests.

With --user (or $AGENTID_RUN_USER) the agent runs as that unprivileged
user: after writing the manifest the launcher sets the supplementary groups
(none unless --groups), the gid (--group, default the user's primary group)
and the uid, clears all capabilities, sets no_new_privs and execs; before
that it gives up its controlling terminal (it refuses to run as the
session leader of one: start it with 'setsid -w agentid run …') and marks
every descriptor above 2 close-on-exec, so the agent inherits neither. It refuses root, its own uid, and
any uid or group that could write the manifest directory. Without --user
the agent runs as the launcher, which the attestor refuses unless it is
configured with allow_same_user (single-user development only).`

func (env *cli) run(args []string) error {
	var f runFlags
	fs := env.flags("run", runUsage)
	fs.StringVar(&f.taskFile, "task-file", "", "task record: incarnation and claims (from 'agentid task create --output' or 'task show --output')")
	fs.StringVar(&f.incarnation, "incarnation", "", "incarnation of the task's entry, 32 hex digits (without --task-file; 'agentid task show' prints it)")
	fs.StringVar(&f.agent, "agent", "", "agent name (without --task-file)")
	fs.StringVar(&f.task, "task", "", "task ID")
	fs.StringVar(&f.model, "model", "", "model identifier, e.g. openai/gpt-4o")
	fs.Var((*stringList)(&f.promptFiles), "prompt-file", "system prompt file to digest (repeatable: a prompt in parts)")
	fs.StringVar(&f.prompt, "prompt-sha256", "", "system prompt digest, sha256:<hex>")
	fs.Var((*stringList)(&f.scopes), "scope", "scope token (repeatable)")
	fs.StringVar(&f.principal, "principal", "", "on whose behalf the task runs (URI)")
	fs.Var((*stringList)(&f.chain), "chain", "SPIFFE ID of a delegating task, root first (repeatable)")
	fs.StringVar(&f.deadline, "deadline", "", "task deadline, RFC 3339")
	fs.StringVar(&f.manifestDir, "manifest-dir", manifestDirDefault(), "manifest directory (env AGENTID_MANIFEST_DIR)")
	fs.BoolVar(&f.groupWritable, "group-writable", false, "accept a group-writable manifest directory (0770: launchers write through a dedicated group)")
	fs.BoolVar(&f.exeDigest, "exe-digest", true, "record the SHA-256 of COMMAND's executable (for the attestor's require_exe_sha256)")
	fs.BoolVar(&f.gc, "gc", false, "remove stale manifests (process gone or PID reused) and exit")
	fs.StringVar(&f.user, "user", os.Getenv("AGENTID_RUN_USER"), "run the agent as this unprivileged user, name or uid (env AGENTID_RUN_USER)")
	fs.StringVar(&f.group, "group", os.Getenv("AGENTID_RUN_GROUP"), "the agent's gid, name or number (env AGENTID_RUN_GROUP; default: the user's primary group)")
	fs.Var((*stringList)(&f.groups), "groups", "the agent's supplementary groups, comma-separated names or numbers (default: none)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	policy := attestor.DirPolicy{GroupWritable: f.groupWritable}
	if f.gc {
		return env.runGC(fs, f.manifestDir, policy)
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: no command; agentid %s", errUsage, "run [flags] -- COMMAND [ARGS...]")
	}
	rec, err := f.record(fs)
	if err != nil {
		return err
	}
	path, err := exec.LookPath(fs.Arg(0))
	if err != nil {
		return err
	}
	cred, err := f.credential()
	if err != nil {
		return err
	}
	l := &attestor.Launch{Dir: f.manifestDir, Policy: policy, Claims: rec.Claims, Incarnation: rec.Incarnation, Path: path,
		Args: fs.Args(), Env: os.Environ(), ExeDigest: f.exeDigest, User: cred}
	return l.Exec() // returns only on failure
}

// credential resolves --user, --group and --groups; nil without --user.
func (f *runFlags) credential() (*attestor.Credential, error) {
	if f.user == "" {
		if f.group != "" || len(f.groups) > 0 {
			return nil, fmt.Errorf("%w: --group and --groups need --user", errUsage)
		}
		return nil, nil
	}
	var c attestor.Credential
	u, err := lookupUser(f.user)
	if err != nil {
		return nil, err
	}
	uid, _ := strconv.ParseUint(u.Uid, 10, 32)
	c.UID = uint32(uid)
	switch {
	case f.group != "":
		if c.GID, err = lookupGroup("--group", f.group); err != nil {
			return nil, err
		}
	case u.Gid == "":
		return nil, fmt.Errorf("--user %s has no passwd entry: give --group (a gid the agent alone uses)", f.user)
	default:
		gid, _ := strconv.ParseUint(u.Gid, 10, 32)
		c.GID = uint32(gid)
	}
	c.Groups = []uint32{}
	for _, list := range f.groups {
		for _, g := range strings.Split(list, ",") {
			gid, err := lookupGroup("--groups", g)
			if err != nil {
				return nil, err
			}
			c.Groups = append(c.Groups, gid)
		}
	}
	return &c, nil
}

// lookupUser finds a user by name or uid; a uid without a passwd entry is
// a user without a primary group.
func lookupUser(s string) (*user.User, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		if u, err := user.LookupId(s); err == nil {
			return u, nil
		}
		return &user.User{Uid: strconv.FormatUint(n, 10)}, nil
	}
	u, err := user.Lookup(s)
	if err != nil {
		var unknown user.UnknownUserError
		if errors.As(err, &unknown) {
			return nil, fmt.Errorf("--user %q: unknown user; create it (useradd --system --no-create-home --shell /usr/sbin/nologin %s) or give a numeric uid and --group", s, s)
		}
		return nil, fmt.Errorf("--user %q: %w", s, err)
	}
	return u, nil
}

func lookupGroup(flagName, s string) (uint32, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return uint32(n), nil
	}
	g, err := user.LookupGroup(s)
	if err != nil {
		var unknown user.UnknownGroupError
		if errors.As(err, &unknown) {
			return 0, fmt.Errorf("%s %q: unknown group; create it (groupadd --system %s) or give a numeric gid", flagName, s, s)
		}
		return 0, fmt.Errorf("%s %q: %w", flagName, s, err)
	}
	n, _ := strconv.ParseUint(g.Gid, 10, 32)
	return uint32(n), nil
}

func manifestDirDefault() string {
	if d := os.Getenv("AGENTID_MANIFEST_DIR"); d != "" {
		return d
	}
	return attestor.DefaultManifestDir
}

func (env *cli) runGC(fs *flag.FlagSet, dir string, policy attestor.DirPolicy) error {
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: --gc takes no command", errUsage)
	}
	if err := policy.Check(dir); err != nil {
		return err
	}
	n, err := attestor.GC(dir, "")
	fmt.Fprintf(env.stdout, "removed %d stale manifest(s) from %s\n", n, dir)
	return err
}

// record reads the task record from --task-file or builds it from flags.
func (f *runFlags) record(fs *flag.FlagSet) (attestor.TaskRecord, error) {
	if f.taskFile == "" {
		c, err := f.claims()
		if err != nil {
			return attestor.TaskRecord{}, err
		}
		rec := attestor.TaskRecord{Incarnation: f.incarnation, Claims: c}
		if f.incarnation == "" {
			return rec, fmt.Errorf("%w: --incarnation is required with the task flags (agentid task show prints it)", errUsage)
		}
		return rec, rec.Check()
	}
	var conflict string
	fs.Visit(func(fl *flag.Flag) {
		switch fl.Name {
		case "agent", "task", "model", "prompt-file", "prompt-sha256", "scope", "principal", "chain", "deadline", "incarnation":
			conflict = fl.Name
		}
	})
	if conflict != "" {
		return attestor.TaskRecord{}, fmt.Errorf("%w: --%s cannot be combined with --task-file", errUsage, conflict)
	}
	data, err := os.ReadFile(f.taskFile)
	if err != nil {
		return attestor.TaskRecord{}, err
	}
	rec, err := attestor.ParseTaskRecord(trimNewline(data))
	if err != nil {
		return attestor.TaskRecord{}, fmt.Errorf("--task-file %s: %w", f.taskFile, err)
	}
	return rec, nil
}

// claims builds the task's claims from the task flags.
func (f *runFlags) claims() (svid.Claims, error) {
	switch {
	case f.agent == "" || f.task == "" || f.model == "" || f.principal == "" || f.deadline == "":
		return svid.Claims{}, fmt.Errorf("%w: give --task-file, or --agent, --task, --model, --principal, --deadline, --incarnation and a prompt", errUsage)
	case (f.prompt == "") == (len(f.promptFiles) == 0):
		return svid.Claims{}, fmt.Errorf("%w: give one of --prompt-sha256 and --prompt-file", errUsage)
	}
	c := svid.Claims{V: svid.Version, Agent: f.agent, Task: f.task, Model: f.model, Prompt: f.prompt,
		Scope: f.scopes, Principal: f.principal, Chain: f.chain}
	var err error
	if len(f.promptFiles) > 0 {
		if c.Prompt, err = svid.PromptDigestFiles(f.promptFiles...); err != nil {
			return svid.Claims{}, err
		}
	}
	if c.Deadline, err = time.Parse(time.RFC3339, f.deadline); err != nil {
		return svid.Claims{}, fmt.Errorf("--deadline: %w", err)
	}
	c.Deadline = c.Deadline.UTC()
	if err := c.Check(); err != nil {
		return svid.Claims{}, fmt.Errorf("task record: %w", err)
	}
	return c, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
