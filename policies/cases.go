package policies

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/agentid/agentid/svid"
)

// TestCase is one test block of a test file.
type TestCase struct {
	Name  string
	File  string
	Line  int
	Input Input
	// Expect is the expected decision.
	Expect Effect
	// Rules, when set, must all be among the deciding rules.
	Rules []string
}

// TestResult is the outcome of one TestCase.
type TestResult struct {
	Case     *TestCase
	Decision Decision
	// Failure is empty when the case passed.
	Failure string
}

// ReadTestDir returns the test files of dir: *_test.hcl and every .hcl
// file under dir/tests, sorted by name.
func ReadTestDir(dir string) ([]File, error) {
	a, err := filepath.Glob(filepath.Join(dir, "*_test.hcl"))
	if err != nil {
		return nil, err
	}
	b, _ := filepath.Glob(filepath.Join(dir, "tests", "*.hcl"))
	var files []File
	for _, p := range append(a, b...) {
		src, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		rel, _ := filepath.Rel(dir, p)
		files = append(files, File{Name: filepath.ToSlash(rel), Src: src, Path: p})
	}
	slices.SortFunc(files, func(x, y File) int { return cmp.Compare(x.Name, y.Name) })
	return files, nil
}

var (
	testFileSchema = &hcl.BodySchema{Blocks: []hcl.BlockHeaderSchema{{Type: "test", LabelNames: []string{"name"}}}}
	testSchema     = &hcl.BodySchema{
		Attributes: []hcl.AttributeSchema{{Name: "action"}, {Name: "authzen"}, {Name: "arguments"}, {Name: "now"}, {Name: "expect", Required: true}, {Name: "rule"}, {Name: "rules"}},
		Blocks:     []hcl.BlockHeaderSchema{{Type: "peer"}, {Type: "request"}},
	}
	testPeerSchema = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "spiffe_id"}, {Name: "claims"}, {Name: "certificate"}}}
	testReqSchema  = &hcl.BodySchema{Attributes: []hcl.AttributeSchema{{Name: "headers"}, {Name: "source"}}}
	claimKeys      = []string{"agent", "task", "model", "prompt", "scope", "principal", "chain", "deadline"}
)

// Defaults of test claims that a test does not set. The principal
// defaults to spiffe://<trust domain>/user/test and agent and task come
// from the SPIFFE ID.
var (
	DefaultTestModel    = "test/model"
	DefaultTestPrompt   = svid.PromptDigest(nil)
	DefaultTestDeadline = time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC)
)

// LoadTests parses test files. Expressions may use the set's variables
// (var.name) and the condition functions.
func (s *Set) LoadTests(files []File) ([]*TestCase, hcl.Diagnostics) {
	l := &loader{varObj: s.vars, varUsed: map[string]bool{}, ruleDefs: map[string]hcl.Range{}}
	var cases []*TestCase
	for _, f := range files {
		l.testDir = "."
		if f.Path != "" {
			l.testDir = filepath.Dir(f.Path)
		}
		file, diags := hclsyntax.ParseConfig(f.Src, f.Name, hcl.InitialPos)
		l.diags = append(l.diags, diags...)
		if diags.HasErrors() {
			continue
		}
		content, diags := file.Body.Content(testFileSchema)
		l.diags = append(l.diags, diags...)
		for _, b := range content.Blocks {
			if !l.checkName("test", b.Labels[0], b, l.ruleDefs) {
				continue
			}
			if tc := l.testCase(s, b); tc != nil {
				cases = append(cases, tc)
			}
		}
	}
	sortDiags(l.diags)
	return cases, l.diags
}

