package policies

import (
	"slices"
	"strings"
)

// actionMatcher is a compiled action block: the action matches when any
// alternative does.
type actionMatcher struct {
	alts []actionAlt
}

// actionAlt is one http, grpc, mcp or generic block.
type actionAlt struct {
	kind    string
	methods []string // http; nil: any method
	pats    []glob   // http paths, grpc methods, mcp tools, generic names; nil: any
}

func (m *actionMatcher) mismatch(a *Action, explain bool) string {
	for i := range m.alts {
		if m.alts[i].match(a) {
			return ""
		}
	}
	if !explain {
		return notMatched
	}
	var kinds []string
	for _, alt := range m.alts {
		kinds = append(kinds, alt.describe())
	}
	return why(true, "action: %s matches none of %s", describeAction(a), strings.Join(kinds, ", "))
}

func (alt *actionAlt) match(a *Action) bool {
	if a.Kind != alt.kind {
		return false
	}
	subject := a.Name
	switch alt.kind {
	case KindHTTP:
		if alt.methods != nil && !slices.Contains(alt.methods, a.Method) {
			return false
		}
		subject = a.Path
	case KindGRPC:
		subject = a.Path
	}
	return alt.pats == nil || matchAny(alt.pats, subject)
}

func (alt *actionAlt) describe() string {
	s := alt.kind
	if alt.methods != nil {
		s += " " + strings.Join(alt.methods, "|")
	}
	if alt.pats != nil {
		s += " " + rawList(alt.pats)
	}
	return s
}

func describeAction(a *Action) string {
	switch a.Kind {
	case KindHTTP:
		return "http " + a.Method + " " + a.Path
	case KindGRPC:
		return "grpc " + a.Path
	}
	return a.Kind + " " + a.Name
}

// covers reports, conservatively, whether every action alt q matches also
// matches alt.
func (alt *actionAlt) covers(q *actionAlt) bool {
	if alt.kind != q.kind {
		return false
	}
	if alt.methods != nil && (q.methods == nil || !subsetOf(q.methods, alt.methods)) {
		return false
	}
	return globsCover(alt.pats, q.pats)
}

// globsCover reports whether every string matched by one of qs (nil: all)
// is matched by one of ps (nil: all).
func globsCover(ps, qs []glob) bool {
	if ps == nil {
		return true
	}
	if qs == nil {
		return false
	}
	for i := range qs {
		ok := false
		for j := range ps {
			if ps[j].covers(&qs[i]) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func subsetOf(a, b []string) bool {
	for _, s := range a {
		if !slices.Contains(b, s) {
			return false
		}
	}
	return true
}
