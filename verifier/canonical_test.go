package verifier

import (
	"fmt"
	"net/url"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/policies"
)

func TestCanonicalPath(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"/", "/", ""},
		{"/kb/doc", "/kb/doc", ""},
		{"/kb/", "/kb/", ""},
		{"/kb/%61dmin/keys", "/kb/admin/keys", ""},
		{"/kb/x/../admin/keys", "/kb/admin/keys", ""},
		{"/kb/./a", "/kb/a", ""},
		{"/kb//a", "/kb/a", ""},
		{"/kb/a/..", "/kb/", ""},
		{"/..", "/", ""},
		{"/kb/%2e%2e/x", "/x", ""},
		{"/a%20b", "/a%20b", ""},
		{"/a%3bb", "/a%3Bb", ""},
		{"/kb/admin%2Fkeys", "", "encoded"},
		{"/kb/%5c", "", "encoded"},
		{"/kb/%00", "", "encoded"},
		{"/kb\\admin", "", "backslash"},
		{"/kb/%zz", "", "malformed"},
		{"/kb/%4", "", "malformed"},
		{"kb", "", "does not start"},
		{"/a b", "", "percent-encoded"},
		{"/caf\xc3\xa9", "", "percent-encoded"},
	} {
		got, err := CanonicalPath(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("CanonicalPath(%q) = %q, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CanonicalPath(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		if err := CheckPath(tc.in); (err == nil) != (tc.in == tc.want) {
			t.Errorf("CheckPath(%q) = %v", tc.in, err)
		}
	}
	if _, err := CanonicalPath("/" + strings.Repeat("a", MaxPathLen)); err == nil || !err.(*InputError).TooLarge {
		t.Errorf("long path: %v", err)
	}
}

func TestCheckMethod(t *testing.T) {
	for m, ok := range map[string]bool{"GET": true, "DELETE": true, "M-SEARCH": true, "delete": false, "Get": false, "": false, "GE T": false, "GET\x00": false, strings.Repeat("A", 33): false} {
		if err := CheckMethod(m); (err == nil) != ok {
			t.Errorf("CheckMethod(%q) = %v", m, err)
		}
	}
}

// FuzzCanonicalPath checks the properties the verifier relies on: the
// fast path agrees with the full one, canonical forms are fixed points,
// and a path the pipeline accepts means the same to a Go upstream after
// decoding and path.Clean (what net/http's ServeMux and http.FileServer
// do), so no upstream reading can reach another path than the decided one.
func FuzzCanonicalPath(f *testing.F) {
	for _, s := range []string{"/", "/kb/doc", "/kb/%61dmin", "/kb/x/../a", "//a", "/a/./b/", "/a%2fb", "/a%20b", "/%2e%2e/", "/a/b/..", "/a;b", "/a%3Ab", "/a{b", "/a%7Bb", "/a[b]"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		if isPlainCanonical(p) {
			if c, err := CanonicalPath(p); err != nil || c != p {
				t.Fatalf("fast path accepts %q, full path gives %q, %v", p, c, err)
			}
		}
		c, err := CanonicalPath(p)
		if err != nil {
			return
		}
		if c2, err := CanonicalPath(c); err != nil || c2 != c {
			t.Fatalf("canonical %q of %q is not a fixed point: %q, %v", c, p, c2, err)
		}
		if CheckPath(c) != nil {
			t.Fatalf("CheckPath refuses canonical %q", c)
		}
		dec, err := url.PathUnescape(c)
		if err != nil {
			t.Fatalf("canonical %q does not decode: %v", c, err)
		}
		if fwd := (&url.URL{Path: dec, RawPath: c}).EscapedPath(); fwd != c {
			t.Fatalf("canonical %q would be forwarded by Go's reverse proxy as %q", c, fwd)
		}
		clean := path.Clean(dec)
		if strings.HasSuffix(dec, "/") && clean != "/" {
			clean += "/"
		}
		if clean != dec {
			t.Fatalf("accepted %q decodes to %q, which a Go upstream cleans to %q", c, dec, clean)
		}
	})
}

func TestCacheBoundedAndEvictsUnused(t *testing.T) {
	c := newCache[int](3)
	now := time.Unix(1000, 0)
	later := now.Add(time.Hour)
	for i, k := range []string{"a", "b", "c"} {
		c.put(cacheKey{CredentialPEM, k}, i, later, now, 0)
	}
	c.get(cacheKey{CredentialPEM, "a"}, now) // a is used: it survives the next eviction
	c.put(cacheKey{CredentialPEM, "d"}, 3, later, now, 0)
	if _, ok := c.get(cacheKey{CredentialPEM, "a"}, now); !ok || c.len() != 3 {
		t.Fatalf("used entry evicted, or the cache grew: %d", c.len())
	}
	if _, ok := c.get(cacheKey{CredentialJWT, "a"}, now); ok {
		t.Fatal("a key of another kind was found")
	}
	if _, ok := c.get(cacheKey{CredentialPEM, "a"}, later); ok {
		t.Fatal("expired entry returned")
	}
	for i := 0; i < 100; i++ {
		c.put(cacheKey{CredentialPEM, strings.Repeat("x", i)}, i, later, now, 0)
	}
	if c.len() != 3 {
		t.Fatalf("cache holds %d entries, max 3", c.len())
	}
}

// TestPathPatternsAgreeWithCheckPath: a policy path pattern without
// wildcards loads exactly when the verifier accepts the same string as a
// request path — so no pattern an operator can write names a path the
// verifier never decides, and every decided path can be named (a literal
// "*" is a pattern's wildcard, left out).
func TestPathPatternsAgreeWithCheckPath(t *testing.T) {
	for c := 0; c < 256; c++ {
		if c == '*' {
			continue
		}
		for _, p := range []string{"/a" + string([]byte{byte(c)}) + "b", fmt.Sprintf("/a%%%02Xb", c), fmt.Sprintf("/a%%%02xb", c)} {
			if got, want := policies.CheckPathPattern(p) == nil, CheckPath(p) == nil; got != want {
				t.Errorf("%q: pattern check %v, CheckPath %v", p, policies.CheckPathPattern(p), CheckPath(p))
			}
		}
	}
}

// TestResourcePatternsAgreeWithCheckResourceURI: an MCP resource pattern
// without wildcards loads exactly when the verifier accepts the same
// string as a resource URI (file: and https: paths, every byte literal
// and escaped), so no pattern names a URI the verifier never decides.
func TestResourcePatternsAgreeWithCheckResourceURI(t *testing.T) {
	for _, base := range []string{"file:///a", "https://h.example.org/a"} {
		for c := 0; c < 256; c++ {
			if c == '*' {
				continue
			}
			for _, p := range []string{base + string([]byte{byte(c)}) + "b", fmt.Sprintf("%s%%%02Xb", base, c), fmt.Sprintf("%s%%%02xb", base, c)} {
				if got, want := policies.CheckResourcePattern(p) == nil, CheckResourceURI(p) == nil; got != want {
					t.Errorf("%q: pattern check %v, CheckResourceURI %v", p, policies.CheckResourcePattern(p), CheckResourceURI(p))
				}
			}
		}
	}
}
