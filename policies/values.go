package policies

import (
	"fmt"
	"strings"
	"time"

	"github.com/agext/levenshtein"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/agentid/agentid/internal/strictjson"
	"github.com/agentid/agentid/svid"
)

// strItem is one string of a list attribute, with the range to blame.
type strItem struct {
	val string
	rng hcl.Range
}

func (l *loader) ctx() *hcl.EvalContext {
	if l.evalCtx == nil { // varObj is set before the first use
		l.evalCtx = &hcl.EvalContext{Variables: map[string]cty.Value{"var": l.varObj}, Functions: functions}
	}
	return l.evalCtx
}

// value evaluates an attribute that does not depend on the request.
func (l *loader) value(a *hcl.Attribute) (cty.Value, bool) {
	l.markVars(a.Expr)
	v, diags := a.Expr.Value(l.ctx())
	l.diags = append(l.diags, diags...)
	if diags.HasErrors() {
		return cty.NilVal, false
	}
	if v.IsNull() {
		l.errorf(a.Expr.Range(), "Null value", "The argument %q must not be null.", a.Name)
		return cty.NilVal, false
	}
	return v, true
}

func (l *loader) markVars(e hcl.Expression) {
	for _, t := range e.Variables() {
		if t.RootName() != "var" || len(t) < 2 {
			continue
		}
		if s, ok := t[1].(hcl.TraverseAttr); ok {
			l.varUsed[s.Name] = true
		}
	}
}

func (l *loader) str(a *hcl.Attribute) (string, bool) {
	v, ok := l.value(a)
	if !ok {
		return "", false
	}
	if v.Type() != cty.String {
		l.errorf(a.Expr.Range(), "Incorrect value type", "The argument %q must be a string, not %s.", a.Name, v.Type().FriendlyName())
		return "", false
	}
	return v.AsString(), true
}

// strs decodes a string or a list/set/tuple of strings.
func (l *loader) strs(a *hcl.Attribute) ([]strItem, bool) {
	v, ok := l.value(a)
	if !ok {
		return nil, false
	}
	if v.Type() == cty.String {
		return []strItem{{v.AsString(), a.Expr.Range()}}, true
	}
	if !v.CanIterateElements() || v.Type().IsMapType() || v.Type().IsObjectType() {
		l.errorf(a.Expr.Range(), "Incorrect value type", "The argument %q must be a string or a list of strings, not %s.", a.Name, v.Type().FriendlyName())
		return nil, false
	}
	elems := elemRanges(a.Expr)
	var out []strItem
	i := 0
	for it := v.ElementIterator(); it.Next(); i++ {
		_, e := it.Element()
		rng := a.Expr.Range()
		if i < len(elems) {
			rng = elems[i]
		}
		if e.IsNull() || e.Type() != cty.String {
			l.errorf(rng, "Incorrect value type", "The elements of %q must be strings.", a.Name)
			return nil, false
		}
		out = append(out, strItem{e.AsString(), rng})
	}
	if len(out) == 0 {
		l.errorf(a.Expr.Range(), "Empty list", "The argument %q is an empty list, which can never match; remove the argument to match anything.", a.Name)
		return nil, false
	}
	return out, true
}

func elemRanges(e hcl.Expression) []hcl.Range {
	t, ok := e.(*hclsyntax.TupleConsExpr)
	if !ok {
		return nil
	}
	out := make([]hcl.Range, len(t.Exprs))
	for i, x := range t.Exprs {
		out[i] = x.Range()
	}
	return out
}

// globs decodes a list of patterns; prefix, when set, is required.
func (l *loader) globs(a *hcl.Attribute, prefix string) []glob {
	return l.globsChecked(a, prefix, nil, "")
}

// pathGlobs decodes a list of HTTP path patterns, which must be in the
// canonical form of the paths the verifier decides (CheckPathPattern):
// any other spelling would never match.
func (l *loader) pathGlobs(a *hcl.Attribute) []glob {
	return l.globsChecked(a, "/", CheckPathPattern, "path")
}

// resourceGlobs decodes a list of MCP resource patterns, which must be in
// the one spelling the verifier decides resource URIs in
// (CheckResourcePattern).
func (l *loader) resourceGlobs(a *hcl.Attribute) []glob {
	return l.globsChecked(a, "", CheckResourcePattern, "resource URI")
}

