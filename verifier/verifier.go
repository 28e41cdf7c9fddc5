package verifier

import (
	"context"
	"net/netip"
	"strings"
	"time"

	"github.com/agentid/agentid/audit"
)

// Action is what a peer asks to do.
type Action struct {
	// Kind is "http", "grpc", "mcp" or an application's own kind.
	Kind string
	// Method is the HTTP method (http).
	Method string
	// Path is the HTTP path (http) or the full gRPC method
	// "/package.Service/Method" (grpc).
	Path string
	// Name is the MCP tool name (mcp) or the generic action name.
	Name string
}

// Request is the context of the action that policies may look at.
type Request struct {
	// Headers with lower-case names.
	Headers map[string][]string
	// Source is the peer's address, when known.
	Source netip.AddrPort
}

// Input is one question to the policy.
type Input struct {
	Peer    *Peer
	Action  Action
	Request Request
	Now     time.Time
}

// Decision is the policy's answer.
type Decision struct {
	Allow bool
	// Rules are the deciding rules, "name (file:line)".
	Rules []string
	// Reason is a short human-readable explanation.
	Reason string
	// PolicyDigest identifies the policy set that decided.
	PolicyDigest string
}

// Policy decides. Implementations must be safe for concurrent use; the
// policies package provides one over HCL policy directories.
type Policy interface {
	Decide(in *Input) Decision
}

// PolicyFunc adapts a function to Policy.
type PolicyFunc func(in *Input) Decision

// Decide calls f.
func (f PolicyFunc) Decide(in *Input) Decision { return f(in) }

// Verifier combines an Authenticator, a Policy and an optional audit log.
type Verifier struct {
	Auth   *Authenticator
	Policy Policy
	// Audit, when set, receives one record per decision.
	Audit *audit.Writer
	// Clock (default time.Now).
	Clock func() time.Time
}

// Check decides on an authenticated peer's action and records the decision.
func (v *Verifier) Check(ctx context.Context, p *Peer, a Action, r Request) Decision {
	now := time.Now
	if v.Clock != nil {
		now = v.Clock
	}
	d := v.Policy.Decide(&Input{Peer: p, Action: a, Request: r, Now: now()})
	v.record(p, a, d)
	return d
}

// Denied records a request denied before the policy was asked (the peer did
// not authenticate) and returns the decision.
func (v *Verifier) Denied(a Action, err error) Decision {
	d := Decision{Reason: err.Error()}
	v.record(nil, a, d)
	return d
}

func (v *Verifier) record(p *Peer, a Action, d Decision) {
	if v.Audit == nil {
		return
	}
	rec := audit.Record{
		Type:         audit.TypeDecision,
		Action:       &audit.Action{Kind: a.Kind, Method: a.Method, Path: a.Path, Name: a.Name},
		Decision:     decisionWord(d.Allow),
		Rules:        d.Rules,
		Reason:       d.Reason,
		PolicyDigest: d.PolicyDigest,
	}
	if p != nil {
		rec.Peer, rec.Serial, rec.JWTID = p.ID.String(), p.Serial, p.JWTID
		if p.Claims != nil {
			rec.Claims = p.Claims.AppendJSON(nil)
		}
	}
	_ = v.Audit.Append(rec) // a closed log is reported by the daemon's health check
}

func decisionWord(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

// lowerHeaders copies headers with lower-case names.
func lowerHeaders(h map[string][]string) map[string][]string {
	out := make(map[string][]string, len(h))
	for k, v := range h {
		out[strings.ToLower(k)] = v
	}
	return out
}
