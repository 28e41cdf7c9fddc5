package policies

import (
	"errors"
	"fmt"
	"strings"
)

// glob is a compiled pattern: "*" matches any run of characters other than
// "/", "**" matches any run of characters including "/". Everything else is
// literal. A pattern without wildcards is an exact match.
//
// Matching takes time linear in the input whatever the pattern: a pattern
// with wildcards is its literal prefix and suffix, compared directly, around
// a middle part (from the first wildcard to the last) that runs as a
// bit-parallel NFA, one step per input byte over at most maxSpan+1 states
// (one or two machine words). There is no backtracking.
type glob struct {
	raw    string
	kind   globKind
	prefix string   // literal text before the first wildcard
	suffix string   // general: literal text after the last wildcard
	nfa    *globNFA // general: the middle part
}

type globKind uint8

const (
	globExact  globKind = iota // raw == s
	globPrefix                 // prefix + "**"
	globAny                    // "**"
	globGeneral
)

// maxWildcards is the most wildcards a pattern may have.
const maxWildcards = 8

// maxSpan is the longest part of a pattern from its first wildcard to its
// last, in bytes: the NFA's states fit in two words.
const maxSpan = 2*64 - 1

var (
	errTripleStar    = errors.New(`"***" is not a wildcard: use "*" (one segment) or "**" (any suffix)`)
	errManyWildcards = errors.New("too many wildcards (at most 8)")
	errLongSpan      = fmt.Errorf("too long between the first wildcard and the last (at most %d bytes)", maxSpan)
)

func compileGlob(p string) (glob, error) {
	g := glob{raw: p}
	if strings.Contains(p, "***") {
		return g, errTripleStar
	}
	i := strings.IndexByte(p, '*')
	if i < 0 {
		g.kind, g.prefix = globExact, p
		return g, nil
	}
	g.prefix = p[:i]
	if p[i:] == "**" {
		g.kind = globPrefix
		if i == 0 {
			g.kind = globAny
		}
		return g, nil
	}
	g.kind = globGeneral
	if strings.Count(p, "*")-strings.Count(p, "**") > maxWildcards {
		return g, errManyWildcards
	}
	j := strings.LastIndexByte(p, '*') + 1
	g.suffix = p[j:]
	if j-i > maxSpan {
		return g, errLongSpan
	}
	g.nfa = compileNFA(p[i:j])
	return g, nil
}

// globNFA is the middle of a pattern as a sequence of elements (a literal
// byte, "*" or "**"): state k means "the first k elements matched", bit k
// of a word array. The middle starts with a wildcard, and wildcards are
// never adjacent ("***" is refused), so a state set closed under the
// wildcards' empty matches steps on a byte to
//
//	(d & move)<<1 | (d & move2)<<2 | (d & stay)
//
// with move the literal states of that byte and the wildcards that match it
// (to the next state), move2 those literal states followed by a wildcard
// (over it, as it may match nothing) and stay the wildcards that match it.
type globNFA struct {
	words  int
	accept int // the final state: the number of elements
	minLen int // literal bytes: the shortest input the middle matches
	// class maps a byte to its class: 0 for the bytes that the middle does
	// not have (other than "/"), 1 for "/", then one per literal byte.
	class [256]uint8
	// masks holds move, move2 and stay for each class, words words each.
	masks []uint64
}

func compileNFA(mid string) *globNFA {
	type elem struct {
		c    byte
		star uint8
	}
	var elems []elem
	for k := 0; k < len(mid); k++ {
		switch {
		case mid[k] != '*':
			elems = append(elems, elem{c: mid[k]})
		case k+1 < len(mid) && mid[k+1] == '*':
			elems = append(elems, elem{star: 2})
			k++
		default:
			elems = append(elems, elem{star: 1})
		}
	}
	n := &globNFA{accept: len(elems), words: len(elems)/64 + 1}
	n.class['/'] = 1
	classes := 2
	for _, e := range elems {
		if e.star == 0 {
			n.minLen++
			if n.class[e.c] == 0 && e.c != '/' {
				n.class[e.c] = uint8(classes)
				classes++
			}
		}
	}
	w := n.words
	n.masks = make([]uint64, 3*classes*w)
	set := func(c, which, k int) { n.masks[(3*c+which)*w+k/64] |= 1 << (k % 64) }
	for k, e := range elems {
		if e.star == 0 {
			c := int(n.class[e.c])
			set(c, 0, k)
			if k+1 < len(elems) && elems[k+1].star != 0 {
				set(c, 1, k)
			}
			continue
		}
		for c := range classes {
			if e.star == 2 || c != 1 { // "*" does not match "/"
				set(c, 0, k)
				set(c, 2, k)
			}
		}
	}
	return n
}

