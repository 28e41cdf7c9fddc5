package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// resolve agrees with filepath.EvalSymlinks and names every link on the
// way: policy_dir itself, a folder above it, relative and absolute
// targets, links to links, and ".." inside a target.
func TestResolveListsTheLinksOfPolicyDir(t *testing.T) {
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	j := func(p ...string) string { return filepath.Join(append([]string{root}, p...)...) }
	for _, d := range []string{"releases/v1/policies", "releases/v2/policies"} {
		if err := os.MkdirAll(j(d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	links := map[string]string{
		"current":  "releases/v1",                   // relative
		"previous": j("releases", "v2"),             // absolute
		"pol":      "current/policies",              // through another link
		"alias":    "pol",                           // a link to a link
		"up":       "releases/v2/policies/../../v1", // ".." inside a target
	}
	for name, target := range links {
		if err := os.Symlink(target, j(name)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		path  string
		links []string
	}{
		{j("releases", "v1", "policies"), nil},
		{j("current", "policies"), []string{j("current")}},
		{j("previous", "policies"), []string{j("previous")}},
		{j("alias"), []string{j("alias"), j("pol"), j("current")}},
		{j("up", "policies"), []string{j("up")}},
		{j("releases", "v1", "..", "v2", "policies"), nil},
	} {
		links, got, err := resolve(c.path)
		want, _ := filepath.EvalSymlinks(c.path)
		if err != nil || got != want || !slices.Equal(links, c.links) {
			t.Errorf("resolve(%s) = %v, %s, %v; want %v, %s", c.path, links, got, err, c.links, want)
		}
	}
	if links, _, err := resolve(j("current", "missing", "policies")); err == nil || !slices.Equal(links, []string{j("current"), j("releases", "v1", "missing")}) {
		t.Errorf("resolve of a missing path: %v, %v; want an error with the links so far and the missing path", links, err)
	}
	os.Symlink("loop2", j("loop1"))
	os.Symlink("loop1", j("loop2"))
	if _, _, err := resolve(j("loop1")); err == nil {
		t.Error("resolve of a link loop: no error")
	}
}
