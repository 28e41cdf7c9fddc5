package policies

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// peerMatcher is a compiled peer block. Every set field must hold.
type peerMatcher struct {
	ids, tds                      []glob
	agents, tasks, models, princs []glob
	prompts                       []string
	promptSet                     map[string]struct{} // for large prompt sets
	scopesAll, scopesAny          []string
	minDepth, maxDepth            int // -1: unset
	delegAllowed, delegForbidden  []glob
	delegatedBy                   []glob
	chainRoot                     []glob
	minRemaining                  time.Duration
	hasMinRemaining               bool
	needClaims                    bool
}

// notMatched is the mismatch reason when no explanation is wanted.
const notMatched = "no"

// mismatch returns "" when the peer matches, otherwise the first unmet
// requirement (a fixed string unless explain is set).
func (m *peerMatcher) mismatch(p *Peer, now time.Time, explain bool) string {
	if p.ID.IsZero() {
		return why(explain, "peer: no authenticated peer (the subject is asserted, not proven)")
	}
	if len(m.ids) > 0 && !matchAny(m.ids, p.ID.String()) {
		return why(explain, "peer.spiffe_id: %s matches none of %s", p.ID, rawList(m.ids))
	}
	if len(m.tds) > 0 && !matchAny(m.tds, p.ID.TrustDomain().Name()) {
		return why(explain, "peer.trust_domain: %q matches none of %s", p.ID.TrustDomain().Name(), rawList(m.tds))
	}
	if !m.needClaims {
		return ""
	}
	c := p.Claims
	if c == nil {
		return why(explain, "peer: not an agent task (no task claims)")
	}
	if len(m.agents) > 0 && !matchAny(m.agents, c.Agent) {
		return why(explain, "peer.agent: %q matches none of %s", c.Agent, rawList(m.agents))
	}
	if len(m.tasks) > 0 && !matchAny(m.tasks, c.Task) {
		return why(explain, "peer.task: %q matches none of %s", c.Task, rawList(m.tasks))
	}
	if len(m.models) > 0 && !matchAny(m.models, c.Model) {
		return why(explain, "peer.model: %q matches none of %s", c.Model, rawList(m.models))
	}
	if (m.prompts != nil || m.promptSet != nil) && !m.promptOK(c.Prompt) {
		return why(explain, "peer.prompt: %q is not in the approved set", c.Prompt)
	}
	if s := m.scopeMismatch(c.Scope, explain); s != "" {
		return s
	}
	if len(m.princs) > 0 && !matchAny(m.princs, c.Principal) {
		return why(explain, "peer.principal: %q matches none of %s", c.Principal, rawList(m.princs))
	}
	if s := m.chainMismatch(p, explain); s != "" {
		return s
	}
	if m.hasMinRemaining && c.Deadline.Sub(now) < m.minRemaining {
		return why(explain, "peer.min_deadline_remaining: %s left, want at least %s", c.Deadline.Sub(now).Round(time.Second), m.minRemaining)
	}
	return ""
}

func (m *peerMatcher) promptOK(p string) bool {
	if m.promptSet != nil {
		_, ok := m.promptSet[p]
		return ok
	}
	return slices.Contains(m.prompts, p)
}

func (m *peerMatcher) scopeMismatch(scope []string, explain bool) string {
	for _, s := range m.scopesAll {
		if !slices.Contains(scope, s) {
			return why(explain, "peer.scopes_all: scope %q not granted (has %q)", s, scope)
		}
	}
	if len(m.scopesAny) == 0 {
		return ""
	}
	for _, s := range m.scopesAny {
		if slices.Contains(scope, s) {
			return ""
		}
	}
	return why(explain, "peer.scopes_any: none of %q granted (has %q)", m.scopesAny, scope)
}

func (m *peerMatcher) chainMismatch(p *Peer, explain bool) string {
	chain := p.Claims.Chain
	if m.minDepth >= 0 && len(chain) < m.minDepth {
		return why(explain, "peer.min_depth: depth %d < %d", len(chain), m.minDepth)
	}
	if m.maxDepth >= 0 && len(chain) > m.maxDepth {
		return why(explain, "peer.max_depth: depth %d > %d", len(chain), m.maxDepth)
	}
	if len(m.delegAllowed) > 0 {
		for _, d := range chain {
			if !matchAny(m.delegAllowed, d) {
				return why(explain, "peer.delegators_allowed: delegator %s matches none of %s", d, rawList(m.delegAllowed))
			}
		}
	}
	for _, d := range chain {
		for i := range m.delegForbidden {
			if m.delegForbidden[i].match(d) {
				return why(explain, "peer.delegators_forbidden: delegator %s matches %q", d, m.delegForbidden[i].raw)
			}
		}
	}
	if len(m.delegatedBy) > 0 && !anyDelegator(m.delegatedBy, chain) {
		return why(explain, "peer.delegated_by: no delegator matches %s", rawList(m.delegatedBy))
	}
	if len(m.chainRoot) > 0 {
		root := p.ID.String()
		if len(chain) > 0 {
			root = chain[0]
		}
		if !matchAny(m.chainRoot, root) {
			return why(explain, "peer.chain_root: root %s matches none of %s", root, rawList(m.chainRoot))
		}
	}
	return ""
}

func why(explain bool, format string, args ...any) string {
	if !explain {
		return notMatched
	}
	return fmt.Sprintf(format, args...)
}

func rawList(gs []glob) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range gs {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", gs[i].raw)
	}
	b.WriteByte(']')
	return b.String()
}

func anyDelegator(gs []glob, chain []string) bool {
	for _, d := range chain {
		if matchAny(gs, d) {
			return true
		}
	}
	return false
}
