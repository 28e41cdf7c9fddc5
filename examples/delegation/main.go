// Command delegation runs the agentid delegation story end to end on a real
// SPIRE (started by internal/devstack, as `agentid dev` does) and prints a
// short narrative and a final table. It is what `make demo` runs; it exits 1
// when any step does not turn out as the story says, so it doubles as a
// check (e2e.TestDemo runs it).
//
//  1. alice starts a planner task through the registrar, launched with
//     `agentid run`;
//  2. the planner delegates a researcher task with kb:read only, over the
//     registrar's mTLS API, authenticated by its own SVID;
//  3. the researcher reads the knowledge base behind the agentid-verifier
//     proxy (allowed), tries to open a ticket (denied, with the deciding
//     rule), the planner opens it (allowed), and a process that was not
//     launched as a task gets no identity at all;
//     3b. the same tasks use the knowledge base as MCP tools (kbservice
//     -mcp, a stdio MCP server) through agentid-verifier's MCP gateway,
//     with JWT-SVIDs for its resource URI: the researcher is listed fewer
//     tools than the planner, searches (allowed) and may not open a
//     ticket (an MCP error naming the rule); the planner may;
//  4. the planner's task is revoked: the X.509-SVID the researcher already
//     holds is refused at the service within the liveness feed's interval
//     (the time is measured and shown), the researcher's entry goes with
//     the planner's and its next SVID fetch fails;
//  5. an auditor checks the logs offline: `agentid audit verify
//     --witness-key` on the verifier's and the registrar's logs (both
//     cosigned by the stack's audit witness), and the receipt of the
//     researcher's allowed read in step 3 (x-agentid-receipt) becomes an
//     evidence file (`agentid audit prove`) that `agentid audit
//     verify-receipt --bundle --witness-key` checks with nothing else.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/agentid/agentid/internal/devstack"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

func main() {
	binDir := flag.String("bin-dir", "", "folder of the agentid binaries and the example programs (default: found like `agentid dev` does)")
	spireBin := flag.String("spire-bin", "", "folder of spire-server and spire-agent (default: $AGENTID_SPIRE_BIN or .cache/spire/v1.13.3/bin)")
	examples := flag.String("examples", "examples/delegation", "this example's folder (policies, prompts)")
	keep := flag.Bool("keep", false, "keep the stack's directory afterwards")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	s := &story{examples: *examples}
	err := s.run(ctx, devstack.Options{BinDir: *binDir, SpireBin: *spireBin, Keep: *keep, Witness: true})
	s.table(os.Stdout)
	if err != nil {
		fmt.Fprintln(os.Stderr, "\ndemo FAILED:", err)
		os.Exit(1)
	}
	fmt.Println("\nEvery step turned out as the story says.")
}

type story struct {
	examples string
	st       *devstack.Stack
	dir      string
	rows     [][5]string
	failed   []string
	receipt  string // of the researcher's allowed read in step 3
}

func say(format string, args ...any) { fmt.Printf(format+"\n", args...) }

func (s *story) run(ctx context.Context, opts devstack.Options) error {
	say("== Starting SPIRE 1.13.3 with the agentid attestor and composer, a registrar and a verifier ...")
	st, err := devstack.Start(ctx, opts)
	if err != nil {
		return err
	}
	defer st.Stop()
	s.st, s.dir = st, st.Dir
	say("   trust domain %s, node %s, working in %s\n", st.TrustDomain, st.NodeID, st.Dir)

	// The service: kbservice behind an agentid-verifier proxy with the
	// story's policies.
	kbAddr, err := freeAddr()
	if err != nil {
		return err
	}
	kb := exec.CommandContext(ctx, filepath.Join(st.BinDir, "kbservice"), "-behind-proxy", kbAddr)
	kb.Stdout, kb.Stderr = io.Discard, io.Discard
	if err := kb.Start(); err != nil {
		return fmt.Errorf("kbservice: %w (run `make build`)", err)
	}
	defer func() { kb.Process.Signal(syscall.SIGTERM); kb.Wait() }()
	policyDir, _ := filepath.Abs(filepath.Join(s.examples, "policies"))
	v, err := st.StartVerifier(ctx, devstack.VerifierOptions{Name: "kb", PolicyDir: policyDir, ProxyUpstream: "http://" + kbAddr})
	if err != nil {
		return err
	}
	say("   knowledge-base service behind the verifier proxy at %s (policies: %s)\n", v.ProxyURL, policyDir)

	steps := []func(context.Context, *devstack.Verifier) error{s.step1, s.step2, s.step3, s.step3MCP, s.step4, s.step5}
	for _, step := range steps {
		if err := step(ctx, v); err != nil {
			return err
		}
	}
	if len(s.failed) > 0 {
		return errors.New(strings.Join(s.failed, "; "))
	}
	return nil
}