func (l *loader) testCase(s *Set, b *hcl.Block) *TestCase {
	content, diags := b.Body.Content(testSchema)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return nil
	}
	before := len(l.diags)
	tc := &TestCase{Name: b.Labels[0], File: b.DefRange.Filename, Line: b.DefRange.Start.Line}
	at := content.Attributes
	if str, ok := l.str(at["expect"]); ok {
		switch str {
		case "allow":
			tc.Expect = Allow
		case "deny":
			tc.Expect = Deny
		default:
			l.errorf(at["expect"].Expr.Range(), "Invalid expectation", "expect must be \"allow\" or \"deny\".%s", didYouMean(str, []string{"allow", "deny"}))
		}
	}
	switch a, z := at["action"], at["authzen"]; {
	case a != nil && z != nil:
		l.errorf(z.NameRange, "Conflicting test attributes", "A test states either action or an authzen request (whose action it is), not both.")
	case a == nil && z == nil:
		l.errorf(b.DefRange, "Missing action", "A test needs action = \"...\" or an authzen = { subject, action, resource, context } request.")
	case a != nil:
		if str, ok := l.str(a); ok {
			act, err := ParseAction(str)
			if err != nil {
				l.errorf(a.Expr.Range(), "Invalid action", "%v.", err)
			}
			tc.Input.Action = act
		}
	}
	if a := at["arguments"]; a != nil {
		l.testArguments(tc, a)
	}
	if a := at["now"]; a != nil {
		if str, ok := l.str(a); ok {
			t, err := time.Parse(time.RFC3339, str)
			if err != nil {
				l.errorf(a.Expr.Range(), "Invalid time", "now must be an RFC 3339 time like \"2026-01-02T15:04:05Z\".")
			}
			tc.Input.Now = t
		}
	}
	l.expectRules(s, tc, at)
	for _, blk := range content.Blocks {
		switch blk.Type {
		case "peer":
			l.testPeer(tc, blk)
		case "request":
			l.testRequest(tc, blk)
		}
	}
	if z := at["authzen"]; z != nil && !hasErrors(l.diags[before:]) {
		l.testAuthZEN(tc, z)
	}
	if tc.Input.Peer.ID.IsZero() && tc.Input.Subject.Type == "" && !hasErrors(l.diags[before:]) {
		l.errorf(b.DefRange, "Missing peer block", "A test needs a peer block with spiffe_id or certificate, or an authzen request with a subject.")
	}
	if hasErrors(l.diags[before:]) {
		return nil
	}
	return tc
}

func (l *loader) expectRules(s *Set, tc *TestCase, at hcl.Attributes) {
	var items []strItem
	for _, name := range []string{"rule", "rules"} {
		if a := at[name]; a != nil {
			its, _ := l.strs(a)
			items = append(items, its...)
		}
	}
	names := make([]string, len(s.rules))
	for i, r := range s.rules {
		names[i] = r.ref.Name
	}
	for _, it := range items {
		if !slices.Contains(names, it.val) {
			l.errorf(it.rng, "Unknown rule", "There is no rule named %q.%s", it.val, didYouMean(it.val, names))
			continue
		}
		tc.Rules = append(tc.Rules, it.val)
	}
}

func (l *loader) testPeer(tc *TestCase, b *hcl.Block) {
	content, diags := b.Body.Content(testPeerSchema)
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return
	}
	if a := content.Attributes["certificate"]; a != nil {
		for _, other := range []string{"spiffe_id", "claims"} {
			if o := content.Attributes[other]; o != nil {
				l.errorf(o.NameRange, "Conflicting peer attributes", "certificate gives the SPIFFE ID and the claims: remove %s.", other)
				return
			}
		}
		l.testCertificate(tc, a)
		return
	}
	a := content.Attributes["spiffe_id"]
	if a == nil {
		l.errorf(b.DefRange, "Missing peer attribute", "A peer block needs spiffe_id (with optional claims) or certificate.")
		return
	}
	str, ok := l.str(a)
	if !ok {
		return
	}
	id, err := spiffeid.FromString(str)
	if err != nil {
		l.errorf(a.Expr.Range(), "Invalid SPIFFE ID", "%v.", err)
		return
	}
	tc.Input.Peer.ID = id
	if a := content.Attributes["claims"]; a != nil {
		tc.Input.Peer.Claims = l.testClaims(id, a)
	}
}

// testCertificate reads the peer from a PEM file (relative to the test
// file's folder): its SPIFFE ID and task claims, validated at the test's
// now, or at the certificate's NotBefore when the test sets no now (so
// that a saved SVID keeps working after its deadline; the decision still
// sees the test's time). The certificate chain is not verified: tests are
// about the policy, not about authentication.
func (l *loader) testCertificate(tc *TestCase, a *hcl.Attribute) {
	path, ok := l.str(a)
	if !ok {
		return
	}
	if !filepath.IsAbs(path) {
		path = filepath.Join(l.testDir, path)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		l.errorf(a.Expr.Range(), "Unreadable certificate", "%v.", err)
		return
	}
	p, err := PeerFromPEM(data, tc.Input.Now)
	if err != nil {
		l.errorf(a.Expr.Range(), "Invalid certificate", "%s: %v.", path, err)
		return
	}
	tc.Input.Peer = p
}