// match reports whether the middle matches all of s.
func (n *globNFA) match(s string) bool {
	if len(s) < n.minLen {
		return false
	}
	if n.words == 1 {
		return n.match1(s)
	}
	return n.match2(s)
}

// match1 is match for at most 63 elements: one word.
func (n *globNFA) match1(s string) bool {
	masks, class := n.masks, &n.class
	d := uint64(0b11) // state 0, a wildcard, and its empty match
	for i := 0; i < len(s); i++ {
		m := masks[3*int(class[s[i]]):]
		d = (d&m[0])<<1 | (d&m[1])<<2 | d&m[2]
		if d == 0 {
			return false
		}
	}
	return d>>n.accept&1 != 0
}

// match2 is match for 64 to 127 elements: two words.
func (n *globNFA) match2(s string) bool {
	masks, class := n.masks, &n.class
	d0, d1 := uint64(0b11), uint64(0)
	for i := 0; i < len(s); i++ {
		m := masks[6*int(class[s[i]]):]
		m = m[:6]
		a0, b0 := d0&m[0], d0&m[2]
		d0, d1 = a0<<1|b0<<2|d0&m[4], (d1&m[1])<<1|a0>>63|(d1&m[3])<<2|b0>>62|d1&m[5]
		if d0|d1 == 0 {
			return false
		}
	}
	return [2]uint64{d0, d1}[n.accept/64]>>(n.accept%64)&1 != 0
}

func (g *glob) match(s string) bool {
	switch g.kind {
	case globExact:
		return s == g.raw
	case globPrefix:
		return strings.HasPrefix(s, g.prefix)
	case globAny:
		return true
	}
	if len(s) < len(g.prefix)+len(g.suffix) || !strings.HasPrefix(s, g.prefix) || !strings.HasSuffix(s, g.suffix) {
		return false
	}
	return g.nfa.match(s[len(g.prefix) : len(s)-len(g.suffix)])
}

// Lint thresholds of a costly pattern (see costNote).
const (
	lintDoubleStars = 4
	lintSpan        = 63 // one word of NFA states
)

// costNote says why matching g is costly, or "" when it is not: more than
// lintDoubleStars "**", or a middle longer than one word of NFA states.
// Matching is linear in the input either way; lint warns.
func (g *glob) costNote() string {
	if g.kind != globGeneral {
		return ""
	}
	if n := strings.Count(g.raw, "**"); n > lintDoubleStars {
		return fmt.Sprintf("has %d \"**\" (more than %d): each can match any run of the input, which makes the pattern costly to match and hard to read", n, lintDoubleStars)
	}
	if g.nfa.words > 1 {
		return fmt.Sprintf("spans %d bytes from its first wildcard to its last (more than %d): matching costs twice as much per input byte", len(g.raw)-len(g.prefix)-len(g.suffix), lintSpan)
	}
	return ""
}

// literal reports whether the pattern has no wildcard.
func (g *glob) literal() bool { return g.kind == globExact }

// covers reports, conservatively, whether every string q matches also
// matches g (used by lint to find shadowed rules).
func (g *glob) covers(q *glob) bool {
	if g.kind == globAny {
		return true
	}
	if strings.Contains(q.raw, "**") && !strings.Contains(g.raw, "**") {
		return false
	}
	return g.match(q.raw)
}

func matchAny(gs []glob, s string) bool {
	for i := range gs {
		if gs[i].match(s) {
			return true
		}
	}
	return false
}

// firstSegment returns the text between the leading "/" and the next "/"
// of a path, and whether it is a literal (wildcard-free) segment of
// pattern p ending in "/" or at the end.
func firstSegment(p string) (string, bool) {
	if !strings.HasPrefix(p, "/") {
		return "", false
	}
	seg := p[1:]
	if j := strings.IndexByte(seg, '/'); j >= 0 {
		seg = seg[:j]
	}
	return seg, !strings.Contains(seg, "*")
}
