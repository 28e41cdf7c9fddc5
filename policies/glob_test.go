package policies

import "testing"

var globTests = []struct {
	pattern, s string
	want       bool
}{
	{"spiffe://example.org/agent/a/task/T", "spiffe://example.org/agent/a/task/T", true},
	{"spiffe://example.org/agent/a/task/T", "spiffe://example.org/agent/a/task/T2", false},
	{"spiffe://example.org/agent/*/task/T", "spiffe://example.org/agent/b/task/T", true},
	{"spiffe://example.org/agent/*/task/T", "spiffe://example.org/agent/b/c/task/T", false},
	{"spiffe://example.org/agent/*", "spiffe://example.org/agent/b", true},
	{"spiffe://example.org/agent/*", "spiffe://example.org/agent/b/task/T", false},
	{"spiffe://example.org/agent/**", "spiffe://example.org/agent/b/task/T", true},
	{"spiffe://example.org/agent/**", "spiffe://example.org/agent", false},
	{"spiffe://*/agent/a/**", "spiffe://other.org/agent/a/task/x", true},
	{"**", "anything/at/all", true},
	{"/kb/**/raw", "/kb/a/b/raw", true},
	{"/kb/**/raw", "/kb/a/b/cooked", false},
	{"search_*", "search_docs", true},
	{"search_*", "fetch_docs", false},
	{"*_docs", "search_docs", true},
	{"a*b*c", "axxbyyc", true},
	{"a*b*c", "axxbyy", false},
	{"openai/*", "openai/gpt-4o", true},
	{"openai/*", "anthropic/claude", false},
	{"", "", true},
	{"*", "", true},
	{"/a/*/b/**/c*", "/a/x/b/y/z/cd", true},
	{"/a/*/b/**/c*", "/a/x/b/y/z/cd/e", false},
	{"/**/x/**/x/**/x/**/y", "/x/x/x/y", false},
	{"/**/x/**/x/**/x/**/y", "/a/x/b/x/c/x/d/y", true},
	{"**/a/**", "/a/", true},
	{"*a*", "/a", false},
	{"x**", "x", true},
}

func TestGlob(t *testing.T) {
	for _, tt := range globTests {
		g, err := compileGlob(tt.pattern)
		if err != nil {
			t.Fatalf("compileGlob(%q): %v", tt.pattern, err)
		}
		if got := g.match(tt.s); got != tt.want {
			t.Errorf("glob %q match %q = %v, want %v", tt.pattern, tt.s, got, tt.want)
		}
	}
}

func TestGlobErrors(t *testing.T) {
	for _, p := range []string{"a***", "*a*a*a*a*a*a*a*a*a"} {
		if _, err := compileGlob(p); err == nil {
			t.Errorf("compileGlob(%q) = nil error", p)
		}
	}
}

func TestGlobCovers(t *testing.T) {
	tests := []struct {
		p, q string
		want bool
	}{
		{"/kb/**", "/kb/docs/*", true},
		{"/kb/*", "/kb/docs", true},
		{"/kb/*", "/kb/**", false},
		{"**", "/x/**", true},
		{"/kb/a", "/kb/*", false},
	}
	for _, tt := range tests {
		p, _ := compileGlob(tt.p)
		q, _ := compileGlob(tt.q)
		if got := p.covers(&q); got != tt.want {
			t.Errorf("%q covers %q = %v, want %v", tt.p, tt.q, got, tt.want)
		}
	}
}
