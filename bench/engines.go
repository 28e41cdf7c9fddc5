package bench

import (
	"context"
	"fmt"
	"strings"

	"github.com/cedar-policy/cedar-go"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/policies/policygen"
)

// Rego renders the generated rules as one Rego module. Every rule checks
// the method with equality and the SPIFFE ID with a single-segment
// glob.match, which OPA's rule indexer understands (it does not index
// "**" patterns, used for the path).
func Rego(rules []policygen.Rule) string {
	var b strings.Builder
	b.WriteString("package authz\n\ndefault allow := false\n\nallow if {\n\tcount(deny_rules) == 0\n\tcount(allow_rules) > 0\n}\n\n")
	for _, r := range rules {
		set := "allow_rules"
		if r.Deny {
			set = "deny_rules"
		}
		fmt.Fprintf(&b, "%s contains %q if {\n", set, r.Name)
		if r.Method != "" {
			fmt.Fprintf(&b, "\tinput.method == %q\n", r.Method)
		}
		fmt.Fprintf(&b, "\tglob.match(%q, [\"/\"], input.path)\n", r.PathPrefix+"**")
		fmt.Fprintf(&b, "\tglob.match(%q, [\"/\"], input.peer.id)\n", r.IDPattern)
		if !r.Deny {
			fmt.Fprintf(&b, "\t%q in input.peer.scopes\n\tinput.peer.depth <= %d\n", r.Scope, r.MaxDepth)
		}
		b.WriteString("}\n\n")
	}
	return b.String()
}

// Cedar renders the generated rules as Cedar policies over the request
// context ("like" with a trailing * is the prefix match of "/**").
func Cedar(rules []policygen.Rule) string {
	var b strings.Builder
	for _, r := range rules {
		id := r.IDPattern // a task ID has no "/": Cedar's * matches like ours here
		path := r.PathPrefix + "*"
		if r.Deny {
			fmt.Fprintf(&b, "@id(%q)\nforbid (principal, action, resource)\nwhen { context.id like %q && context.path like %q };\n\n", r.Name, id, path)
			continue
		}
		act := "action"
		if r.Method != "" {
			act = fmt.Sprintf("action == Action::%q", r.Method)
		}
		fmt.Fprintf(&b, "@id(%q)\npermit (principal, %s, resource)\nwhen {\n  context.id like %q &&\n  context.path like %q &&\n  context.scopes.contains(%q) &&\n  context.depth <= %d\n};\n\n",
			r.Name, act, id, path, r.Scope, r.MaxDepth)
	}
	return b.String()
}

// OPA is a prepared Rego query with its inputs converted once.
type OPA struct {
	query rego.PreparedEvalQuery
}

// NewOPA compiles the Rego module.
func NewOPA(module string) (*OPA, error) {
	q, err := rego.New(rego.Query("data.authz.allow"), rego.Module("authz.rego", module)).PrepareForEval(context.Background())
	if err != nil {
		return nil, err
	}
	return &OPA{query: q}, nil
}

// OPAInput converts a request to an AST value (done once, outside the
// timed loop: OPA's best case).
func OPAInput(r policygen.Request) ast.Value {
	scopes := make([]any, len(r.Scopes))
	for i, s := range r.Scopes {
		scopes[i] = s
	}
	v, err := ast.InterfaceToValue(map[string]any{
		"method": r.Method, "path": r.Path,
		"peer": map[string]any{"id": r.ID(), "scopes": scopes, "depth": r.Depth},
	})
	if err != nil {
		panic(err)
	}
	return v
}

// Decide evaluates one request.
func (o *OPA) Decide(ctx context.Context, in ast.Value) (bool, error) {
	rs, err := o.query.Eval(ctx, rego.EvalParsedInput(in))
	if err != nil {
		return false, err
	}
	if len(rs) != 1 || len(rs[0].Expressions) != 1 {
		return false, fmt.Errorf("opa: unexpected result %v", rs)
	}
	allow, _ := rs[0].Expressions[0].Value.(bool)
	return allow, nil
}

// CedarRequest converts a request for cedar-go.
func CedarRequest(r policygen.Request) cedar.Request {
	scopes := make([]cedar.Value, len(r.Scopes))
	for i, s := range r.Scopes {
		scopes[i] = cedar.String(s)
	}
	return cedar.Request{
		Principal: cedar.NewEntityUID("Agent", cedar.String(r.ID())),
		Action:    cedar.NewEntityUID("Action", cedar.String(r.Method)),
		Resource:  cedar.NewEntityUID("Path", cedar.String(r.Path)),
		Context: cedar.NewRecord(cedar.RecordMap{
			"id": cedar.String(r.ID()), "path": cedar.String(r.Path),
			"scopes": cedar.NewSet(scopes...), "depth": cedar.Long(r.Depth),
		}),
	}
}

// Engines holds the three engines compiled from the same rules.
type Engines struct {
	Ours  *policies.Set
	OPA   *OPA
	Cedar *cedar.PolicySet
}

// Compile builds all three engines for n generated rules.
func Compile(n int) (*Engines, error) {
	rules := policygen.Rules(n)
	set, diags := policies.LoadFiles([]policies.File{{Name: "gen.hcl", Src: []byte(policygen.HCL(rules))}})
	if diags.HasErrors() {
		return nil, diags
	}
	o, err := NewOPA(Rego(rules))
	if err != nil {
		return nil, err
	}
	ps, err := cedar.NewPolicySetFromBytes("gen.cedar", []byte(Cedar(rules)))
	if err != nil {
		return nil, err
	}
	return &Engines{Ours: set, OPA: o, Cedar: ps}, nil
}