func (s *story) step1(ctx context.Context, _ *devstack.Verifier) error {
	say("== 1. alice starts a planner task through the registrar")
	out, err := s.agentid(ctx, "task", "create", "--server-socket", s.st.ServerSocket, "--policy", s.st.IssuancePolicy,
		"--parent-id", s.st.NodeID, "--agent", "planner", "--task", "T-planner", "--model", "openai/gpt-4o",
		"--prompt-file", filepath.Join(s.examples, "prompts", "planner.txt"),
		"--scope", "tickets:read", "--scope", "tickets:write", "--scope", "kb:read",
		"--principal", "spiffe://example.org/user/alice", "--ttl", "1h", "--output", s.file("planner.json"))
	if err != nil {
		return err
	}
	say("%s", indent(out))
	reps, err := s.as(ctx, "planner", "agentid", "svid", "inspect", "--socket", s.st.AgentSocket)
	s.expect("1", "planner", "launched with `agentid run`: fetch its X.509-SVID", err == nil && strings.Contains(reps, "Agent:"), "SVID with task claims", "", reps+errText(err))
	say("   the planner, launched with `agentid run`, holds its task identity:\n%s", indent(reps))
	return nil
}

func (s *story) step2(ctx context.Context, _ *devstack.Verifier) error {
	say("== 2. the planner delegates a researcher task with kb:read only")
	out, err := s.as(ctx, "planner", "agentid", "task", "create", "--delegate", "--registrar", s.st.RegistrarAddr,
		"--socket", s.st.AgentSocket, "--agent", "researcher", "--task", "T-researcher", "--model", "openai/gpt-4o",
		"--prompt-file", filepath.Join(s.examples, "prompts", "researcher.txt"), "--scope", "kb:read", "--ttl", "30m",
		"--output", s.file("researcher.json"))
	s.expect("2", "planner", "delegate researcher (kb:read) over the registrar's mTLS API", err == nil, "child task created", "", out+errText(err))
	if err != nil {
		return err
	}
	say("%s", indent(out))
	_, err = s.as(ctx, "planner", "agentid", "task", "create", "--delegate", "--registrar", s.st.RegistrarAddr,
		"--socket", s.st.AgentSocket, "--agent", "researcher", "--task", "T-greedy", "--model", "openai/gpt-4o",
		"--prompt-file", filepath.Join(s.examples, "prompts", "researcher.txt"), "--scope", "kb:write", "--ttl", "30m")
	s.expect("2", "planner", "delegate with kb:write, a scope it does not hold", err != nil && strings.Contains(err.Error(), "scope_escalation"), "refused", "scope_escalation", errText(err))
	say("   asking for a scope the planner does not hold is refused:\n%s", indent(lastLine(errText(err))))
	return nil
}

func (s *story) step3(ctx context.Context, v *devstack.Verifier) error {
	say("== 3. the tasks call the knowledge-base service through the verifier")
	call := func(who, method, path, want string) {
		out, err := s.as(ctx, who, "kbagent", "-socket", s.st.AgentSocket, "-method", method, "-url", v.ProxyURL+path)
		got := firstWord(out)
		rule := ruleOf(firstLine(out))
		s.expect("3", who, method+" "+path, err == nil && got == want, want, rule, out+errText(err))
		say("   %-10s %-6s %-18s -> %s", who, method, path, strings.TrimSpace(firstLine(out)+errText(err)))
		if _, ref, ok := strings.Cut(out, "receipt: "); ok {
			ref = firstLine(ref)
			say("   %-10s %-6s %-18s    receipt %s", "", "", "", ref)
			if who == "researcher" && s.receipt == "" {
				s.receipt = ref
			}
		}
	}
	call("researcher", "GET", "/kb/onboarding", "200")
	call("researcher", "POST", "/tickets", "403")
	call("planner", "POST", "/tickets", "200")

	out, err := s.bin(ctx, "kbagent", "-socket", s.st.AgentSocket, "-url", v.ProxyURL+"/kb/onboarding")
	s.expect("3", "(no task)", "GET /kb/onboarding from a process not launched as a task", err != nil && strings.Contains(err.Error(), "no identity issued"), "no identity", "", out+errText(err))
	say("   %-10s %-6s %-18s -> %s\n", "(no task)", "GET", "/kb/onboarding", lastLine(errText(err)))
	return nil
}

