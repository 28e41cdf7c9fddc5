package policies

import (
	"slices"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/hashicorp/hcl/v2"
	"github.com/zclconf/go-cty/cty"
)

// Set is a compiled, immutable policy set, safe for concurrent use.
type Set struct {
	rules       []*rule // load order
	deny, allow index
	vars        cty.Value
	data        cty.Value // object of the data sources
	dataFiles   []string
	roots       rootSet // the condition variables any condition uses
	conds       bool
	usesArgs    bool // a condition reads action.arguments: decode them
	// peerAttrs are the peer's attributes that conditions read (nil: all)
	peerAttrs  map[string]bool
	requireSig bool // top-level require_signature = true
	digest     string
}

// DataFiles are the files of the data sources, as read (for a watcher).
func (s *Set) DataFiles() []string { return s.dataFiles }

// Digest is "sha256:<hex>" over the policy sources and data files, for the
// audit log.
func (s *Set) Digest() string { return s.digest }

// Rules lists the rules in load order (files by name, then position).
func (s *Set) Rules() []RuleRef {
	out := make([]RuleRef, len(s.rules))
	for i, r := range s.rules {
		out[i] = r.ref
	}
	return out
}

// Reasons of decisions that no rule decided.
const (
	ReasonNoRule   = "no rule allows this request (default deny)"
	ReasonNoPolicy = "no policy loaded"
	// ReasonReservedSubject denies an asserted subject that takes the type
	// of an authenticated peer (agent_task, workload).
	ReasonReservedSubject = "the subject types agent_task and workload are reserved for authenticated peers: an asserted subject cannot take them"
)

// Decide answers in. The common path (rules without conditions) does not
// allocate. An action longer than the limits (see [Action.CheckLimits]) is
// denied before any rule is looked at, with Decision.Limit set.
func (s *Set) Decide(in *Input) Decision { return s.decide(in, false) }

// Explain answers in like Decide and lists every rule considered in
// Decision.Trace, with every matching rule in Decision.Rules.
func (s *Set) Explain(in *Input) Decision { return s.decide(in, true) }

// evalState is the per-decision state: the lazily built condition context.
type evalState struct {
	in     *Input
	now    time.Time
	vars   cty.Value
	data   cty.Value
	roots  rootSet
	ctx    *hcl.EvalContext
	errors []string
	// usesArgs: the Set's conditions read action.arguments
	usesArgs  bool
	peerAttrs map[string]bool
	// args, when not nil, keeps the decoded arguments across the
	// decisions of one MissingScopes
	args *argsMemo
}

// argsMemo is Action.Arguments decoded once (ArgumentsValue) for several
// decisions on the same action.
type argsMemo struct {
	done bool
	v    cty.Value
	err  string
}

func (s *Set) decide(in *Input, explain bool) Decision { return s.decideMemo(in, explain, nil) }

func (s *Set) decideMemo(in *Input, explain bool, args *argsMemo) Decision {
	if s == nil {
		return Decision{Reason: ReasonNoPolicy}
	}
	if err := in.Action.CheckLimits(); err != nil {
		return Decision{Reason: err.Error(), Limit: err.(*LimitError)}
	}
	if in.reservedSubject() {
		return Decision{Reason: ReasonReservedSubject}
	}
	st := evalState{in: in, now: in.Now, vars: s.vars, data: s.data, roots: s.roots, usesArgs: s.usesArgs, peerAttrs: s.peerAttrs, args: args}
	if st.now.IsZero() {
		st.now = time.Now()
	}
	var d Decision
	if first := s.scan(&s.deny, &st, &d, explain); first != nil {
		d.Reason = first.reason
		if explain { // the trace lists the allow rules too
			var a Decision
			s.scan(&s.allow, &st, &a, true)
			d.Trace = append(d.Trace, a.Trace...)
		}
	} else if first := s.scan(&s.allow, &st, &d, explain); first != nil {
		d.Allow, d.Reason = true, first.reason
		d.RequireSignature = first.requireSig || s.requireSig
	} else {
		d.Reason = ReasonNoRule
	}
	d.Errors = st.errors
	return d
}

