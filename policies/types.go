package policies

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"

	"github.com/agentid/agentid/svid"
)

// Peer is the authenticated caller.
type Peer struct {
	// ID is the caller's SPIFFE ID.
	ID spiffeid.ID
	// Claims are the caller's task claims; nil when the caller is not an
	// agent task (a plain SVID). Such a peer only matches rules whose peer
	// block requires no claims.
	Claims *svid.Claims
}

// Action kinds with dedicated matchers. Any other kind is generic.
const (
	KindHTTP = "http"
	KindGRPC = "grpc"
	KindMCP  = "mcp"
	// KindAuthZEN is an AuthZEN action: Name is the action's name
	// (rules match it with an authzen { names = [...] } block).
	KindAuthZEN = "authzen"
)

// Subject types of authenticated peers. A subject that a PEP asserts
// (Input.Subject) cannot take them.
const (
	// SubjectAgentTask is the subject type of a peer with task claims.
	SubjectAgentTask = "agent_task"
	// SubjectWorkload is the subject type of a plain SVID (no claims).
	SubjectWorkload = "workload"
)

// Entity is an AuthZEN subject or resource: a type, an id scoped to the
// type, and properties.
type Entity struct {
	Type, ID string
	// Properties is a JSON object, or nil for none. Conditions read it as
	// subject.properties / resource.properties.
	Properties json.RawMessage
}

// Action is what the peer asks to do.
type Action struct {
	// Kind is "http", "grpc", "mcp" or an application's own kind.
	Kind string
	// Method is the HTTP method (http).
	Method string
	// Path is the HTTP path (http) or the full gRPC method
	// "/package.Service/Method" (grpc).
	Path string
	// Name is the generic action name, or for mcp: the tool name
	// (tools/call), the prompt name (prompts/get) or the resource URI
	// (resources/read, resources/subscribe, resources/unsubscribe).
	Name string
	// Arguments is the JSON text of an MCP tool call's arguments object
	// ("" when none were sent). Conditions read it as action.arguments,
	// decoded strictly (a duplicate or case-variant key, or text that is
	// not one JSON object, makes every condition that reads it an error);
	// front-ends should refuse such arguments before asking.
	Arguments string
}

// MCP methods with dedicated matchers (the mcp action block's tools,
// prompts and resources).
const (
	MCPToolsCall    = "tools/call"
	MCPPromptsGet   = "prompts/get"
	MCPResourceRead = "resources/read"
)

// Request is the context of the action that conditions may look at.
type Request struct {
	// Headers by name, in any case (http.Header works as it is);
	// conditions see them with lower-case names.
	Headers map[string][]string
	// HeaderMap holds single-valued headers instead (Envoy ext_authz's
	// map, read as it is): used when Headers is empty.
	HeaderMap map[string]string
	// Source is the peer's address, when known.
	Source netip.AddrPort
}

// Input is one question to a Set.
type Input struct {
	// Peer is the authenticated caller; zero (no ID) when the subject is
	// asserted instead.
	Peer Peer
	// Subject, when its Type is set, is a subject that the PEP asserts
	// (an AuthZEN subject that is not proven): it matches subject blocks
	// and conditions' subject, never a peer block. Leave it zero for an
	// authenticated peer: the subject is then the peer (type agent_task or
	// workload, id its SPIFFE ID). The types of authenticated peers cannot
	// be asserted: such an input is denied.
	Subject Entity
	// Resource is the AuthZEN resource (zero when there is none).
	Resource Entity
	Action   Action
	// ActionProperties and Context are JSON objects (nil: none), read by
	// conditions as action.properties and context.
	ActionProperties json.RawMessage
	Context          json.RawMessage
	Request          Request
	// Now is the decision time; the zero value means time.Now().
	Now time.Time
	// AnyArguments asks whether the action could be allowed with some
	// arguments (to filter the tools an MCP client is shown): the action's
	// Arguments are unknown, a condition whose value depends on them
	// counts as met in an allow rule and as unmet in a deny rule.
	AnyArguments bool
}

// Effect is what a matching rule decides.
type Effect uint8

// Effects. Deny wins over allow; nothing matching means deny.
const (
	Deny Effect = iota
	Allow
)

func (e Effect) String() string {
	if e == Allow {
		return "allow"
	}
	return "deny"
}

// RuleRef names a rule and where it is defined.
type RuleRef struct {
	Name   string
	Effect Effect
	File   string // as given to Load, relative to the policy directory
	Line   int
}

// String is "name (file:line)".
func (r RuleRef) String() string {
	return r.Name + " (" + r.File + ":" + strconv.Itoa(r.Line) + ")" // on every audited decision: no fmt
}

// Decision is a Set's answer.
type Decision struct {
	Allow bool
	// Rules are the deciding rules: every matching deny rule for a deny, the
	// first matching allow rule (in load order) for an allow, none for the
	// default deny. Explain lists every matching allow rule. The slice may
	// be shared with the Set: do not modify it.
	Rules []RuleRef
	// Reason is the deciding rule's reason text, or why nothing matched.
	Reason string
	// Errors are condition evaluation errors, "rule: message". An error
	// makes an allow rule not match and a deny rule match (fail closed).
	Errors []string
	// Trace lists every rule considered, in trace mode (Explain) only.
	Trace []TraceEntry
	// Limit is set when the decision is a refusal of an over-long input,
	// decided before any rule (Reason is then Limit.Error()).
	Limit *LimitError
	// RequireSignature: the allow came from a rule with
	// require_signature = true, or from a Set whose files say so at the
	// top level. The verifier then refuses the request unless it carries
	// a verified agent signature (svid/httpsig).
	RequireSignature bool

	ruleStrs []string // Rules rendered, when the Set had them ready
}

// RuleStrings renders the deciding rules as "name (file:line)". The slice
// may be shared with the Set: do not modify it.
func (d Decision) RuleStrings() []string {
	if len(d.ruleStrs) == len(d.Rules) && len(d.Rules) > 0 {
		return d.ruleStrs
	}
	out := make([]string, len(d.Rules))
	for i, r := range d.Rules {
		out[i] = r.String()
	}
	return out
}

// RuleNames returns the names of the deciding rules.
func (d Decision) RuleNames() []string {
	names := make([]string, len(d.Rules))
	for i, r := range d.Rules {
		names[i] = r.Name
	}
	return names
}

// TraceEntry tells whether one rule matched and why.
type TraceEntry struct {
	Rule    RuleRef
	Matched bool
	// Why is the first unmet requirement, or "matched".
	Why string
}

func (t TraceEntry) String() string {
	mark := "no "
	if t.Matched {
		mark = "YES"
	}
	return fmt.Sprintf("%s %-5s %s: %s", mark, t.Rule.Effect, t.Rule, t.Why)
}
