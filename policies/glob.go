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
// (at most 4 machine words). There is no backtracking.
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
// last, in bytes: the NFA's states fit in maxWords words.
const (
	maxSpan  = 4*64 - 1
	maxWords = (maxSpan + 64) / 64
)

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
// of a word array. Wildcards are never adjacent ("***" is refused), so one
// shift closes a state set under the wildcards' empty matches.
type globNFA struct {
	words  int
	accept int // the final state: the number of elements
	minLen int // literal bytes: the shortest input the middle matches
	class  [256]uint8
	// masks holds, words each: the "*" states, the "**" states, then one
	// mask per byte class of the states whose element is that byte (class
	// 0: bytes the pattern does not have).
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
	classes := 1
	for _, e := range elems {
		if e.star == 0 {
			n.minLen++
			if n.class[e.c] == 0 {
				n.class[e.c] = uint8(classes)
				classes++
			}
		}
	}
	w := n.words
	n.masks = make([]uint64, (2+classes)*w)
	for k, e := range elems {
		word, bit := k/64, uint64(1)<<(k%64)
		switch e.star {
		case 1:
			n.masks[word] |= bit
		case 2:
			n.masks[w+word] |= bit
		default:
			n.masks[(2+int(n.class[e.c]))*w+word] |= bit
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
	return n.matchN(s)
}

// match1 is match for at most 63 elements: one word.
func (n *globNFA) match1(s string) bool {
	star1, star2 := n.masks[0], n.masks[1]
	stars := star1 | star2
	lits := n.masks[2:]
	d := uint64(1)
	d |= (d & stars) << 1
	for i := 0; i < len(s); i++ {
		c := s[i]
		self := d & star2
		if c != '/' {
			self = d & stars
		}
		x := (d&lits[n.class[c]])<<1 | self
		d = x | (x&stars)<<1
		if d == 0 {
			return false
		}
	}
	return d>>n.accept&1 != 0
}

// matchN is match for more elements, in n.words words (on the stack).
func (n *globNFA) matchN(s string) bool {
	w := n.words
	var dv, xv [maxWords]uint64
	d, x := dv[:w], xv[:w]
	star1, star2 := n.masks[:w], n.masks[w:2*w]
	d[0] = 1 | (1&(star1[0]|star2[0]))<<1
	for i := 0; i < len(s); i++ {
		c := s[i]
		lit := n.masks[(2+int(n.class[c]))*w:][:w]
		var carry uint64
		for k := range w {
			t := d[k] & lit[k]
			self := d[k] & star2[k]
			if c != '/' {
				self |= d[k] & star1[k]
			}
			x[k] = t<<1 | carry | self
			carry = t >> 63
		}
		carry = 0
		var any uint64
		for k := range w {
			y := x[k] & (star1[k] | star2[k])
			d[k] = x[k] | y<<1 | carry
			carry = y >> 63
			any |= d[k]
		}
		if any == 0 {
			return false
		}
	}
	return d[n.accept/64]>>(n.accept%64)&1 != 0
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
