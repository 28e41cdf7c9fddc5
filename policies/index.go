package policies

import (
	"slices"
	"strings"
)

// actionKey is the index key of an action: its kind, the HTTP method (""
// for any) and the first path segment (http, grpc) or the name (mcp,
// generic).
type actionKey struct {
	kind, method, key string
}

// index finds the candidate rules of one effect for an input. Each rule is
// filed under one dimension, the most selective it allows: the action, the
// agent named by its SPIFFE ID patterns, the agent claim, or none (rest).
type index struct {
	byAction  map[actionKey][]int32
	byIDAgent map[string][]int32
	byAgent   map[string][]int32
	rest      []int32
	all       []int32 // every rule of this effect, for Explain
}

func buildIndex(rules []*rule, eff Effect) index {
	ix := index{byAction: map[actionKey][]int32{}, byIDAgent: map[string][]int32{}, byAgent: map[string][]int32{}}
	type keys struct {
		action []actionKey
		idAg   []string
		agent  []string
	}
	all := make([]keys, len(rules))
	count := map[any]int{}
	for i, r := range rules {
		if r.effect != eff {
			continue
		}
		k := keys{action: r.actionKeys(), idAg: r.idAgentKeys(), agent: r.agentKeys()}
		all[i] = k
		for _, x := range k.action {
			count[x]++
		}
		for _, x := range k.idAg {
			count["id\x00"+x]++
		}
		for _, x := range k.agent {
			count["ag\x00"+x]++
		}
	}
	worst := func(n int, key func(int) any) int {
		w := 0
		for j := range n {
			w = max(w, count[key(j)])
		}
		return w
	}
	for i, r := range rules {
		if r.effect != eff {
			continue
		}
		ix.all = append(ix.all, r.index)
		k := all[i]
		best, dim := len(rules)+1, -1
		if k.action != nil {
			best, dim = worst(len(k.action), func(j int) any { return k.action[j] }), 0
		}
		if k.idAg != nil {
			if w := worst(len(k.idAg), func(j int) any { return "id\x00" + k.idAg[j] }); w < best {
				best, dim = w, 1
			}
		}
		if k.agent != nil {
			if w := worst(len(k.agent), func(j int) any { return "ag\x00" + k.agent[j] }); w < best {
				dim = 2
			}
		}
		idx := r.index
		switch dim {
		case 0:
			for _, x := range k.action {
				ix.byAction[x] = appendOnce(ix.byAction[x], idx)
			}
		case 1:
			for _, x := range k.idAg {
				ix.byIDAgent[x] = appendOnce(ix.byIDAgent[x], idx)
			}
		case 2:
			for _, x := range k.agent {
				ix.byAgent[x] = appendOnce(ix.byAgent[x], idx)
			}
		default:
			ix.rest = append(ix.rest, idx)
		}
	}
	return ix
}

func appendOnce(l []int32, i int32) []int32 {
	if len(l) > 0 && l[len(l)-1] == i {
		return l
	}
	return append(l, i)
}

// actionKeys returns the keys under which every action the rule matches is
// found, or nil when the rule's actions can't be indexed.
func (r *rule) actionKeys() []actionKey {
	if r.action == nil {
		return nil
	}
	var out []actionKey
	for _, alt := range r.action.alts {
		if alt.pats == nil {
			return nil
		}
		for i := range alt.pats {
			key, ok := patternKey(alt.kind, &alt.pats[i])
			if !ok {
				return nil
			}
			if alt.methods == nil {
				out = append(out, actionKey{alt.kind, "", key})
				continue
			}
			for _, m := range alt.methods {
				out = append(out, actionKey{alt.kind, m, key})
				if alt.kind == KindHTTP && m == "GET" { // HEAD is GET (httpMethodIn)
					out = append(out, actionKey{alt.kind, "HEAD", key})
				}
			}
		}
	}
	slices.SortFunc(out, func(a, b actionKey) int { return strings.Compare(a.kind+a.method+a.key, b.kind+b.method+b.key) })
	return slices.Compact(out)
}

func patternKey(kind string, g *glob) (string, bool) {
	if kind == KindHTTP || kind == KindGRPC {
		return firstSegment(g.raw)
	}
	return g.raw, g.literal()
}

// idAgentKeys returns the agent names that the rule's SPIFFE ID patterns
// require in the ID path (/agent/<name>/…), or nil.
func (r *rule) idAgentKeys() []string {
	if r.peer == nil || len(r.peer.ids) == 0 {
		return nil
	}
	var out []string
	for i := range r.peer.ids {
		ag, ok := patternIDAgent(r.peer.ids[i].raw)
		if !ok {
			return nil
		}
		out = append(out, ag)
	}
	return out
}

func patternIDAgent(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "spiffe://")
	if !ok {
		return "", false
	}
	slash := strings.IndexByte(rest, '/')
	if slash < 0 || strings.Contains(rest[:slash], "**") {
		// a "**" before the path crosses "/": the agent segment of the
		// pattern need not be that of the ID
		return "", false
	}
	ag := idAgent(rest[slash:])
	if ag == "" || strings.Contains(ag, "*") {
		return "", false
	}
	// the agent segment must end in "/" or the end of the pattern
	after := rest[slash+len("/agent/")+len(ag):]
	return ag, after == "" || after[0] == '/'
}

// idAgent returns the second segment of a path "/agent/<name>/…".
func idAgent(path string) string {
	rest, ok := strings.CutPrefix(path, "/agent/")
	if !ok {
		return ""
	}
	if j := strings.IndexByte(rest, '/'); j >= 0 {
		return rest[:j]
	}
	return rest
}

func (r *rule) agentKeys() []string {
	if r.peer == nil || len(r.peer.agents) == 0 {
		return nil
	}
	var out []string
	for i := range r.peer.agents {
		if !r.peer.agents[i].literal() {
			return nil
		}
		out = append(out, r.peer.agents[i].raw)
	}
	return out
}

// lists fills dst with the candidate lists for in (each sorted) and
// returns how many it filled.
func (ix *index) lists(in *Input, dst *[6][]int32) int {
	n := 0
	add := func(l []int32) {
		if len(l) > 0 {
			dst[n] = l
			n++
		}
	}
	a := &in.Action
	switch a.Kind {
	case KindHTTP, KindGRPC:
		seg, _ := firstSegment(a.Path)
		if a.Kind == KindHTTP {
			add(ix.byAction[actionKey{a.Kind, a.Method, seg}])
		}
		add(ix.byAction[actionKey{a.Kind, "", seg}])
	default:
		add(ix.byAction[actionKey{a.Kind, "", a.Name}])
	}
	if len(ix.byIDAgent) > 0 {
		add(ix.byIDAgent[idAgent(in.Peer.ID.Path())])
	}
	if len(ix.byAgent) > 0 && in.Peer.Claims != nil {
		add(ix.byAgent[in.Peer.Claims.Agent])
	}
	add(ix.rest)
	return n
}

// next pops the smallest rule index from the lists, skipping duplicates
// of last; ok is false when they are empty.
func next(ls *[6][]int32, n int, last int32) (int32, bool) {
	for {
		best := -1
		for i := range n {
			if len(ls[i]) > 0 && (best < 0 || ls[i][0] < ls[best][0]) {
				best = i
			}
		}
		if best < 0 {
			return 0, false
		}
		v := ls[best][0]
		ls[best] = ls[best][1:]
		if v != last {
			return v, true
		}
	}
}
