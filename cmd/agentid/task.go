package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func init() {
	register("task", "manage agent tasks (SPIRE entries): create, show, list, revoke", func(env *cli, args []string) error {
		return env.subcommands("task", args, map[string]func(*cli, []string) error{
			"create": (*cli).taskCreate,
			"show":   (*cli).taskShow,
			"list":   (*cli).taskList,
			"revoke": (*cli).taskRevoke,
		})
	})
}

// taskNow is the clock of the task commands; tests pin it.
var taskNow = time.Now

const defaultServerSocket = "/tmp/spire-server/private/api.sock"

// taskConn holds the flags that reach SPIRE.
type taskConn struct {
	socket, trustDomain, selectorType string
	asJSON                            bool
}

func (env *cli) taskFlags(name, usage string, c *taskConn) *flag.FlagSet {
	fs := env.flags(name, usage)
	socket := os.Getenv("SPIRE_SERVER_SOCKET")
	if socket == "" {
		socket = defaultServerSocket
	}
	fs.StringVar(&c.socket, "server-socket", socket, "SPIRE server's local API socket (env SPIRE_SERVER_SOCKET)")
	fs.StringVar(&c.trustDomain, "trust-domain", "example.org", "trust domain of the tasks")
	fs.StringVar(&c.selectorType, "selector-type", svid.DefaultSelectorType, "selector type of the agentid attestor (its name in agent.conf)")
	fs.BoolVar(&c.asJSON, "json", false, "print JSON")
	return fs
}

// open dials the SPIRE server and returns a registrar on it.
func (c *taskConn) open(policy registrar.PolicySource) (*registrar.Registrar, func(), error) {
	td, err := spiffeid.TrustDomainFromString(c.trustDomain)
	if err != nil {
		return nil, nil, fmt.Errorf("--trust-domain %q: %w", c.trustDomain, err)
	}
	target := c.socket
	if !strings.HasPrefix(target, "unix:") {
		target = "unix://" + target
	}
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, nil, fmt.Errorf("--server-socket %q: %w", c.socket, err)
	}
	r := registrar.New(conn, td, policy, registrar.WithClock(taskNow), registrar.WithSelectorType(c.selectorType))
	return r, func() { conn.Close() }, nil
}

type createFlags struct {
	taskConn
	policy, parentID, agent, task, model, prompt, principal string
	deadline, parentTask, output, exe                       string
	ttl                                                     time.Duration
	promptFiles, scopes, selectors                          []string
	remote                                                  delegateFlags // --delegate: task_delegate.go
}