// scan evaluates the candidates of one effect. Without explain it stops
// at the first allow; denies are all collected.
func (s *Set) scan(ix *index, st *evalState, d *Decision, explain bool) (first *rule) {
	var lists [6][]int32
	n := 1
	if explain {
		lists[0] = ix.all
	} else {
		n = ix.lists(st.in, &lists)
	}
	last := int32(-1)
	for {
		i, ok := next(&lists, n, last)
		if !ok {
			return first
		}
		last = i
		r := s.rules[i]
		why := r.mismatch(st, explain)
		if explain {
			d.Trace = append(d.Trace, traceEntry(r, why))
		}
		if why != "" {
			continue
		}
		if first == nil {
			first = r
		}
		if d.Rules == nil {
			d.Rules = r.refs // shared: no allocation for one deciding rule
			d.ruleStrs = r.strs
		} else {
			d.Rules = append(d.Rules[:len(d.Rules):len(d.Rules)], r.ref)
		}
		if r.effect == Allow && !explain {
			return first
		}
	}
}

func traceEntry(r *rule, why string) TraceEntry {
	if why == "" {
		why = "matched"
	}
	return TraceEntry{Rule: r.ref, Matched: why == "matched", Why: why}
}

// mismatch returns "" when the rule matches st, else why not.
func (r *rule) mismatch(st *evalState, explain bool) string {
	if r.action != nil {
		if w := r.action.mismatch(&st.in.Action, explain); w != "" {
			return w
		}
	}
	if r.peer != nil {
		if w := r.peer.mismatch(&st.in.Peer, st.now, explain); w != "" {
			return w
		}
	}
	if r.subj != nil {
		typ, id := st.in.subject()
		if w := r.subj.mismatch(typ, id, explain); w != "" {
			return w
		}
	}
	if r.res != nil {
		if w := r.res.mismatch(st.in.Resource.Type, st.in.Resource.ID, explain); w != "" {
			return w
		}
	}
	if r.cond == nil {
		return ""
	}
	if st.ctx == nil {
		var argErr string
		st.ctx, argErr = evalContext(st)
		if argErr != "" {
			st.errors = append(st.errors, cutError(argErr))
		}
	}
	res, err := r.cond.root.eval(st.ctx, st.in.AnyArguments)
	if err != "" {
		err = cutError(err)
		st.errors = append(st.errors, r.ref.Name+": "+err)
		if r.effect == Deny {
			return "" // fail closed: an erring deny rule matches
		}
		return why(explain, "condition error: %s", err)
	}
	switch res {
	case triFalse:
		return why(explain, "condition is false")
	case triUnknown: // AnyArguments: the condition depends on the arguments
		if r.effect == Deny {
			return why(explain, "condition depends on the arguments")
		}
	}
	return ""
}

// maxErrorLen bounds a condition error in Decision.Errors: HCL's and
// go-cty's messages may quote the value that failed (a header that is not
// a time), which the client chose; the errors go to the audit log and to
// the client.
const maxErrorLen = 768

func cutError(s string) string {
	if len(s) <= maxErrorLen {
		return s
	}
	i := maxErrorLen
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i] + "…(" + strconv.Itoa(len(s)) + " bytes)"
}

// MissingScopes returns the scopes that, granted to in's peer in addition
// to its own, would make the policy allow in — those of the first allow
// rule, in load order, whose action matches and that names scopes the
// peer lacks — or nil when in is allowed, the peer is not a task, or no
// such scopes would do (another requirement fails, or a deny rule
// matches). MCP servers answer 403 with error="insufficient_scope" and
// these scopes (RFC 6750, the MCP authorization specification).
func (s *Set) MissingScopes(in *Input) []string {
	if s == nil || in.Peer.Claims == nil {
		return nil
	}
	args := &argsMemo{} // the arguments are decoded once, not once per rule
	for _, r := range s.rules {
		if r.effect != Allow || r.peer == nil || r.action != nil && r.action.mismatch(&in.Action, false) != "" {
			continue
		}
		var missing []string
		for _, sc := range r.peer.scopesAll {
			if !slices.Contains(in.Peer.Claims.Scope, sc) {
				missing = append(missing, sc)
			}
		}
		if len(r.peer.scopesAny) > 0 && !slices.ContainsFunc(r.peer.scopesAny, func(sc string) bool { return slices.Contains(in.Peer.Claims.Scope, sc) }) {
			missing = append(missing, r.peer.scopesAny[0])
		}
		if len(missing) == 0 {
			continue
		}
		c := in.Peer.Claims.Clone()
		c.Scope = append(slices.Clip(c.Scope), missing...)
		with := *in
		with.Peer.Claims = &c
		if s.decideMemo(&with, false, args).Allow {
			return missing
		}
	}
	return nil
}
