package verifier

import (
	"net/url"
	"path"
	"strings"
	"testing"
)

// FuzzCheckResourceURI: a file:, http: or https: URI that CheckResourceURI
// accepts names the path a server resolving it reads: url.Parse's decoded
// path is already clean (path.Clean changes nothing but a final "/") and
// has no backslash, so "file:///srv/**" cannot be left by resolving it.
func FuzzCheckResourceURI(f *testing.F) {
	for _, s := range []string{"file:///srv/notes.md", "file:///srv/../etc", "file:///srv/%2e%2e/x", "https://h/a%20b?x=1", "file:///srv/", "urn:x:..", "file:///{+path}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, uri string) {
		if CheckResourceURI(uri) != nil {
			return
		}
		u, err := url.Parse(uri)
		if err != nil {
			return // not a URI any server resolves
		}
		switch strings.ToLower(u.Scheme) {
		case "file", "http", "https":
		default:
			return
		}
		if u.Scheme != strings.ToLower(u.Scheme) {
			t.Fatalf("accepted %q with the scheme %q", uri, u.Scheme)
		}
		if u.Opaque != "" {
			t.Fatalf("accepted %q, opaque to url.Parse (%q)", uri, u.Opaque)
		}
		if strings.Contains(u.Path, `\`) {
			t.Fatalf("accepted %q, whose path %q has a backslash", uri, u.Path)
		}
		if u.Path == "" || u.Path == "/" {
			return
		}
		if c := path.Clean(u.Path); c != strings.TrimSuffix(u.Path, "/") {
			t.Fatalf("accepted %q: its path %q resolves to %q", uri, u.Path, c)
		}
	})
}
