package registrar

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// CreateChild creates a task delegated by the task parent. The parent's
// claims come from its registration entry, never from the caller, and the
// child is attenuated: its scopes are a subset of the parent's, its
// deadline is no later (default: the parent's), its principal is the
// parent's, its depth is within the max_depth of every agent of the chain,
// no agent appears twice in the chain, the child agent's policy names the
// parent's agent among its delegators, and the child's model, prompt,
// scopes, principal and TTL pass the child agent's rule. The child's chain
// is the parent's chain followed by the parent's SPIFFE ID. The child keeps
// the parent's extra (operator-set) selectors; req.Selectors may only
// repeat them unless req.Operator is set. req.ExeSHA256 may pin the
// child's executable.
//
// After its write the child re-reads the entry of every member of its
// chain: if the parent's entry or an ancestor's is gone (revoked while the
// child was being created), the child's entry is deleted again and
// ReasonParentNotFound returned. With Revoke listing again until it finds
// nothing, a revoke cannot miss a child created concurrently.
func (r *Registrar) CreateChild(ctx context.Context, parent spiffeid.ID, req Request) (Task, error) {
	p, now := r.currentPolicy(), r.cfg.now()
	if p == nil {
		return Task{}, errNoPolicy
	}
	pt, err := r.parentTask(ctx, parent, now)
	if err != nil {
		return Task{}, err
	}
	if err := sameIncarnation(req.CallerIssued, pt); err != nil {
		return Task{}, err
	}
	if !req.Operator {
		// The child keeps the parent's operator-set selectors; the
		// delegating agent may only pin the child's executable.
		if err := sameSelectors(req.Selectors, pt); err != nil {
			return Task{}, err
		}
		req.Selectors = pt.Selectors
	}
	c, extra, err := r.claims(req)
	if err != nil {
		return Task{}, err
	}
	if c.Principal == "" {
		c.Principal = pt.Claims.Principal
	}
	c.Chain = append(slices.Clone(pt.Claims.Chain), parent.String())
	if c.Deadline, err = deadline(req, now, pt.Claims.Deadline); err != nil {
		return Task{}, err
	}
	if c.Depth() > svid.MaxChain {
		return Task{}, refuse(ReasonDepthExceeded, "", "depth %d exceeds the contract's limit %d", c.Depth(), svid.MaxChain)
	}
	if err := c.Check(); err != nil {
		return Task{}, &Error{Reason: ReasonInvalidRequest, Err: err}
	}
	rule, err := attenuate(p, pt, c)
	if err != nil {
		return Task{}, err
	}
	if err := r.admit(rule, c, now); err != nil {
		return Task{}, err
	}
	node, err := r.childNode(req, pt)
	if err != nil {
		return Task{}, err
	}
	self, err := svid.TaskID(r.td, c.Agent, c.Task)
	if err != nil {
		return Task{}, &Error{Reason: ReasonInvalidRequest, Err: err}
	}
	if err := r.delegationRoom(ctx, p, c.Chain, self, ""); err != nil {
		return Task{}, err
	}
	if req.BeforeWrite != nil {
		if err := req.BeforeWrite(); err != nil {
			return Task{}, err
		}
	}
	child, err := r.put(ctx, c, node, extra, now, req.TTL == 0)
	if err != nil {
		return Task{}, err
	}
	if err := r.chainStillThere(ctx, pt, child); err != nil {
		return Task{}, err
	}
	// Two children created at once may both have found room for one:
	// counted again with this one's entry, an excess is taken back.
	if err := r.delegationRoom(ctx, p, c.Chain, self, child.EntryID); err != nil {
		if _, derr := r.delete(ctx, []string{child.EntryID}); derr != nil {
			return Task{}, errors.Join(err, derr)
		}
		return Task{}, err
	}
	return child, nil
}