// mcpResource is the resource URI of the knowledge base's MCP gateway:
// the audience of the JWT-SVIDs the tasks present to it.
const mcpResource = "https://kb.example.org/mcp"

func (s *story) step3MCP(ctx context.Context, _ *devstack.Verifier) error {
	say("== 3b. the same tasks use the knowledge base's MCP tools through the verifier's MCP gateway")
	policyDir, _ := filepath.Abs(filepath.Join(s.examples, "policies"))
	g, err := s.st.StartVerifier(ctx, devstack.VerifierOptions{Name: "mcp", PolicyDir: policyDir,
		MCP: &devstack.MCPGateway{Resource: mcpResource, Command: []string{filepath.Join(s.st.BinDir, "kbservice"), "-mcp"}}})
	if err != nil {
		return err
	}
	defer g.Stop()
	say("   kbservice -mcp (a stdio MCP server) run by the gateway at %s (resource %s)", g.MCPURL, mcpResource)
	call := func(who, tool, args, wantTools, want string) {
		argv := []string{"kbagent", "-socket", s.st.AgentSocket, "-mcp", g.MCPURL, "-audience", mcpResource}
		if tool != "" {
			argv = append(argv, "-call", tool, "-args", args)
		}
		out, err := s.as(ctx, who, argv...)
		tools, result := firstLine(out), lastLine(out)
		if tool == "" {
			s.expect("3b", who, "MCP tools/list", err == nil && tools == "tools: "+wantTools, wantTools, "", out+errText(err))
			say("   %-10s tools/list -> %s", who, strings.TrimPrefix(tools, "tools: ")+errText(err))
			return
		}
		got := "allowed"
		if strings.Contains(result, ": refused: ") {
			got = "refused"
		}
		s.expect("3b", who, "MCP tools/call "+tool+" "+args, err == nil && got == want, want, ruleOf(result), out+errText(err))
		say("   %-10s tools/call %s %s -> %s", who, tool, args, strings.TrimPrefix(result, tool+": ")+errText(err))
	}
	call("researcher", "", "", "kb_read, kb_search", "")
	call("planner", "", "", "kb_read, kb_search, ticket_create", "")
	call("researcher", "kb_search", `{"query":"agent"}`, "", "allowed")
	call("researcher", "ticket_create", `{"title":"more GPUs"}`, "", "refused")
	call("planner", "ticket_create", `{"title":"more GPUs"}`, "", "allowed")
	say("")
	return nil
}