// globsChecked decodes a list of patterns; with check, each must pass it
// (what names a kind of pattern in the error).
func (l *loader) globsChecked(a *hcl.Attribute, prefix string, check func(string) error, what string) []glob {
	items, ok := l.strs(a)
	if !ok {
		return nil
	}
	out := make([]glob, 0, len(items))
	for _, it := range items {
		if prefix != "" && !strings.HasPrefix(it.val, prefix) && it.val != "**" {
			l.errorf(it.rng, "Invalid pattern", "The pattern %q of %q must start with %q.", it.val, a.Name, prefix)
			continue
		}
		if check != nil {
			if err := check(it.val); err != nil {
				l.errorf(it.rng, "Non-canonical "+what+" pattern", "The pattern %q of %q %v (the verifier decides %ss in canonical form: docs/policy.md#what-the-path-is).", it.val, a.Name, err, what)
				continue
			}
		}
		g, err := compileGlob(it.val)
		if err != nil {
			l.errorf(it.rng, "Invalid pattern", "The pattern %q of %q: %v.", it.val, a.Name, err)
			continue
		}
		if g.nfa != nil { // one automaton per distinct middle: they are immutable
			mid := g.raw[len(g.prefix) : len(g.raw)-len(g.suffix)]
			if shared, ok := l.nfas[mid]; ok {
				g.nfa = shared
			} else {
				if l.nfas == nil {
					l.nfas = map[string]*globNFA{}
				}
				l.nfas[mid] = g.nfa
			}
		}
		if note := g.costNote(); note != "" {
			l.warnf(it.rng, "Costly pattern", "The pattern %q of %q %s. Prefer a literal prefix and fewer wildcards, or several simpler patterns.", it.val, a.Name, note)
		}
		out = append(out, g)
	}
	return out
}

func (l *loader) prompts(m *peerMatcher, a *hcl.Attribute) {
	items, ok := l.strs(a)
	if !ok {
		return
	}
	for _, it := range items {
		if !svid.ValidPromptDigest(it.val) {
			l.errorf(it.rng, "Invalid prompt digest", "%q is not a prompt digest: want \"sha256:<64 lower-case hex>\" (see agentid prompt hash).", it.val)
			continue
		}
		m.prompts = append(m.prompts, it.val)
	}
	if len(m.prompts) > 8 {
		m.promptSet = make(map[string]struct{}, len(m.prompts))
		for _, p := range m.prompts {
			m.promptSet[p] = struct{}{}
		}
		m.prompts = nil
	}
}

func (l *loader) scopes(a *hcl.Attribute) []string {
	items, _ := l.strs(a)
	var out []string
	for _, it := range items {
		if !svid.ValidScopeToken(it.val) {
			l.errorf(it.rng, "Invalid scope", "%q is not a scope token.", it.val)
			continue
		}
		out = append(out, it.val)
	}
	return out
}

func (l *loader) depth(a *hcl.Attribute) int {
	v, ok := l.value(a)
	if !ok {
		return -1
	}
	if v.Type() != cty.Number {
		l.errorf(a.Expr.Range(), "Incorrect value type", "The argument %q must be a whole number, not %s.", a.Name, v.Type().FriendlyName())
		return -1
	}
	bf := v.AsBigFloat()
	n, acc := bf.Int64()
	if acc != 0 || n < 0 || n > svid.MaxChain {
		l.errorf(a.Expr.Range(), "Invalid depth", "The argument %q must be a whole number from 0 to %d.", a.Name, svid.MaxChain)
		return -1
	}
	return int(n)
}

func (l *loader) duration(a *hcl.Attribute) (time.Duration, bool) {
	s, ok := l.str(a)
	if !ok {
		return 0, false
	}
	d, err := parseDuration(s)
	if err != nil {
		l.errorf(a.Expr.Range(), "Invalid duration", "%v.", err)
		return 0, false
	}
	return d, true
}

// parseDuration is time.ParseDuration plus a "d" (24h) unit, non-negative.
func parseDuration(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok && n != "" && !strings.ContainsAny(n, "hmsuµn") {
		d, err := time.ParseDuration(n + "h")
		return d * 24, err
	}
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0, fmt.Errorf("%s is not a duration like \"90s\", \"5m\", \"2h\" or \"1d\"", strictjson.Quote(s))
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}

func (l *loader) boolean(a *hcl.Attribute) bool {
	v, ok := l.value(a)
	if !ok {
		return false
	}
	if v.Type() != cty.Bool {
		l.errorf(a.Expr.Range(), "Incorrect value type", "The argument %q must be true or false, not %s.", a.Name, v.Type().FriendlyName())
		return false
	}
	return v.True()
}

// sourceText is the source of a range without spaces, for lint
// comparisons of attribute values.
func (l *loader) sourceText(r hcl.Range) string {
	src := l.srcs[r.Filename]
	if r.End.Byte > len(src) || r.Start.Byte > r.End.Byte {
		return ""
	}
	return strings.Join(strings.Fields(string(src[r.Start.Byte:r.End.Byte])), "")
}

// didYouMean returns ` Did you mean "x"?` for the closest candidate.
func didYouMean(given string, candidates []string) string {
	for _, c := range candidates {
		if levenshtein.Distance(given, c, nil) < 3 {
			return fmt.Sprintf(" Did you mean %q?", c)
		}
	}
	return ""
}
