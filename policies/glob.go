package policies

import (
	"errors"
	"strings"
)

// glob is a compiled pattern: "*" matches any run of characters other than
// "/", "**" matches any run of characters including "/". Everything else is
// literal. A pattern without wildcards is an exact match.
type glob struct {
	raw    string
	kind   globKind
	prefix string // literal text before the first wildcard
	toks   []globTok
}

type globKind uint8

const (
	globExact  globKind = iota // raw == s
	globPrefix                 // prefix + "**"
	globAny                    // "**"
	globGeneral
)

type globTok struct {
	lit  string
	star uint8 // 0 literal, 1 "*", 2 "**"
}

// maxWildcards bounds the backtracking of the general matcher.
const maxWildcards = 8

var (
	errTripleStar    = errors.New(`"***" is not a wildcard: use "*" (one segment) or "**" (any suffix)`)
	errManyWildcards = errors.New("too many wildcards (at most 8)")
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
	n := 0
	for rest := p; rest != ""; {
		j := strings.IndexByte(rest, '*')
		switch {
		case j < 0:
			g.toks = append(g.toks, globTok{lit: rest})
			rest = ""
		case j > 0:
			g.toks = append(g.toks, globTok{lit: rest[:j]})
			rest = rest[j:]
		case strings.HasPrefix(rest, "**"):
			g.toks = append(g.toks, globTok{star: 2})
			rest, n = rest[2:], n+1
		default:
			g.toks = append(g.toks, globTok{star: 1})
			rest, n = rest[1:], n+1
		}
	}
	if n > maxWildcards {
		return g, errManyWildcards
	}
	return g, nil
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
	return matchToks(g.toks, s)
}

func matchToks(toks []globTok, s string) bool {
	for len(toks) > 0 {
		t := toks[0]
		toks = toks[1:]
		if t.star == 0 {
			if !strings.HasPrefix(s, t.lit) {
				return false
			}
			s = s[len(t.lit):]
			continue
		}
		if len(toks) == 0 { // trailing wildcard
			return t.star == 2 || strings.IndexByte(s, '/') < 0
		}
		for i := 0; i <= len(s); i++ {
			if matchToks(toks, s[i:]) {
				return true
			}
			if i < len(s) && t.star == 1 && s[i] == '/' {
				return false
			}
		}
		return false
	}
	return s == ""
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