func (s *story) step4(ctx context.Context, v *devstack.Verifier) error {
	say("== 4. the planner's task is revoked")
	// What the researcher already holds: its X.509-SVID, fetched before.
	held := s.file("researcher-svid")
	if err := os.Mkdir(held, 0o700); err != nil {
		return err
	}
	out, err := s.as(ctx, "researcher", filepath.Join(s.st.SpireBin, "spire-agent"), "api", "fetch", "x509",
		"-socketPath", s.st.AgentSocket, "-write", held)
	if err != nil {
		return fmt.Errorf("the researcher fetching its X.509-SVID: %w\n%s", err, out)
	}
	client, err := heldClient(held, s.st.TrustDomain)
	if err != nil {
		return err
	}
	url := v.ProxyURL + "/kb/onboarding"
	code, _ := get(ctx, client, url)
	s.expect("4", "researcher", "GET /kb/onboarding with the SVID it holds, before the revocation", code == 200, "200", "", fmt.Sprint(code))

	out, err = s.agentid(ctx, "task", "revoke", "--server-socket", s.st.ServerSocket, "spiffe://"+s.st.TrustDomain+"/agent/planner/task/T-planner")
	revoked := time.Now()
	s.expect("4", "operator", "revoke the planner", err == nil && strings.Contains(out, "researcher/task/T-researcher"), "planner and researcher removed", "", out+errText(err))
	say("%s", indent(out))

	// The kill switch: the SVID the researcher already holds is refused
	// at the service as soon as the verifier's liveness feed has the news.
	var body string
	for time.Since(revoked) < 10*time.Second {
		if code, body = get(ctx, client, url); code != 200 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	took := time.Since(revoked)
	ok := code == 401 && strings.Contains(body, "revoked")
	s.expect("4", "researcher", "GET /kb/onboarding with the SVID it already holds",
		ok, fmt.Sprintf("refused in %.2f s", took.Seconds()), "revoked", fmt.Sprintf("%d %s", code, body))
	say("   the researcher's already-fetched SVID at the service, %.2f s after the revocation: %d %s", took.Seconds(), code, strings.TrimSpace(firstLine(body)))

	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err = s.as(ctx, "researcher", "agentid", "svid", "inspect", "--socket", s.st.AgentSocket)
		if err != nil && strings.Contains(err.Error(), "no identity issued") || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	s.expect("4", "researcher", "fetch its SVID after the revocation", err != nil && strings.Contains(err.Error(), "no identity issued"), "no identity", "", errText(err))
	say("   the researcher's next SVID fetch: %s\n", lastLine(errText(err)))
	return nil
}

// heldClient is an mTLS client with the X.509-SVID that spire-agent wrote
// to dir (svid.0.pem, svid.0.key, bundle.0.pem): a credential held, not
// fetched again.
func heldClient(dir, td string) (*http.Client, error) {
	id, err := x509svid.Load(filepath.Join(dir, "svid.0.pem"), filepath.Join(dir, "svid.0.key"))
	if err != nil {
		return nil, err
	}
	bundle, err := x509bundle.Load(spiffeid.RequireTrustDomainFromString(td), filepath.Join(dir, "bundle.0.pem"))
	if err != nil {
		return nil, err
	}
	tc := tlsconfig.MTLSClientConfig(id, bundle, tlsconfig.AuthorizeMemberOf(bundle.TrustDomain()))
	return &http.Client{Transport: &http.Transport{TLSClientConfig: tc}, Timeout: 5 * time.Second}, nil
}

// get returns the status and body of a GET (0 and the error on failure).
func get(ctx context.Context, c *http.Client, url string) (int, string) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return 0, err.Error()
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func (s *story) step5(ctx context.Context, v *devstack.Verifier) error {
	say("== 5. an auditor checks the logs and a receipt offline")
	w := s.st.Witness
	say("   trusted: the trust bundle (%s) and the audit witness's key (%s)", s.st.BundlePath, strings.TrimSpace(w.Key))
	// Stopping the daemons flushes their logs, signs a final checkpoint
	// with their SVID keys and has the witness cosign it.
	// (Every verifier first: the registrar's graceful stop waits up to 10 s
	// for their liveness streams.)
	for _, v := range []*devstack.Verifier{v, s.st.Verifier} {
		if err := v.Stop(); err != nil {
			return fmt.Errorf("stopping verifier %s: %w", v.Name, err)
		}
	}
	if err := s.st.Registrar.Process().Stop(); err != nil {
		return fmt.Errorf("stopping the registrar: %w", err)
	}
	for _, l := range []struct{ who, path, signer string }{
		{"verifier", v.AuditPath, s.st.VerifierID}, {"registrar", s.st.Registrar.AuditPath, s.st.RegistrarID},
	} {
		out, err := s.agentid(ctx, "audit", "verify", "--bundle", s.st.BundlePath, "--witness-key", w.KeyFile, "--signer", l.signer, l.path)
		ok := err == nil && strings.HasPrefix(out, "OK: ") && strings.Contains(out, "witnessed") && strings.Contains(out, "checkpoint(s) by "+l.signer)
		s.expect("5", "auditor", "agentid audit verify --witness-key: the "+l.who+"'s log", ok, "intact, signed, witnessed", "", out+errText(err))
		say("   the %s's log:\n%s", l.who, indent(out+errText(err)))
	}

	// The receipt the researcher's read got in step 3, proved offline.
	_, n, found := strings.Cut(s.receipt, ";index=")
	if !found {
		s.expect("5", "auditor", "the receipt of the researcher's read", false, "a receipt", "", "no x-agentid-receipt reached the service in step 3")
		return nil
	}
	evidence := s.file("receipt.json")
	out, err := s.agentid(ctx, "audit", "prove", "--index", n, "--out", evidence, v.AuditPath)
	s.expect("5", "auditor", "agentid audit prove --index "+n+" (the read's receipt)", err == nil, "evidence file", "", out+errText(err))
	if err != nil {
		return nil
	}
	out, err = s.agentid(ctx, "audit", "verify-receipt", evidence, "--bundle", s.st.BundlePath, "--witness-key", w.KeyFile, "--signer", s.st.VerifierID)
	ok := err == nil && strings.Contains(out, "cosigned by ") && strings.Contains(out, "peer: spiffe://"+s.st.TrustDomain+"/agent/researcher/task/T-researcher") &&
		strings.Contains(out, "decision: allow")
	s.expect("5", "auditor", "agentid audit verify-receipt --witness-key (offline)", ok, "researcher's read proved", "", out+errText(err))
	say("   agentid audit verify-receipt %s --bundle bundle.pem --witness-key witness.pub:\n%s", filepath.Base(evidence), indent(out+errText(err)))
	say("   verified offline: the record is in the verifier's Merkle tree (inclusion proof), whose checkpoint is signed with a key\n" +
		"   bound by the verifier's X.509-SVID (chain to the bundle) and cosigned by the witness, at the witness's time.")
	return nil
}

// expect records a step's outcome for the table.
func (s *story) expect(step, actor, action string, ok bool, want, rule, detail string) {
	result := want
	if !ok {
		result = "UNEXPECTED"
		s.failed = append(s.failed, fmt.Sprintf("step %s %s %q: wanted %s, got %s", step, actor, action, want, strings.TrimSpace(detail)))
	}
	s.rows = append(s.rows, [5]string{step, actor, action, result, rule})
}

func (s *story) table(w io.Writer) {
	if len(s.rows) == 0 {
		return
	}
	fmt.Fprintln(w, "\n== Summary")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "step\tactor\taction\tresult\tdeciding rule")
	for _, r := range s.rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r[0], r[1], r[2], r[3], r[4])
	}
	tw.Flush()
}

