package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
)

func init() {
	register("policy", "lint, format, evaluate and test HCL policies", func(env *cli, args []string) error {
		return env.subcommands("policy", args, map[string]func(*cli, []string) error{
			"lint": (*cli).policyLint,
			"fmt":  (*cli).policyFmt,
			"eval": (*cli).policyEval,
			"test": (*cli).policyTest,
		})
	})
}

// printDiags writes "file:line:col: severity: summary: detail" lines and
// returns the number of errors and warnings.
func printDiags(w io.Writer, dir string, diags hcl.Diagnostics) (errs, warns int) {
	for _, d := range diags {
		sev := "warning"
		if d.Severity == hcl.DiagError {
			sev, errs = "error", errs+1
		} else {
			warns++
		}
		loc := dir
		if d.Subject != nil {
			loc = fmt.Sprintf("%s:%d:%d", filepath.Join(dir, d.Subject.Filename), d.Subject.Start.Line, d.Subject.Start.Column)
		}
		msg := d.Summary
		if d.Detail != "" {
			msg += ": " + d.Detail
		}
		fmt.Fprintf(w, "%s: %s: %s\n", loc, sev, msg)
	}
	return errs, warns
}

// loadPolicy loads dir and its tests, printing the diagnostics to stderr.
func (env *cli) loadPolicy(dir string, withTests bool) (*policies.Set, []*policies.TestCase, error) {
	set, diags := policies.Load(dir)
	var cases []*policies.TestCase
	if set != nil && withTests {
		files, err := policies.ReadTestDir(dir)
		if err != nil {
			return nil, nil, err
		}
		var tdiags hcl.Diagnostics
		cases, tdiags = set.LoadTests(files)
		diags = append(diags, tdiags...)
	}
	if errs, _ := printDiags(env.stderr, dir, diags); errs > 0 {
		return nil, nil, &exitError{code: 1, msg: fmt.Sprintf("%s: %d error(s)", dir, errs)}
	}
	return set, cases, nil
}

func oneDir(fs interface {
	NArg() int
	Arg(int) string
}, usage string) (string, error) {
	if fs.NArg() != 1 {
		return "", fmt.Errorf("%w: agentid policy %s", errUsage, usage)
	}
	return fs.Arg(0), nil
}

func (env *cli) policyLint(args []string) error {
	fs := env.flags("policy lint", "policy lint DIR\n\nChecks the policy and test files of DIR: errors and warnings as file:line:col.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	dir, err := oneDir(fs, "lint DIR")
	if err != nil {
		return err
	}
	set, diags := policies.Load(dir)
	if set != nil {
		files, err := policies.ReadTestDir(dir)
		if err != nil {
			return err
		}
		_, tdiags := set.LoadTests(files)
		diags = append(diags, tdiags...)
	}
	errs, warns := printDiags(env.stdout, dir, diags)
	fmt.Fprintf(env.stdout, "%d error(s), %d warning(s)\n", errs, warns)
	if errs > 0 {
		return &exitError{code: 1}
	}
	return nil
}

func (env *cli) policyFmt(args []string) error {
	fs := env.flags("policy fmt", "policy fmt [-w|-check|-l] PATH...\n\nFormats .hcl files (directories recursively) the way hclwrite does.\nWithout flags the formatted sources are printed.")
	write := fs.Bool("w", false, "write the result to the files")
	check := fs.Bool("check", false, "list the files that are not formatted and exit 3 if any")
	list := fs.Bool("l", false, "list the files whose formatting differs")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: agentid policy fmt [-w|-check|-l] PATH...", errUsage)
	}
	paths, err := hclFiles(fs.Args())
	if err != nil {
		return err
	}
	changed, failed := 0, 0
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out, diags := policies.Format(p, src)
		if diags.HasErrors() {
			printDiags(env.stderr, "", diags)
			failed++
			continue
		}
		diff := !bytes.Equal(src, out)
		if diff {
			changed++
		}
		switch {
		case *check || *list:
			if diff {
				fmt.Fprintln(env.stdout, p)
			}
		case *write:
			if diff {
				if err := os.WriteFile(p, out, 0o644); err != nil {
					return err
				}
			}
		default:
			env.stdout.Write(out)
		}
	}
	if failed > 0 {
		return &exitError{code: 1, msg: fmt.Sprintf("%d file(s) have syntax errors", failed)}
	}
	if *check && changed > 0 {
		return &exitError{code: 3, msg: fmt.Sprintf("%d file(s) need formatting", changed)}
	}
	return nil
}

