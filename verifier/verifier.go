package verifier

import (
	"context"
	"strings"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/policies"
)

// Action, Request and Input are the policy engine's: the verifier asks
// policies the same questions the CLI's "agentid policy eval" does.
type (
	Action  = policies.Action
	Request = policies.Request
)

// Decision is the policy's answer plus the digest of the policy set that
// gave it (for the audit log).
type Decision struct {
	policies.Decision
	PolicyDigest string
}

// Explanation is the reason followed by the deciding rules, as denials
// show it: "opening a ticket needs tickets:write (rule t (a.hcl:3))".
func (d Decision) Explanation() string {
	if len(d.Rules) == 0 {
		return d.Reason
	}
	return d.Reason + " (rule " + strings.Join(d.RuleStrings(), ", ") + ")"
}

// Policy decides. *policies.Set and *policies.Store (through StorePolicy)
// implement it; implementations must be safe for concurrent use.
type Policy interface {
	Decide(in *policies.Input) policies.Decision
}

// PolicyFunc adapts a function to Policy.
type PolicyFunc func(in *policies.Input) policies.Decision

// Decide calls f.
func (f PolicyFunc) Decide(in *policies.Input) policies.Decision { return f(in) }

// digester is implemented by policies that can name their version.
type digester interface{ Digest() string }

// StorePolicy decides with the current Set of a Store, so that a reload
// takes effect on the next request; with no Set loaded it denies.
type StorePolicy struct{ Store *policies.Store }

// Decide implements Policy.
func (p StorePolicy) Decide(in *policies.Input) policies.Decision {
	set := p.Store.Set()
	if set == nil {
		return policies.Decision{Reason: "no policy loaded"}
	}
	return set.Decide(in)
}

// Digest is the current Set's digest.
func (p StorePolicy) Digest() string {
	if set := p.Store.Set(); set != nil {
		return set.Digest()
	}
	return ""
}

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
	d := Decision{Decision: v.Policy.Decide(&policies.Input{Peer: policies.Peer{ID: p.ID, Claims: p.Claims}, Action: a, Request: r, Now: now()})}
	if dg, ok := v.Policy.(digester); ok {
		d.PolicyDigest = dg.Digest()
	}
	v.record(p, a, d)
	return d
}

// Denied records a request denied before the policy was asked (the peer did
// not authenticate) and returns the decision.
func (v *Verifier) Denied(a Action, err error) Decision {
	d := Decision{Decision: policies.Decision{Reason: err.Error()}}
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
		Rules:        d.RuleStrings(),
		Reason:       d.Reason,
		PolicyDigest: d.PolicyDigest,
	}
	if p != nil {
		rec.Peer, rec.Serial, rec.JWTID = p.ID.String(), p.Serial, p.JWTID
		rec.Claims = p.ClaimsJSON
		if rec.Claims == nil && p.Claims != nil { // a Peer built by hand
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