func (l *loader) testClaims(id spiffeid.ID, a *hcl.Attribute) *svid.Claims {
	v, ok := l.value(a)
	if !ok {
		return nil
	}
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		l.errorf(a.Expr.Range(), "Incorrect value type", "claims must be an object like { scope = [\"kb:read\"] }.")
		return nil
	}
	c := &svid.Claims{V: svid.Version, Model: DefaultTestModel, Prompt: DefaultTestPrompt,
		Principal: "spiffe://" + id.TrustDomain().Name() + "/user/test", Deadline: DefaultTestDeadline}
	c.Agent, c.Task, _ = svid.ParseTaskID(id)
	for it := v.ElementIterator(); it.Next(); {
		k, e := it.Element()
		key := k.AsString()
		if err := setClaim(c, key, e); err != nil {
			l.errorf(a.Expr.Range(), "Invalid claims", "%s: %v.%s", key, err, didYouMean(key, claimKeys))
		}
	}
	if err := c.Check(); err != nil {
		l.errorf(a.Expr.Range(), "Invalid claims", "%v.", err)
		return nil
	}
	return c
}

func setClaim(c *svid.Claims, key string, v cty.Value) error {
	strv := func(dst *string) error {
		if v.IsNull() || v.Type() != cty.String {
			return fmt.Errorf("want a string")
		}
		*dst = v.AsString()
		return nil
	}
	listv := func(dst *[]string) error {
		if v.IsNull() || !v.CanIterateElements() {
			return fmt.Errorf("want a list of strings")
		}
		*dst = []string{}
		for it := v.ElementIterator(); it.Next(); {
			_, e := it.Element()
			if e.IsNull() || e.Type() != cty.String {
				return fmt.Errorf("want a list of strings")
			}
			*dst = append(*dst, e.AsString())
		}
		return nil
	}
	switch key {
	case "agent":
		return strv(&c.Agent)
	case "task":
		return strv(&c.Task)
	case "model":
		return strv(&c.Model)
	case "prompt":
		return strv(&c.Prompt)
	case "principal":
		return strv(&c.Principal)
	case "scope":
		return listv(&c.Scope)
	case "chain":
		return listv(&c.Chain)
	case "deadline":
		var s string
		if err := strv(&s); err != nil {
			return err
		}
		t, err := time.Parse(time.RFC3339, s)
		c.Deadline = t
		return err
	}
	return fmt.Errorf("unknown claim")
}

func (l *loader) testRequest(tc *TestCase, b *hcl.Block) {
	content, diags := b.Body.Content(testReqSchema)
	l.diags = append(l.diags, diags...)
	if a := content.Attributes["headers"]; a != nil {
		if v, ok := l.value(a); ok && (v.Type().IsObjectType() || v.Type().IsMapType()) {
			tc.Input.Request.Headers = map[string][]string{}
			for it := v.ElementIterator(); it.Next(); {
				k, e := it.Element()
				if e.Type() != cty.String {
					l.errorf(a.Expr.Range(), "Incorrect value type", "header %q must be a string.", k.AsString())
					continue
				}
				name := strings.ToLower(k.AsString())
				tc.Input.Request.Headers[name] = append(tc.Input.Request.Headers[name], e.AsString())
			}
		} else if ok {
			l.errorf(a.Expr.Range(), "Incorrect value type", "headers must be an object of strings.")
		}
	}
	if a := content.Attributes["source"]; a != nil {
		if str, ok := l.str(a); ok {
			ap, err := ParseSource(str)
			if err != nil {
				l.errorf(a.Expr.Range(), "Invalid source", "%v.", err)
			}
			tc.Input.Request.Source = ap
		}
	}
}

// ParseSource parses "ip:port" or a bare IP (port 0).
func ParseSource(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("%q is not an address like 10.0.0.1:443 or 10.0.0.1", s)
	}
	return netip.AddrPortFrom(a, 0), nil
}

// testArguments sets an MCP test's arguments from an HCL object.
func (l *loader) testArguments(tc *TestCase, a *hcl.Attribute) {
	v, ok := l.value(a)
	if !ok {
		return
	}
	if !v.Type().IsObjectType() && !v.Type().IsMapType() {
		l.errorf(a.Expr.Range(), "Incorrect value type", "arguments must be an object, like { path = \"/srv/x\" }, not %s.", v.Type().FriendlyName())
		return
	}
	if tc.Input.Action.Kind != KindMCP {
		l.errorf(a.Expr.Range(), "Arguments without an MCP action", "arguments are an MCP tool call's: use them with action = \"mcp TOOL\".")
		return
	}
	js, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		l.errorf(a.Expr.Range(), "Invalid arguments", "%v.", err)
		return
	}
	tc.Input.Action.Arguments = string(js)
}