// delegationRoom refuses a child (SPIFFE ID self) whose chain has a
// member with max_delegated live tasks below it (at any depth) already.
// Before the write (mine empty) the other live tasks are counted — not
// an entry of self: an idempotent retry returns it. After the write
// (mine: the child's entry) the child keeps its room only if at most
// max_delegated of the entries below the member, itself included, were
// created before it or with it (created_at, then entry ID): of two
// children racing for the last room one stays.
func (r *Registrar) delegationRoom(ctx context.Context, p *Policy, chain []string, self spiffeid.ID, mine string) error {
	if len(chain) == 0 {
		return nil
	}
	// Every task of a tree carries its root as the entry's hint; entries
	// written before hints existed are found by their delegator selectors.
	tree, err := r.list(ctx, &entryv1.ListEntriesRequest_Filter{ByHint: wrapperspb.String(chain[0])})
	if err != nil {
		return err
	}
	m := &types.SelectorMatch{Match: types.SelectorMatch_MATCH_ANY}
	for i, member := range chain {
		m.Selectors = append(m.Selectors, &types.Selector{Type: r.cfg.selectorType, Value: delegatorSelector(i, member)})
	}
	old, err := r.list(ctx, &entryv1.ListEntriesRequest_Filter{BySelectors: m})
	if err != nil {
		return err
	}
	seen := make(map[string]bool, len(tree))
	var own *types.Entry
	live := tree[:0:0]
	now := r.cfg.now().Unix()
	for _, e := range append(tree, old...) {
		if seen[e.GetId()] || (e.GetExpiresAt() != 0 && e.GetExpiresAt() <= now) {
			continue // listed twice, or past its deadline: not live
		}
		seen[e.GetId()] = true
		if e.GetId() == mine {
			own = e
		}
		live = append(live, e)
	}
	for i, member := range chain {
		id, err := spiffeid.FromString(member)
		agent, _, ok := svid.ParseTaskID(id)
		if err != nil || !ok {
			return refuse(ReasonParentInvalid, "", "chain[%d] %q is not a task SPIFFE ID", i, member)
		}
		rule, ok := p.Rule(agent)
		if !ok {
			return refuse(ReasonUnknownAgent, "", "no policy block for agent %q of the chain (chain[%d])", agent, i)
		}
		below := 0
		for _, e := range live {
			if !r.names(e, member, map[int]bool{i: true}) {
				continue
			}
			switch {
			case own != nil: // after the write: the entries up to the child's
				if e.GetCreatedAt() < own.GetCreatedAt() || (e.GetCreatedAt() == own.GetCreatedAt() && e.GetId() <= own.GetId()) {
					below++
				}
			default: // before: the others
				if id, _ := idFromProto(e.GetSpiffeId()); id != self {
					below++
				}
			}
		}
		if own != nil {
			below-- // the child itself
		}
		if below >= rule.MaxDelegated {
			return refuse(ReasonDelegationLimit, rule.Pos, "%s has %d live tasks below it, max_delegated %d of agent %q", member, below, rule.MaxDelegated, agent)
		}
	}
	return nil
}

// X509Backdate is how far SPIRE backdates an X.509-SVID's NotBefore
// before it issues it (credtemplate.NotBeforeCushion in SPIRE 1.13): a
// certificate's issue time is its NotBefore plus this. The verifier's
// liveness view reads issue times the same way.
const X509Backdate = 10 * time.Second

// createdSlack allows for whole seconds, as the verifier's liveness view
// does: SPIRE rounds an entry's created_at, and NotBefore and iat are
// whole seconds, so a credential issued just after its entry was created
// can read up to a second before created_at.
const createdSlack = time.Second

// sameIncarnation refuses a delegating credential issued (issued, zero:
// not checked) before the parent's entry was created: it was issued to a
// revoked incarnation of the parent task, whose task ID was created again
// since. The rule and its slack are the verifier's (verifier.LivenessView).
func sameIncarnation(issued time.Time, parent Task) error {
	if issued.IsZero() || parent.CreatedAt.IsZero() || issued.Add(createdSlack).Unix() >= parent.CreatedAt.Unix() {
		return nil
	}
	return refuse(ReasonParentNotFound, "", "the caller's credential was issued at %s, before the entry of %s was created (%s): it belongs to a revoked incarnation of that task",
		issued.UTC().Format(time.RFC3339), parent.ID, parent.CreatedAt.Format(time.RFC3339))
}

// sameSelectors refuses a child request whose extra selectors are not
// exactly the parent's (or none): only an operator may change them.
func sameSelectors(req []string, parent Task) error {
	if len(req) == 0 {
		return nil
	}
	a, b := slices.Clone(req), slices.Clone(parent.Selectors)
	slices.Sort(a)
	slices.Sort(b)
	if !slices.Equal(slices.Compact(a), slices.Compact(b)) {
		return refuse(ReasonInvalidRequest, "", "selectors %q: a delegated task keeps its parent's selectors %q; only an operator may change them", req, parent.Selectors)
	}
	return nil
}

// parentTask reads the parent's entry and rebuilds its claims.
func (r *Registrar) parentTask(ctx context.Context, parent spiffeid.ID, now time.Time) (Task, error) {
	entries, err := r.entriesOf(ctx, parent)
	if err != nil {
		return Task{}, err
	}
	switch len(entries) {
	case 0:
		return Task{}, refuse(ReasonParentNotFound, "", "no entry for %s", parent)
	case 1:
	default:
		return Task{}, refuse(ReasonParentInvalid, "", "%d entries for %s", len(entries), parent)
	}
	pt, err := r.task(entries[0])
	if err != nil {
		return Task{}, &Error{Reason: ReasonParentInvalid, Err: err}
	}
	if !now.Before(pt.Claims.Deadline) {
		return Task{}, refuse(ReasonParentInvalid, "", "parent %s expired at %s", parent, pt.Claims.Deadline.Format(time.RFC3339))
	}
	return pt, nil
}