func (env *cli) taskCreate(args []string) error {
	var f createFlags
	fs := env.taskFlags("task create", "task create --policy FILE --agent NAME --model ID (--prompt-sha256 D | --prompt-file F) --principal URI [flags]\n\nChecks the request against the issuance policy and creates the task's SPIRE\nregistration entry. With --parent-task the task is delegated by that task and\nattenuated (scopes, deadline, depth; principal inherited).", &f.taskConn)
	fs.StringVar(&f.policy, "policy", "", "issuance policy file (HCL; required)")
	fs.StringVar(&f.parentID, "parent-id", "", "SPIFFE ID of the SPIRE agent (node) the entry hangs under (default for --parent-task: the parent's)")
	fs.StringVar(&f.agent, "agent", "", "agent name")
	fs.StringVar(&f.task, "task", "", "task ID (default: generated)")
	fs.StringVar(&f.model, "model", "", "model identifier, e.g. openai/gpt-4o")
	fs.StringVar(&f.prompt, "prompt-sha256", "", "system prompt digest, sha256:<hex> (or the bare hex)")
	fs.Var((*stringList)(&f.promptFiles), "prompt-file", "system prompt file to digest (repeatable: a prompt in parts)")
	fs.Var((*stringList)(&f.scopes), "scope", "scope token (repeatable)")
	fs.StringVar(&f.principal, "principal", "", "on whose behalf the task runs (URI; inherited with --parent-task)")
	fs.StringVar(&f.deadline, "deadline", "", "task deadline, RFC 3339")
	fs.DurationVar(&f.ttl, "ttl", 0, "task lifetime from now (instead of --deadline)")
	fs.Var((*stringList)(&f.selectors), "selector", "extra selector type:value, e.g. unix:uid:1001 (repeatable)")
	fs.StringVar(&f.parentTask, "parent-task", "", "SPIFFE ID of the delegating task")
	fs.StringVar(&f.exe, "exe", "", "pin the task to this executable: the entry gets selector agentid:exe:sha256:<its digest> (a script pins its interpreter)")
	fs.StringVar(&f.output, "output", "", "write the task record (incarnation and claims, for 'agentid run --task-file') to this file")
	f.remote.flags(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if f.remote.delegate {
		return env.taskDelegate(&f, fs)
	}
	req, err := f.request(fs)
	if err != nil {
		return err
	}
	policy, err := registrar.LoadPolicy(f.policy)
	if err != nil {
		return err
	}
	r, done, err := f.open(policy)
	if err != nil {
		return err
	}
	defer done()
	task, err := f.create(r, req)
	if err != nil {
		return err
	}
	if f.output != "" {
		if err := writeTaskRecord(f.output, task.Incarnation, task.Claims); err != nil {
			return err
		}
	}
	if f.asJSON {
		return printJSON(env.stdout, taskView(task))
	}
	printTask(env.stdout, task)
	return nil
}

func (f *createFlags) request(fs *flag.FlagSet) (registrar.Request, error) {
	req := registrar.Request{Agent: f.agent, Task: f.task, Model: f.model, Scope: f.scopes,
		Principal: f.principal, TTL: f.ttl, Selectors: f.selectors, ParentID: f.parentID,
		Operator: true} // this command holds the SPIRE admin socket: an operator
	switch {
	case fs.NArg() != 0:
		return req, fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	case f.policy == "":
		return req, fmt.Errorf("%w: --policy is required", errUsage)
	case f.agent == "" || f.model == "":
		return req, fmt.Errorf("%w: --agent and --model are required", errUsage)
	case (f.prompt == "") == (len(f.promptFiles) == 0):
		return req, fmt.Errorf("%w: give one of --prompt-sha256 and --prompt-file", errUsage)
	case f.deadline != "" && f.ttl != 0:
		return req, fmt.Errorf("%w: give --deadline or --ttl, not both", errUsage)
	}
	var err error
	if req.Prompt, err = f.promptDigest(); err != nil {
		return req, err
	}
	if req.ExeSHA256, err = f.exeDigest(); err != nil {
		return req, err
	}
	if f.deadline != "" {
		if req.Deadline, err = time.Parse(time.RFC3339, f.deadline); err != nil {
			return req, fmt.Errorf("--deadline: %w", err)
		}
	}
	return req, nil
}

// exeDigest is the SHA-256 of --exe, "" without it.
func (f *createFlags) exeDigest() (string, error) {
	if f.exe == "" {
		return "", nil
	}
	path, err := exec.LookPath(f.exe)
	if err != nil {
		return "", fmt.Errorf("--exe: %w", err)
	}
	return attestor.ExecutableDigest(path)
}

func (f *createFlags) promptDigest() (string, error) {
	if len(f.promptFiles) > 0 {
		return svid.PromptDigestFiles(f.promptFiles...)
	}
	if strings.HasPrefix(f.prompt, "sha256:") {
		return f.prompt, nil
	}
	return "sha256:" + f.prompt, nil
}

func (f *createFlags) create(r *registrar.Registrar, req registrar.Request) (registrar.Task, error) {
	ctx := context.Background()
	if f.parentTask == "" {
		return r.Create(ctx, req)
	}
	parent, err := spiffeid.FromString(f.parentTask)
	if err != nil {
		return registrar.Task{}, fmt.Errorf("--parent-task %q: %w", f.parentTask, err)
	}
	return r.CreateChild(ctx, parent, req)
}

// writeTaskRecord writes the task record `agentid run --task-file` reads
// (attestor.TaskRecord). A task without an incarnation (its entry was
// written before incarnations) has no record: it must be created again.
func writeTaskRecord(path, incarnation string, c svid.Claims) error {
	rec := attestor.TaskRecord{Incarnation: incarnation, Claims: c}
	if incarnation == "" {
		return fmt.Errorf("task %s has no incarnation (its entry was written before incarnations): no task record written; create the task again", c.Task)
	}
	if err := rec.Check(); err != nil {
		return err
	}
	data, err := rec.MarshalJSON()
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o644)
}