const actionSyntax = `want "http GET /path", "grpc /pkg.Svc/Method", "mcp TOOL [{JSON arguments}]", "mcp METHOD [NAME|URI]" or "kind name"`

// ParseAction parses the compact action syntax of tests and the CLI:
// "http METHOD /path", "grpc /pkg.Service/Method", "KIND NAME" for a
// generic kind, and for MCP: "mcp TOOL" (a tools/call), optionally followed
// by the arguments as a JSON object ("mcp write_file {"path":"/srv/x"}"),
// "mcp METHOD NAME" ("mcp prompts/get summarize", "mcp resources/read
// file:///srv/x") or "mcp METHOD" for a method without a name
// ("mcp tools/list"; MCP methods contain a "/", tool names cannot).
func ParseAction(s string) (Action, error) {
	f := strings.Fields(s)
	if len(f) == 0 {
		return Action{}, errors.New("empty action: " + actionSyntax)
	}
	if f[0] == KindMCP {
		return parseMCPAction(s)
	}
	switch {
	case f[0] == KindHTTP && len(f) == 3 && strings.HasPrefix(f[2], "/"):
		// Only a canonical path reaches the policy: the verifier refuses
		// the others, so deciding one would test what never happens.
		if err := checkPath(f[2]); err != nil {
			return Action{}, fmt.Errorf("%q: the path %v (the verifier refuses any other form: docs/policy.md#what-the-path-is)", s, err)
		}
		return Action{Kind: KindHTTP, Method: strings.ToUpper(f[1]), Path: f[2]}, nil
	case f[0] == KindGRPC && len(f) == 2 && strings.HasPrefix(f[1], "/"):
		if err := CheckGRPCMethodPattern(f[1]); err != nil {
			return Action{}, fmt.Errorf("%q: the method %v (the verifier refuses it: docs/policy.md#what-the-path-is)", s, err)
		}
		return Action{Kind: KindGRPC, Path: f[1]}, nil
	case f[0] != KindHTTP && f[0] != KindGRPC && len(f) == 2:
		return Action{Kind: f[0], Name: f[1]}, nil
	}
	return Action{}, fmt.Errorf("%q: %s", s, actionSyntax)
}

func parseMCPAction(s string) (Action, error) {
	head, args := s, ""
	if i := strings.IndexByte(s, '{'); i >= 0 {
		head, args = s[:i], strings.TrimSpace(s[i:])
	}
	f := strings.Fields(head)
	a := Action{Kind: KindMCP}
	switch {
	case len(f) == 2 && !strings.Contains(f[1], "/"):
		a.Method, a.Name = MCPToolsCall, f[1]
	case len(f) == 2:
		a.Method = f[1]
	case len(f) == 3 && strings.Contains(f[1], "/"):
		a.Method, a.Name = f[1], f[2]
	default:
		return Action{}, fmt.Errorf("%q: %s", s, actionSyntax)
	}
	if args != "" {
		if a.Method != MCPToolsCall {
			return Action{}, fmt.Errorf("%q: only a tool call (tools/call) takes arguments", s)
		}
		if err := CheckArguments(args); err != nil {
			return Action{}, fmt.Errorf("%q: arguments: %v", s, err)
		}
		a.Arguments = args
	}
	return a, nil
}

// RunTests decides every case and compares with its expectation.
func (s *Set) RunTests(cases []*TestCase) []TestResult {
	out := make([]TestResult, len(cases))
	for i, tc := range cases {
		in := tc.Input
		if in.Now.IsZero() {
			in.Now = time.Now()
		}
		d := s.Explain(&in)
		res := TestResult{Case: tc, Decision: d}
		got := Deny
		if d.Allow {
			got = Allow
		}
		switch {
		case got != tc.Expect:
			res.Failure = fmt.Sprintf("got %s, want %s (%s)", got, tc.Expect, d.Reason)
		default:
			for _, want := range tc.Rules {
				if !slices.Contains(d.RuleNames(), want) {
					res.Failure = fmt.Sprintf("%s by %s, want rule %q to decide", got, strings.Join(d.RuleNames(), ", "), want)
					break
				}
			}
		}
		out[i] = res
	}
	return out
}

