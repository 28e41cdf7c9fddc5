// Package policygen generates the synthetic policy sets and requests used
// to benchmark the policy engine against OPA and Cedar: n rules, of which
// a tenth deny, the rest allow "if the SPIFFE ID pattern matches, the
// scope contains X and the depth is at most k".
package policygen

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
)

// TrustDomain of every generated identity.
const TrustDomain = "example.org"

// Rule is one generated rule.
type Rule struct {
	Name string
	Deny bool
	// IDPattern is a SPIFFE ID pattern ".../agent/<name>/task/*".
	IDPattern string
	// Scope must be granted (allow rules only).
	Scope string
	// MaxDepth bounds the delegation depth (allow rules only).
	MaxDepth int
	// Method is the HTTP method, "" for any.
	Method string
	// PathPrefix: the rule matches paths PathPrefix + anything.
	PathPrefix string
}

// Rules returns n rules: n/10 (at least one) deny rules and the rest allow.
func Rules(n int) []Rule {
	nDeny := max(n/10, 1)
	out := make([]Rule, 0, n)
	for i := range n - nDeny {
		out = append(out, Rule{
			Name: fmt.Sprintf("allow-%d", i), IDPattern: agentPattern(i),
			Scope: fmt.Sprintf("svc%d:read", i), MaxDepth: i%3 + 1,
			Method: "GET", PathPrefix: fmt.Sprintf("/svc%d/", i),
		})
	}
	for j := range nDeny {
		i := j * 10
		out = append(out, Rule{
			Name: fmt.Sprintf("deny-%d", j), Deny: true, IDPattern: agentPattern(i),
			PathPrefix: fmt.Sprintf("/svc%d/admin/", i),
		})
	}
	return out
}

func agentPattern(i int) string {
	return fmt.Sprintf("spiffe://%s/agent/agent-%d/task/*", TrustDomain, i)
}

// HCL renders rules in the policy language.
func HCL(rules []Rule) string {
	var b strings.Builder
	for _, r := range rules {
		effect := "allow"
		if r.Deny {
			effect = "deny"
		}
		fmt.Fprintf(&b, "rule %q {\n  effect = %q\n  peer {\n    spiffe_id = [%q]\n", r.Name, effect, r.IDPattern)
		if !r.Deny {
			fmt.Fprintf(&b, "    scopes_all = [%q]\n    max_depth  = %d\n", r.Scope, r.MaxDepth)
		}
		b.WriteString("  }\n  action {\n    http {\n")
		if r.Method != "" {
			fmt.Fprintf(&b, "      methods = [%q]\n", r.Method)
		}
		fmt.Fprintf(&b, "      paths   = [%q]\n    }\n  }\n}\n\n", r.PathPrefix+"**")
	}
	return b.String()
}

// Request is one generated request.
type Request struct {
	Agent, Task  string
	Scopes       []string
	Depth        int
	Method, Path string
}

// ID is the request's peer SPIFFE ID.
func (r Request) ID() string {
	return fmt.Sprintf("spiffe://%s/agent/%s/task/%s", TrustDomain, r.Agent, r.Task)
}

// Chain is the delegation chain of the request's depth.
func (r Request) Chain() []string {
	chain := make([]string, r.Depth)
	for i := range chain {
		chain[i] = fmt.Sprintf("spiffe://%s/agent/planner-%d/task/P-%d", TrustDomain, i, i)
	}
	return chain
}

// Now is the decision time of generated requests.
var Now = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

// Input converts the request for the policies engine.
func (r Request) Input() *policies.Input {
	c := &svid.Claims{
		V: svid.Version, Agent: r.Agent, Task: r.Task, Model: "openai/gpt-4o",
		Prompt: svid.PromptDigest([]byte("prompt")), Scope: r.Scopes,
		Principal: "spiffe://" + TrustDomain + "/user/alice", Chain: r.Chain(),
		Deadline: Now.Add(time.Hour),
	}
	return &policies.Input{
		Peer:   policies.Peer{ID: spiffeid.RequireFromString(r.ID()), Claims: c},
		Action: policies.Action{Kind: policies.KindHTTP, Method: r.Method, Path: r.Path},
		Now:    Now,
	}
}

// Requests returns count requests against a set of n rules, a mix of
// allowed and denied ones, deterministic for a seed.
func Requests(n, count int, seed uint64) []Request {
	rng := rand.New(rand.NewPCG(seed, 42))
	nAllow := n - max(n/10, 1)
	out := make([]Request, count)
	for k := range out {
		i := rng.IntN(nAllow)
		r := Request{Agent: fmt.Sprintf("agent-%d", i), Task: fmt.Sprintf("T-%d", k), Method: "GET",
			Path: fmt.Sprintf("/svc%d/docs/%d", i, k), Depth: rng.IntN(4)}
		r.Scopes = []string{fmt.Sprintf("svc%d:read", i), "kb:read"}
		switch rng.IntN(10) {
		case 0:
			r.Agent = fmt.Sprintf("agent-%d", rng.IntN(nAllow))
		case 1:
			r.Scopes = r.Scopes[1:]
		case 2:
			r.Method = "POST"
		case 3:
			r.Path = fmt.Sprintf("/svc%d/admin/%d", i/10*10, k)
			r.Agent = fmt.Sprintf("agent-%d", i/10*10)
			r.Scopes[0] = fmt.Sprintf("svc%d:read", i/10*10)
		}
		out[k] = r
	}
	return out
}