// taskRef is the task a show or revoke names: a SPIFFE ID argument or
// --agent and --task.
type taskRef struct{ agent, task string }

func (ref *taskRef) flags(fs *flag.FlagSet) {
	fs.StringVar(&ref.agent, "agent", "", "agent name (with --task, instead of a SPIFFE ID)")
	fs.StringVar(&ref.task, "task", "", "task ID (with --agent)")
}

func (ref *taskRef) id(r *registrar.Registrar, fs *flag.FlagSet) (spiffeid.ID, error) {
	switch {
	case fs.NArg() == 1 && ref.agent == "" && ref.task == "":
		return spiffeid.FromString(fs.Arg(0))
	case fs.NArg() == 0 && ref.agent != "" && ref.task != "":
		return r.TaskID(ref.agent, ref.task)
	}
	return spiffeid.ID{}, fmt.Errorf("%w: give a task SPIFFE ID or --agent and --task", errUsage)
}

// taskTarget parses the flags of a command that acts on one task (show,
// revoke), opens the registrar and resolves the task's SPIFFE ID.
// extra, if not nil, adds the command's own flags.
func (env *cli) taskTarget(name, usage string, args []string, extra func(*flag.FlagSet)) (*taskConn, *registrar.Registrar, spiffeid.ID, func(), error) {
	c := new(taskConn)
	var ref taskRef
	fs := env.taskFlags(name, usage, c)
	ref.flags(fs)
	if extra != nil {
		extra(fs)
	}
	if err := parseFlags(fs, args); err != nil {
		return nil, nil, spiffeid.ID{}, nil, err
	}
	r, done, err := c.open(nil)
	if err != nil {
		return nil, nil, spiffeid.ID{}, nil, err
	}
	id, err := ref.id(r, fs)
	if err != nil {
		done()
		return nil, nil, spiffeid.ID{}, nil, err
	}
	return c, r, id, done, nil
}

func (env *cli) taskShow(args []string) error {
	var output string
	c, r, id, done, err := env.taskTarget("task show", "task show [flags] SPIFFE-ID | --agent NAME --task ID", args, func(fs *flag.FlagSet) {
		fs.StringVar(&output, "output", "", "write the task record (incarnation and claims, for 'agentid run --task-file') to this file")
	})
	if err != nil {
		return err
	}
	defer done()
	task, err := r.Get(context.Background(), id)
	if err != nil {
		return err
	}
	if output != "" {
		if err := writeTaskRecord(output, task.Incarnation, task.Claims); err != nil {
			return err
		}
	}
	if c.asJSON {
		return printJSON(env.stdout, taskView(task))
	}
	printTask(env.stdout, task)
	return nil
}