// as runs a command as a task, through `agentid run`, retrying while the
// task's entry is still on its way to the SPIRE agent.
func (s *story) as(ctx context.Context, task string, argv ...string) (string, error) {
	bin := argv[0]
	if !filepath.IsAbs(bin) {
		bin = filepath.Join(s.st.BinDir, bin)
	}
	args := append([]string{"run", "--task-file", s.file(task + ".json"), "--manifest-dir", s.st.ManifestDir, "--", bin}, argv[1:]...)
	deadline := time.Now().Add(20 * time.Second)
	for {
		out, err := s.agentid(ctx, args...)
		if err == nil || !strings.Contains(err.Error(), "no identity issued") || time.Now().After(deadline) {
			return out, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

func (s *story) agentid(ctx context.Context, args ...string) (string, error) {
	return s.bin(ctx, "agentid", args...)
}

func (s *story) bin(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.st.BinDir, name), args...)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", name, err, strings.TrimSpace(errb.String()))
	}
	return string(out), nil
}

func (s *story) file(name string) string { return filepath.Join(s.dir, name) }

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

func indent(s string) string {
	s = strings.TrimRight(s, "\n")
	return "     " + strings.ReplaceAll(s, "\n", "\n     ")
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func firstWord(s string) string {
	w, _, _ := strings.Cut(strings.TrimSpace(s), " ")
	return w
}

// ruleOf pulls "allowed by <rule>" or the deny reason out of a response.
func ruleOf(out string) string {
	if _, r, ok := strings.Cut(out, "allowed by "); ok {
		return strings.TrimSuffix(strings.TrimSpace(r), ")")
	}
	if _, r, ok := strings.Cut(out, "(rule "); ok {
		r, _, _ = strings.Cut(r, ")")
		return r + ")"
	}
	return ""
}