func hclFiles(args []string) ([]string, error) {
	var out []string
	for _, a := range args {
		st, err := os.Stat(a)
		if err != nil {
			return nil, err
		}
		if !st.IsDir() {
			out = append(out, a)
			continue
		}
		err = filepath.WalkDir(a, func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(p, ".hcl") {
				out = append(out, p)
			}
			return err
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

type evalFlags struct {
	peer, claims, id, td, action, source, now string
	arguments                                 string
	headers                                   stringList
	asJSON, trace                             bool
}

func (env *cli) policyEval(args []string) error {
	var f evalFlags
	fs := env.flags("policy eval", "policy eval DIR (--peer PEM | --claims JSON [--id SPIFFE-ID]) --action ACTION [flags]\n\nACTION is \"http METHOD /path\", \"grpc /pkg.Svc/Method\", \"mcp TOOL\", \"mcp METHOD NAME|URI\" or \"KIND NAME\";\nan MCP tool call's arguments follow the tool as a JSON object, or come from --arguments.\nFlags may come before or after DIR.")
	fs.StringVar(&f.peer, "peer", "", "PEM file whose first certificate is the peer's X.509-SVID")
	fs.StringVar(&f.claims, "claims", "", "task claims: a JSON file, or inline JSON starting with {")
	fs.StringVar(&f.id, "id", "", "peer SPIFFE ID (default: the task ID of the claims)")
	fs.StringVar(&f.td, "trust-domain", "example.org", "trust domain of the derived task ID")
	fs.StringVar(&f.action, "action", "", "the action (required)")
	fs.StringVar(&f.arguments, "arguments", "", "an MCP tool call's arguments: a JSON object, or a file holding one")
	fs.Var(&f.headers, "header", "request header NAME=VALUE (repeatable)")
	fs.StringVar(&f.source, "source", "", "request source address IP[:PORT]")
	fs.StringVar(&f.now, "now", "", "decision time, RFC 3339 (default now)")
	fs.BoolVar(&f.asJSON, "json", false, "print the decision as JSON")
	fs.BoolVar(&f.trace, "trace", false, "list every rule considered and why it did or did not match")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: agentid policy eval DIR --action ACTION (--peer PEM | --claims JSON)", errUsage)
	}
	dir := fs.Arg(0)
	in, err := f.input()
	if err != nil {
		return err
	}
	set, _, err := env.loadPolicy(dir, false)
	if err != nil {
		return err
	}
	var d policies.Decision
	if f.trace {
		d = set.Explain(in)
	} else {
		d = set.Decide(in)
	}
	if f.asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(decisionJSON(d, set.Digest()))
	}
	printDecision(env.stdout, d)
	return nil
}

func (f *evalFlags) input() (*policies.Input, error) {
	if f.action == "" || (f.peer == "") == (f.claims == "") {
		return nil, fmt.Errorf("%w: need --action and one of --peer or --claims", errUsage)
	}
	act, err := policies.ParseAction(f.action)
	if err != nil {
		return nil, fmt.Errorf("%w: --action %v", errUsage, err)
	}
	if f.arguments != "" {
		if act.Arguments, err = mcpArguments(act, f.arguments); err != nil {
			return nil, err
		}
	}
	in := &policies.Input{Action: act, Now: time.Now()}
	if f.now != "" {
		if in.Now, err = time.Parse(time.RFC3339, f.now); err != nil {
			return nil, fmt.Errorf("%w: --now: %v", errUsage, err)
		}
	}
	if f.peer != "" {
		var data []byte
		if data, err = os.ReadFile(f.peer); err == nil {
			if in.Peer, err = policies.PeerFromPEM(data, in.Now); err != nil {
				err = fmt.Errorf("%s: %w", f.peer, err)
			}
		}
	} else {
		in.Peer, err = peerFromClaims(f.claims, f.id, f.td)
	}
	if err != nil {
		return nil, err
	}
	if in.Request, err = f.request(); err != nil {
		return nil, err
	}
	return in, nil
}

// mcpArguments reads --arguments: inline JSON starting with {, or a file.
func mcpArguments(act policies.Action, arg string) (string, error) {
	if act.Kind != policies.KindMCP || act.Method != policies.MCPToolsCall {
		return "", fmt.Errorf("%w: --arguments needs an MCP tool call (--action \"mcp TOOL\")", errUsage)
	}
	if act.Arguments != "" {
		return "", fmt.Errorf("%w: arguments given both in --action and --arguments", errUsage)
	}
	data := arg
	if !strings.HasPrefix(strings.TrimSpace(arg), "{") {
		b, err := os.ReadFile(arg)
		if err != nil {
			return "", err
		}
		data = string(b)
	}
	if err := policies.CheckArguments(data); err != nil {
		return "", fmt.Errorf("%w: --arguments: %v", errUsage, err)
	}
	return data, nil
}

func (f *evalFlags) request() (policies.Request, error) {
	var r policies.Request
	for _, h := range f.headers {
		k, v, ok := strings.Cut(h, "=")
		if !ok {
			return r, fmt.Errorf("%w: --header %q: want NAME=VALUE", errUsage, h)
		}
		if r.Headers == nil {
			r.Headers = map[string][]string{}
		}
		k = strings.ToLower(k)
		r.Headers[k] = append(r.Headers[k], v)
	}
	if f.source != "" {
		ap, err := policies.ParseSource(f.source)
		if err != nil {
			return r, fmt.Errorf("%w: --source: %v", errUsage, err)
		}
		r.Source = ap
	}
	return r, nil
}

func peerFromClaims(arg, idArg, td string) (policies.Peer, error) {
	data := []byte(arg)
	if !strings.HasPrefix(strings.TrimSpace(arg), "{") {
		var err error
		if data, err = os.ReadFile(arg); err != nil {
			return policies.Peer{}, err
		}
	}
	c, err := svid.Parse(data)
	if err != nil {
		return policies.Peer{}, fmt.Errorf("--claims: %w", err)
	}
	var id spiffeid.ID
	if idArg != "" {
		id, err = spiffeid.FromString(idArg)
	} else {
		var t spiffeid.TrustDomain
		if t, err = spiffeid.TrustDomainFromString(td); err == nil {
			id, err = svid.TaskID(t, c.Agent, c.Task)
		}
	}
	if err != nil {
		return policies.Peer{}, fmt.Errorf("peer ID: %w", err)
	}
	return policies.Peer{ID: id, Claims: &c}, nil
}

func printDecision(w io.Writer, d policies.Decision) {
	word := "deny"
	if d.Allow {
		word = "allow"
	}
	fmt.Fprintf(w, "%s: %s\n", word, d.Reason)
	for _, r := range d.Rules {
		fmt.Fprintf(w, "  rule %s\n", r)
	}
	for _, e := range d.Errors {
		fmt.Fprintf(w, "  error %s\n", e)
	}
	for _, t := range d.Trace {
		fmt.Fprintf(w, "  %s\n", t)
	}
}

type ruleJSON struct {
	Name   string `json:"name"`
	Effect string `json:"effect"`
	File   string `json:"file"`
	Line   int    `json:"line"`
}

type traceJSON struct {
	ruleJSON
	Matched bool   `json:"matched"`
	Why     string `json:"why"`
}

type decisionOut struct {
	Decision     string      `json:"decision"`
	Allow        bool        `json:"allow"`
	Rules        []ruleJSON  `json:"rules"`
	Reason       string      `json:"reason"`
	Errors       []string    `json:"errors,omitempty"`
	Trace        []traceJSON `json:"trace,omitempty"`
	PolicyDigest string      `json:"policy_digest"`
}

func toRuleJSON(r policies.RuleRef) ruleJSON {
	return ruleJSON{Name: r.Name, Effect: r.Effect.String(), File: r.File, Line: r.Line}
}

func decisionJSON(d policies.Decision, digest string) decisionOut {
	out := decisionOut{Decision: "deny", Allow: d.Allow, Rules: []ruleJSON{}, Reason: d.Reason, Errors: d.Errors, PolicyDigest: digest}
	if d.Allow {
		out.Decision = "allow"
	}
	for _, r := range d.Rules {
		out.Rules = append(out.Rules, toRuleJSON(r))
	}
	for _, t := range d.Trace {
		out.Trace = append(out.Trace, traceJSON{toRuleJSON(t.Rule), t.Matched, t.Why})
	}
	return out
}

func (env *cli) policyTest(args []string) error {
	fs := env.flags("policy test", "policy test [-v] [-run REGEXP] DIR\n\nRuns the test blocks of DIR's *_test.hcl files and tests/*.hcl.\nPrints one line per failure and the summary \"N passed, N failed\".")
	verbose := fs.Bool("v", false, "print every test and the trace of failures")
	run := fs.String("run", "", "run only the tests whose name matches this regular expression")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return fmt.Errorf("%w: agentid policy test [-v] [-run REGEXP] DIR", errUsage)
	}
	dir := fs.Arg(0)
	var re *regexp.Regexp
	if *run != "" {
		var err error
		if re, err = regexp.Compile(*run); err != nil {
			return fmt.Errorf("%w: -run: %v", errUsage, err)
		}
	}
	set, cases, err := env.loadPolicy(dir, true)
	if err != nil {
		return err
	}
	var selected []*policies.TestCase
	for _, tc := range cases {
		if re == nil || re.MatchString(tc.Name) {
			selected = append(selected, tc)
		}
	}
	passed, failed := 0, 0
	for _, r := range set.RunTests(selected) {
		loc := fmt.Sprintf("%s:%d", filepath.Join(dir, r.Case.File), r.Case.Line)
		if r.Failure == "" {
			passed++
			if *verbose {
				fmt.Fprintf(env.stdout, "ok   %s (%s)\n", r.Case.Name, loc)
			}
			continue
		}
		failed++
		fmt.Fprintf(env.stdout, "FAIL %s (%s): %s\n", r.Case.Name, loc, r.Failure)
		if *verbose {
			for _, e := range r.Decision.Errors {
				fmt.Fprintf(env.stdout, "       error %s\n", e)
			}
			for _, t := range r.Decision.Trace {
				fmt.Fprintf(env.stdout, "       %s\n", t)
			}
		}
	}
	fmt.Fprintf(env.stdout, "%d passed, %d failed\n", passed, failed)
	if failed > 0 {
		return &exitError{code: 1}
	}
	return nil
}