func (env *cli) taskList(args []string) error {
	var c taskConn
	var f registrar.Filter
	fs := env.taskFlags("task list", "task list [flags]\n\nLists the tasks that match every filter given.", &c)
	fs.StringVar(&f.Agent, "agent", "", "only tasks of this agent")
	fs.StringVar(&f.Principal, "principal", "", "only tasks on behalf of this principal")
	fs.StringVar(&f.Model, "model", "", "only tasks running this model")
	fs.StringVar(&f.ParentTask, "parent-task", "", "only tasks delegated directly by this task (SPIFFE ID)")
	fs.StringVar(&f.ParentID, "parent-id", "", "only tasks under this SPIRE agent (node)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	r, done, err := c.open(nil)
	if err != nil {
		return err
	}
	defer done()
	l, err := r.List(context.Background(), f)
	if err != nil {
		return err
	}
	// Task-shaped entries that do not decode are named on stderr (and in
	// the JSON's "invalid"), never a reason to fail the listing.
	for _, bad := range l.Invalid {
		fmt.Fprintf(env.stderr, "agentid task list: skipped entry %s of %s: %v\n", bad.EntryID, bad.ID, bad.Err)
	}
	if c.asJSON {
		views := make([]taskJSON, len(l.Tasks))
		for i, t := range l.Tasks {
			views[i] = taskView(t)
		}
		out := map[string]any{"tasks": views}
		if len(l.Invalid) > 0 {
			invalid := make([]map[string]string, len(l.Invalid))
			for i, bad := range l.Invalid {
				invalid[i] = map[string]string{"spiffe_id": bad.ID.String(), "entry_id": bad.EntryID, "error": bad.Err.Error()}
			}
			out["invalid"] = invalid
		}
		return printJSON(env.stdout, out)
	}
	tw := tabwriter.NewWriter(env.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "SPIFFE ID\tENTRY ID\tDEPTH\tDEADLINE\tPRINCIPAL")
	for _, t := range l.Tasks {
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\n", t.ID, t.EntryID, t.Claims.Depth(), t.Claims.Deadline.Format(time.RFC3339), t.Claims.Principal)
	}
	return tw.Flush()
}

func (env *cli) taskRevoke(args []string) error {
	c, r, id, done, err := env.taskTarget("task revoke", "task revoke [flags] SPIFFE-ID | --agent NAME --task ID\n\nDeletes the task's entry and the entries of all its descendants.", args, nil)
	if err != nil {
		return err
	}
	defer done()
	removed, err := r.Revoke(context.Background(), id)
	if c.asJSON {
		views := make([]taskJSON, len(removed))
		for i, t := range removed {
			views[i] = taskView(t)
		}
		if jerr := printJSON(env.stdout, map[string]any{"removed": views}); jerr != nil {
			return jerr
		}
	} else {
		for _, t := range removed {
			fmt.Fprintf(env.stdout, "Revoked %s (entry %s)\n", t.ID, t.EntryID)
		}
	}
	return err
}

// taskJSON is the --json view of a task.
type taskJSON struct {
	SPIFFEID    string       `json:"spiffe_id"`
	EntryID     string       `json:"entry_id"`
	ParentID    string       `json:"parent_id"`
	ExpiresAt   int64        `json:"expires_at,omitempty"`
	X509SVIDTTL int64        `json:"x509_svid_ttl"`
	JWTSVIDTTL  int64        `json:"jwt_svid_ttl"`
	Selectors   []string     `json:"selectors,omitempty"`
	ExeSHA256   string       `json:"exe_sha256,omitempty"`
	Incarnation string       `json:"incarnation,omitempty"`
	Claims      *svid.Claims `json:"claims,omitempty"`
}

func taskView(t registrar.Task) taskJSON {
	v := taskJSON{SPIFFEID: t.ID.String(), EntryID: t.EntryID, ParentID: t.ParentID, Selectors: t.Selectors, ExeSHA256: t.ExeSHA256, Incarnation: t.Incarnation,
		X509SVIDTTL: int64(t.X509SVIDTTL / time.Second), JWTSVIDTTL: int64(t.JWTSVIDTTL / time.Second)}
	if t.Claims.V != 0 {
		c := t.Claims
		v.Claims, v.ExpiresAt = &c, c.Deadline.Unix()
	}
	return v
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func printTask(w io.Writer, t registrar.Task) {
	tw := tabwriter.NewWriter(w, 0, 4, 1, ' ', 0)
	c := t.Claims
	line := func(k, v string) { fmt.Fprintf(tw, "%s:\t%s\n", k, v) }
	line("SPIFFE ID", t.ID.String())
	line("Entry ID", t.EntryID)
	line("Parent ID", t.ParentID)
	line("Agent", c.Agent)
	line("Task", c.Task)
	line("Model", c.Model)
	line("Prompt", c.Prompt)
	line("Scope", strings.Join(c.Scope, " "))
	line("Principal", c.Principal)
	line("Depth", fmt.Sprint(c.Depth()))
	for i, d := range c.Chain {
		line(fmt.Sprintf("Chain[%d]", i), d)
	}
	line("Deadline", c.Deadline.Format(time.RFC3339))
	if t.X509SVIDTTL != 0 || t.JWTSVIDTTL != 0 { // the daemon's API does not return them
		line("X509-SVID TTL", t.X509SVIDTTL.String())
		line("JWT-SVID TTL", t.JWTSVIDTTL.String())
	}
	for _, s := range t.Selectors {
		line("Selector", s)
	}
	if t.Incarnation != "" {
		line("Incarnation", t.Incarnation)
	}
	if t.ExeSHA256 != "" {
		line("Executable", "sha256:"+t.ExeSHA256)
	}
	tw.Flush()
}
