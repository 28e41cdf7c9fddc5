package main

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
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
	taskFile, agent, task, model, prompt, principal, deadline string
	promptFiles, scopes, chain                                []string
	manifestDir                                               string
	groupWritable, exeDigest, gc                              bool
}

const runUsage = `run [flags] -- COMMAND [ARGS...]
       agentid run --gc [--manifest-dir DIR]

Writes the task manifest for this process (PID and start time) into the
manifest directory and then execs COMMAND in its place, so that the agent
keeps the PID and start time the manifest names and the agentid SPIRE
attestor gives it the task's selectors. The task record comes from
--task-file (the canonical claims JSON 'agentid task create --output' writes)
or from the task flags. With --gc it only removes stale manifests.`

func (env *cli) run(args []string) error {
	var f runFlags
	fs := env.flags("run", runUsage)
	fs.StringVar(&f.taskFile, "task-file", "", "task record: canonical claims JSON (from 'agentid task create --output')")
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
	claims, err := f.claims(fs)
	if err != nil {
		return err
	}
	path, err := exec.LookPath(fs.Arg(0))
	if err != nil {
		return err
	}
	l := &attestor.Launch{Dir: f.manifestDir, Policy: policy, Claims: claims, Path: path,
		Args: fs.Args(), Env: os.Environ(), ExeDigest: f.exeDigest}
	return l.Exec() // returns only on failure
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

// claims reads the task record from --task-file or builds it from flags.
func (f *runFlags) claims(fs *flag.FlagSet) (svid.Claims, error) {
	if f.taskFile != "" {
		var conflict string
		fs.Visit(func(fl *flag.Flag) {
			switch fl.Name {
			case "agent", "task", "model", "prompt-file", "prompt-sha256", "scope", "principal", "chain", "deadline":
				conflict = fl.Name
			}
		})
		if conflict != "" {
			return svid.Claims{}, fmt.Errorf("%w: --%s cannot be combined with --task-file", errUsage, conflict)
		}
		data, err := os.ReadFile(f.taskFile)
		if err != nil {
			return svid.Claims{}, err
		}
		c, err := svid.Parse(trimNewline(data))
		if err != nil {
			return svid.Claims{}, fmt.Errorf("--task-file %s: %w", f.taskFile, err)
		}
		return c, nil
	}
	switch {
	case f.agent == "" || f.task == "" || f.model == "" || f.principal == "" || f.deadline == "":
		return svid.Claims{}, fmt.Errorf("%w: give --task-file, or --agent, --task, --model, --principal, --deadline and a prompt", errUsage)
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