// testAuthZEN reads a test's AuthZEN request: { subject = { type, id,
// properties }, action = { name, properties }, resource = { type, id,
// properties }, context = {…} }, the JSON request written in HCL. Without
// subject, the test's peer block is the subject (an authenticated agent
// task or workload); with one, it is an asserted subject and the test has
// no peer block.
func (l *loader) testAuthZEN(tc *TestCase, a *hcl.Attribute) {
	v, ok := l.value(a)
	if !ok {
		return
	}
	rng := a.Expr.Range()
	if !v.Type().IsObjectType() {
		l.errorf(rng, "Incorrect value type", "authzen must be an object like { subject = {…}, action = { name = \"…\" }, resource = {…} }.")
		return
	}
	for name := range v.Type().AttributeTypes() {
		if !contains([]string{"subject", "action", "resource", "context"}, name) {
			l.errorf(rng, "Unknown request member", "authzen.%s: a request has subject, action, resource and context.%s", name, didYouMean(name, []string{"subject", "action", "resource", "context"}))
			return
		}
	}
	member := func(name string) cty.Value {
		if v.Type().HasAttribute(name) {
			return v.GetAttr(name)
		}
		return cty.NilVal
	}
	if s := member("subject"); s != cty.NilVal {
		if !tc.Input.Peer.ID.IsZero() {
			l.errorf(rng, "Conflicting subject", "The test's peer block is the subject: remove authzen.subject, or the peer block for an asserted subject.")
			return
		}
		e, err := entityFromCty(s, "subject")
		if err == nil && (e.Type == SubjectAgentTask || e.Type == SubjectWorkload) {
			err = fmt.Errorf("authzen.subject: the type %s is reserved for authenticated peers: state it with a peer block", e.Type)
		}
		if err != nil {
			l.errorf(rng, "Invalid AuthZEN request", "%v.", err)
			return
		}
		tc.Input.Subject = e
	}
	if tc.Input.Peer.ID.IsZero() && tc.Input.Subject.Type == "" {
		l.errorf(rng, "Invalid AuthZEN request", "authzen.subject = { type = \"…\", id = \"…\" } is required, unless a peer block gives the subject.")
		return
	}
	act := member("action")
	if act == cty.NilVal || !act.Type().IsObjectType() || !act.Type().HasAttribute("name") || act.GetAttr("name").Type() != cty.String {
		l.errorf(rng, "Invalid AuthZEN request", "authzen.action = { name = \"…\" } is required.")
		return
	}
	tc.Input.Action = Action{Kind: KindAuthZEN, Name: act.GetAttr("name").AsString()}
	if act.Type().HasAttribute("properties") {
		tc.Input.ActionProperties = ctyJSON(act.GetAttr("properties"))
	}
	res := member("resource")
	if res == cty.NilVal {
		l.errorf(rng, "Invalid AuthZEN request", "authzen.resource = { type = \"…\", id = \"…\" } is required.")
		return
	}
	e, err := entityFromCty(res, "resource")
	if err != nil {
		l.errorf(rng, "Invalid AuthZEN request", "%v.", err)
		return
	}
	tc.Input.Resource = e
	if c := member("context"); c != cty.NilVal {
		tc.Input.Context = ctyJSON(c)
	}
}

func entityFromCty(v cty.Value, what string) (Entity, error) {
	var e Entity
	if !v.Type().IsObjectType() {
		return e, fmt.Errorf("authzen.%s must be an object with type and id", what)
	}
	for _, k := range []string{"type", "id"} {
		if !v.Type().HasAttribute(k) || v.GetAttr(k).Type() != cty.String || v.GetAttr(k).IsNull() || v.GetAttr(k).AsString() == "" {
			return e, fmt.Errorf("authzen.%s.%s is required (a non-empty string)", what, k)
		}
	}
	e.Type, e.ID = v.GetAttr("type").AsString(), v.GetAttr("id").AsString()
	if v.Type().HasAttribute("properties") {
		e.Properties = ctyJSON(v.GetAttr("properties"))
	}
	return e, nil
}

// ctyJSON is the JSON of an HCL value (nil for one that has none).
func ctyJSON(v cty.Value) []byte {
	b, err := ctyjson.Marshal(v, v.Type())
	if err != nil {
		return nil
	}
	return b
}
