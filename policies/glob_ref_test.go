package policies

import (
	"strings"
	"testing"
)

// refGlob is the backtracking matcher that glob replaced (issue 16), kept
// as the reference of FuzzGlob: same semantics, exponential time in the
// worst case. It assumes a pattern compileGlob accepts.
func refGlob(p, s string) bool {
	type tok struct {
		lit  string
		star uint8 // 0 literal, 1 "*", 2 "**"
	}
	var toks []tok
	for rest := p; rest != ""; {
		j := strings.IndexByte(rest, '*')
		switch {
		case j < 0:
			toks = append(toks, tok{lit: rest})
			rest = ""
		case j > 0:
			toks = append(toks, tok{lit: rest[:j]})
			rest = rest[j:]
		case strings.HasPrefix(rest, "**"):
			toks = append(toks, tok{star: 2})
			rest = rest[2:]
		default:
			toks = append(toks, tok{star: 1})
			rest = rest[1:]
		}
	}
	var match func(toks []tok, s string) bool
	match = func(toks []tok, s string) bool {
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
				if match(toks, s[i:]) {
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
	return match(toks, s)
}

// foldGlob maps arbitrary bytes onto "*", "/" and five letters, so that
// fuzzed patterns and inputs share characters.
func foldGlob(x string) string {
	b := []byte(x)
	for i, c := range b {
		switch c % 8 {
		case 0, 1:
			b[i] = '*'
		case 2:
			b[i] = '/'
		default:
			b[i] = 'a' + c%8 - 3
		}
	}
	return string(b)
}

// stretchGlob repeats every letter ten times: patterns whose middle spans
// several words of the NFA.
func stretchGlob(x string) string {
	var b strings.Builder
	for i := 0; i < len(x); i++ {
		if x[i] == '*' || x[i] == '/' {
			b.WriteByte(x[i])
		} else {
			b.WriteString(strings.Repeat(x[i:i+1], 10))
		}
	}
	return b.String()
}

// refBudget is the longest input the reference is given for a pattern
// with k wildcards, so that it stays fast (it is O(len(s)^k)).
func refBudget(k int) int {
	switch {
	case k <= 1:
		return 1 << 10
	case k == 2:
		return 400
	case k == 3:
		return 100
	case k <= 5:
		return 40
	}
	return 20
}

func wildcards(p string) int { return strings.Count(p, "*") - strings.Count(p, "**") }

// FuzzGlob: the linear matcher agrees with the backtracking reference on
// every pattern compileGlob accepts. A pattern starting with byte 0 is
// used as it is, one starting with byte 1 is folded and stretched (with
// its input), any other is folded.
func FuzzGlob(f *testing.F) {
	for _, tt := range globTests {
		f.Add(tt.pattern, tt.s)
	}
	f.Add("/**/x/**/x/**/x/**/y", "/x/x/x/x/x/x/x/x/y")
	f.Add("/**a**a**a**a**a**a**a**b", "/aaaaaaaaaaaaab")
	f.Add("\x00a*b/**/c*", "axb/q/r/cd")
	f.Add("\x01cd*cc**e/*f", "cdcdcceeee/ff")
	f.Fuzz(func(t *testing.T, p, s string) {
		if len(p) > 40 || len(s) > 64 {
			return
		}
		switch {
		case strings.HasPrefix(p, "\x00"):
			p = p[1:]
		case strings.HasPrefix(p, "\x01"):
			p, s = stretchGlob(foldGlob(p[1:])), stretchGlob(foldGlob(s))
		default:
			p, s = foldGlob(p), foldGlob(s)
		}
		g, err := compileGlob(p)
		if err != nil || len(s) > refBudget(wildcards(p)) {
			return
		}
		if got, want := g.match(s), refGlob(p, s); got != want {
			t.Fatalf("glob %q match %q = %v, reference %v", p, s, got, want)
		}
	})
}

// TestGlobReference: the table agrees with the reference, and long
// patterns (an NFA of 2 to 4 words) agree with it on inputs built to
// match or nearly match.
func TestGlobReference(t *testing.T) {
	for _, tt := range globTests {
		if got := refGlob(tt.pattern, tt.s); got != tt.want {
			t.Errorf("refGlob(%q, %q) = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
	for _, n := range []int{20, 29, 30, 31, 50, 60, 61, 62, 70} {
		lit := strings.Repeat("ab", n)[:n]
		p := "/x/*" + lit + "**" + lit + "*/y"
		g, err := compileGlob(p)
		if len(p)-len("/x/")-len("/y") > maxSpan {
			if err == nil {
				t.Errorf("span %d: no error", len(p))
			}
			continue
		}
		if err != nil {
			t.Fatalf("compileGlob(%d): %v", n, err)
		}
		if g.nfa.words != (2*n+3)/64+1 {
			t.Errorf("span %d: %d words", n, g.nfa.words)
		}
		for _, s := range []string{
			"/x/" + lit + lit + "/y", "/x/q" + lit + "/r/" + lit + "s/y", "/x/q" + lit + "/r/" + lit + "/s/y",
			"/x/q/" + lit + "/r/" + lit + "s/y", "/x/" + lit + lit[1:] + "/y", "/x/" + lit + "/" + lit + "/y",
		} {
			if got, want := g.match(s), refGlob(p, s); got != want {
				t.Errorf("span %d: match %q = %v, reference %v", n, s, got, want)
			}
		}
	}
}
