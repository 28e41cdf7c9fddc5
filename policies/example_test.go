package policies_test

import (
	"fmt"
	"os"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid"
)

func Example() {
	set, diags := policies.LoadFiles([]policies.File{{Name: "kb.hcl", Src: []byte(`
rule "kb-read" {
  effect = "allow"
  reason = "researchers may read the knowledge base"
  peer {
    spiffe_id  = ["spiffe://example.org/agent/researcher/**"]
    scopes_all = ["kb:read"]
    max_depth  = 2
  }
  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/**"]
    }
  }
}
`)}})
	if diags.HasErrors() {
		fmt.Println(diags)
		return
	}
	in := &policies.Input{
		Peer: policies.Peer{
			ID:     spiffeid.RequireFromString("spiffe://example.org/agent/researcher/task/T-42"),
			Claims: &svid.Claims{V: 1, Agent: "researcher", Task: "T-42", Scope: []string{"kb:read"}},
		},
		Action: policies.Action{Kind: policies.KindHTTP, Method: "GET", Path: "/kb/docs/1"},
		Now:    time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
	}
	d := set.Decide(in)
	fmt.Println(d.Allow, d.Rules[0], d.Reason)

	in.Action.Method = "DELETE"
	d = set.Decide(in)
	fmt.Println(d.Allow, d.Reason)
	// Output:
	// true kb-read (kb.hcl:2) researchers may read the knowledge base
	// false no rule allows this request (default deny)
}

func ExampleSet_Explain() {
	set, _ := policies.LoadFiles([]policies.File{{Name: "p.hcl", Src: []byte(`
rule "no-shell" {
  effect = "deny"
  action {
    mcp { tools = ["shell"] }
  }
}
rule "tools" {
  effect = "allow"
  peer { scopes_any = ["tools:use"] }
}
`)}})
	d := set.Explain(&policies.Input{
		Peer:   policies.Peer{ID: spiffeid.RequireFromString("spiffe://example.org/service/web")},
		Action: policies.Action{Kind: policies.KindMCP, Name: "search"},
	})
	for _, t := range d.Trace {
		fmt.Println(t)
	}
	// Output:
	// no  deny  no-shell (p.hcl:2): action: mcp search matches none of mcp tools ["shell"]
	// no  allow tools (p.hcl:8): peer: not an agent task (no task claims)
}

func ExampleStore() {
	var store policies.Store // zero value: no set, everything denied
	fmt.Println(store.Decide(&policies.Input{}).Reason)

	diags := store.Reload("testdata/diags") // has errors: nothing is installed
	fmt.Println(diags.HasErrors(), store.Set() == nil)

	diags = store.Reload("../examples/policies")
	fmt.Println(diags.HasErrors(), store.Set() != nil)

	diags = store.Reload("testdata/diags") // the last good set stays
	fmt.Println(diags.HasErrors(), store.Set() != nil)
	// Output:
	// no policy loaded
	// true true
	// false true
	// true true
}

func ExampleParseAction() {
	for _, s := range []string{"http GET /kb/docs/1", "grpc /kb.v1.KB/Get", "mcp search_docs",
		`mcp write_file {"path": "/srv/agents/T-1/notes.md"}`, "mcp resources/read file:///srv/a.md", "queue orders.created"} {
		a, _ := policies.ParseAction(s)
		fmt.Printf("%+v\n", a)
	}
	// Output:
	// {Kind:http Method:GET Path:/kb/docs/1 Name: Arguments:}
	// {Kind:grpc Method: Path:/kb.v1.KB/Get Name: Arguments:}
	// {Kind:mcp Method:tools/call Path: Name:search_docs Arguments:}
	// {Kind:mcp Method:tools/call Path: Name:write_file Arguments:{"path": "/srv/agents/T-1/notes.md"}}
	// {Kind:mcp Method:resources/read Path: Name:file:///srv/a.md Arguments:}
	// {Kind:queue Method: Path: Name:orders.created Arguments:}
}

// PeerFromPEM asks the policy about a saved X.509-SVID, as `agentid policy
// eval --peer` and test cases with `certificate` do.
func ExamplePeerFromPEM() {
	data, err := os.ReadFile("../examples/policies/testdata/researcher-T-42.pem")
	if err != nil {
		panic(err)
	}
	now := time.Date(2026, 11, 29, 9, 30, 0, 0, time.UTC)
	peer, err := policies.PeerFromPEM(data, now)
	if err != nil {
		panic(err)
	}
	fmt.Println(peer.ID)
	fmt.Println(peer.Claims.Agent, peer.Claims.Scope, peer.Claims.Depth())

	set, diags := policies.Load("../examples/policies")
	if diags.HasErrors() {
		panic(diags)
	}
	d := set.Decide(&policies.Input{Peer: peer, Action: policies.Action{Kind: "http", Method: "GET", Path: "/kb/docs/7"}, Now: now})
	fmt.Println(d.Allow, d.RuleNames())
	// Output:
	// spiffe://example.org/agent/researcher/task/T-42
	// researcher [kb:read] 1
	// true [kb-read]
}

// CheckPathPattern is what loading checks in every http paths pattern:
// the verifier decides only canonical paths, so a pattern spelled any
// other way could never match.
func ExampleCheckPathPattern() {
	for _, p := range []string{"/kb/my%20docs/**", "/kb/my docs/**", "/kb/café/**", "/kb/%40ops/*", "/kb/x/../keys", "/kb/a%2Fb"} {
		fmt.Printf("%s: %v\n", p, policies.CheckPathPattern(p))
	}
	// Output:
	// /kb/my%20docs/**: <nil>
	// /kb/my docs/**: is not canonical: write "/kb/my%20docs/**"
	// /kb/café/**: is not canonical: write "/kb/caf%C3%A9/**"
	// /kb/%40ops/*: is not canonical: write "/kb/@ops/*"
	// /kb/x/../keys: is not canonical: write "/kb/keys"
	// /kb/a%2Fb: can never match: the verifier refuses "%2F" in any form
}
