package policies

import (
	"slices"
)

// lint adds warnings about a policy that loads but is probably wrong:
// unused variables, rules that allow everything, and rules that can never
// decide because another rule without a condition matches all they match.
func (l *loader) lint() {
	names := make([]string, 0, len(l.varDefs))
	for name := range l.varDefs {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		if !l.varUsed[name] {
			l.warnf(l.varDefs[name], "Unused variable", "The variable %q is not used by any rule.", name)
		}
	}
	keys := make([][]actionKey, len(l.compiled))
	byKey := map[actionKey][]*rule{}
	var wild []*rule
	for i, r := range l.compiled {
		keys[i] = r.actionKeys()
		if keys[i] == nil {
			wild = append(wild, r)
		}
		for _, k := range keys[i] {
			byKey[k] = append(byKey[k], r)
		}
	}
	for i, x := range l.compiled {
		if x.effect == Allow && x.peer == nil && x.action == nil && x.cond == nil {
			l.warnf(x.def, "Rule allows everything", "The rule %q has no peer, action or condition: it allows every request that no deny rule matches.", x.ref.Name)
		}
		// Only rules sharing an index key, or without one, can cover x.
		cands := wild
		if k := keys[i]; k != nil {
			cands = append(append(slices.Clip(wild), byKey[k[0]]...), byKey[actionKey{k[0].kind, "", k[0].key}]...)
		}
		l.shadowed(x, cands)
	}
}

func (l *loader) shadowed(x *rule, cands []*rule) {
	covering := func(ok func(y *rule) bool) *rule {
		for _, y := range cands {
			if y != x && y.cond == nil && ok(y) && y.covers(x) {
				return y
			}
		}
		return nil
	}
	if x.effect == Allow {
		if y := covering(func(y *rule) bool { return y.effect == Deny }); y != nil {
			l.warnf(x.def, "Unreachable rule", "The allow rule %q can never allow: the deny rule %q at %s matches every request it matches.", x.ref.Name, y.ref.Name, y.def)
			return
		}
	}
	if y := covering(func(y *rule) bool { return y.effect == x.effect && y.index < x.index }); y != nil {
		l.warnf(x.def, "Shadowed rule", "The %s rule %q never decides anything new: the rule %q at %s matches every request it matches.", x.effect, x.ref.Name, y.ref.Name, y.def)
	}
}

// covers reports, conservatively, whether y matches every input x matches.
func (y *rule) covers(x *rule) bool {
	return y.actionCovers(x) && y.peerCovers(x)
}

func (y *rule) actionCovers(x *rule) bool {
	if y.action == nil {
		return true
	}
	if x.action == nil {
		return false
	}
	for i := range x.action.alts {
		ok := false
		for j := range y.action.alts {
			if y.action.alts[j].covers(&x.action.alts[i]) {
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

func (y *rule) peerCovers(x *rule) bool {
	if y.peer == nil {
		return true
	}
	if x.peer == nil {
		return false
	}
	for name, text := range y.peerText {
		if name == "spiffe_id" {
			if !globsCover(y.peer.ids, x.peer.ids) {
				return false
			}
			continue
		}
		if x.peerText[name] != text {
			return false
		}
	}
	return true
}