// attenuate checks the child's claims against its parent's and the
// delegation rules of the policy, and returns the child agent's rule.
func attenuate(p *Policy, parent Task, c svid.Claims) (AgentRule, error) {
	pc := parent.Claims
	rule, ok := p.Rule(c.Agent)
	if !ok {
		return rule, refuse(ReasonUnknownAgent, "", "no policy block for agent %q", c.Agent)
	}
	if _, ok := matchAny(rule.Delegators, pc.Agent); !ok {
		return rule, refuse(ReasonDelegatorNotAllowed, rule.Pos, "agent %q does not list %q among its delegators %q", c.Agent, pc.Agent, rule.Delegators)
	}
	if c.Principal != pc.Principal {
		return rule, refuse(ReasonPrincipalMismatch, "", "principal %q differs from the parent's %q", c.Principal, pc.Principal)
	}
	if err := checkChain(p, rule, c); err != nil {
		return rule, err
	}
	for _, s := range c.Scope {
		if !pc.HasScope(s) {
			return rule, refuse(ReasonScopeEscalation, "", "scope %q is not held by the parent %s (holds %q)", s, parent.ID, pc.Scope)
		}
	}
	if c.Deadline.After(pc.Deadline) {
		return rule, refuse(ReasonDeadlineExtension, "", "deadline %s is after the parent's %s",
			c.Deadline.Format(time.RFC3339), pc.Deadline.Format(time.RFC3339))
	}
	return rule, nil
}

// checkChain refuses a chain in which an agent (or a task) appears twice or
// whose depth exceeds the max_depth of one of its agents.
func checkChain(p *Policy, rule AgentRule, c svid.Claims) error {
	depth := c.Depth()
	self := c.Agent + "/" + c.Task
	seen := make(map[string]bool, depth)
	for i, member := range c.Chain {
		id, err := spiffeid.FromString(member)
		agent, task, ok := svid.ParseTaskID(id)
		if err != nil || !ok {
			return refuse(ReasonParentInvalid, "", "chain[%d] %q is not a task SPIFFE ID", i, member)
		}
		if agent == c.Agent || seen[agent] || agent+"/"+task == self {
			return refuse(ReasonAgentCycle, "", "agent %q appears twice in the chain %q + %s", agent, c.Chain, self)
		}
		seen[agent] = true
		r, ok := p.Rule(agent)
		if !ok {
			return refuse(ReasonUnknownAgent, "", "no policy block for agent %q of the chain (chain[%d])", agent, i)
		}
		if depth > r.MaxDepth {
			return refuse(ReasonDepthExceeded, r.Pos, "depth %d exceeds max_depth %d of agent %q (chain[%d])", depth, r.MaxDepth, agent, i)
		}
	}
	if depth > rule.MaxDepth {
		return refuse(ReasonDepthExceeded, rule.Pos, "depth %d exceeds max_depth %d of agent %q", depth, rule.MaxDepth, c.Agent)
	}
	return nil
}

func (r *Registrar) childNode(req Request, parent Task) (spiffeid.ID, error) {
	s := req.ParentID
	if s == "" {
		s = parent.ParentID
	}
	node, err := spiffeid.FromString(s)
	if err != nil {
		return node, &Error{Reason: ReasonInvalidRequest, Detail: "parent ID " + s, Err: err}
	}
	return node, nil
}

// chainStillThere deletes the child again if its parent's entry, or the
// entry of another member of its chain, was removed (revoked) while the
// child was being created. It reads the chain root first: a revoke of the
// root takes longest to reach the child's parent. If a read fails the
// child is deleted all the same.
func (r *Registrar) chainStillThere(ctx context.Context, parent, child Task) error {
	gone, err := r.missingAncestor(ctx, parent, child.Claims.Chain)
	if gone == "" && err == nil {
		return nil
	}
	if _, derr := r.delete(ctx, []string{child.EntryID}); derr != nil {
		return errors.Join(err, derr)
	}
	if err != nil {
		return err
	}
	return refuse(ReasonParentNotFound, "", "chain member %s of %s was removed while it was being created", gone, child.ID)
}

// missingAncestor returns the first member of chain without an entry (for
// the parent, the last member: without the entry the parent was read
// from).
func (r *Registrar) missingAncestor(ctx context.Context, parent Task, chain []string) (string, error) {
	for i, member := range chain {
		id, err := spiffeid.FromString(member)
		if err != nil {
			return "", &Error{Reason: ReasonParentInvalid, Detail: "chain member " + member, Err: err}
		}
		entries, err := r.entriesOf(ctx, id)
		if err != nil {
			return "", err
		}
		if i == len(chain)-1 {
			entries = slices.DeleteFunc(entries, func(e *types.Entry) bool { return e.GetId() != parent.EntryID })
		}
		if len(entries) == 0 {
			return member, nil
		}
	}
	return "", nil
}
