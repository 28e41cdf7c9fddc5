package policies_test

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/policies/policygen"
)

// Two releases of a policy directory. Release 1: agents read /kb.
// Release 2: agents may also write /kb, except /kb/admin (zz-deny.hcl).
// No release allows DELETE /kb/admin/keys; release 1's list of files
// (kb.hcl) with release 2's kb.hcl would.
const (
	release1KB = `rule "kb-read" {
  effect = "allow"
  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/**"]
    }
  }
}
`
	release2KB = `rule "kb-write" {
  effect = "allow"
  action {
    http { paths = ["/kb/**"] }
  }
}
`
	release2Deny = `rule "kb-admin" {
  effect = "deny"
  action {
    http { paths = ["/kb/admin/**"] }
  }
}
`
	release1Rules = "kb-read"
	release2Rules = "kb-admin,kb-write"
)

func writeFile(t *testing.T, path, src string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
}

// releases writes release 1 and 2 under root/v1 and root/v2.
func releases(t *testing.T, root string) (v1, v2 string) {
	v1, v2 = filepath.Join(root, "v1"), filepath.Join(root, "v2")
	writeFile(t, filepath.Join(v1, "kb.hcl"), release1KB)
	writeFile(t, filepath.Join(v2, "kb.hcl"), release2KB)
	writeFile(t, filepath.Join(v2, "zz-deny.hcl"), release2Deny)
	return v1, v2
}

// flip points link at target as an atomic deploy does (ln -sfn: a new
// symbolic link renamed over the old one).
func flip(t testing.TB, link, target string) {
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

func ruleNames(s *policies.Set) string {
	if s == nil {
		return "<no set>"
	}
	var names []string
	for _, r := range s.Rules() {
		names = append(names, r.Name)
	}
	slices.Sort(names)
	return strings.Join(names, ",")
}

func deleteAdmin(in *policies.Input) { in.Action.Method = "DELETE"; in.Action.Path = "/kb/admin/keys" }

// The policy directory is a symbolic link flipped from release 1 to
// release 2 after the load listed the files and before it read them. The
// load must install one release whole (here release 2, the one in force
// when it finished), never release 1's list of files read from release 2.
func TestLoadDuringSymlinkFlipInstallsOneRelease(t *testing.T) {
	root := t.TempDir()
	v1, v2 := releases(t, root)
	link := filepath.Join(root, "policies")
	if err := os.Symlink(v1, link); err != nil {
		t.Fatal(err)
	}
	flips := 0
	defer policies.SetLoadHook(func(step string) {
		if flips == 0 {
			flip(t, link, v2)
		}
		flips++
	})()
	var store policies.Store
	if diags := store.Reload(link); diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := ruleNames(store.Set()); got != release2Rules {
		t.Fatalf("the load installed rules [%s]; release 1 has [%s], release 2 [%s]", got, release1Rules, release2Rules)
	}
	if d := store.Decide(input(deleteAdmin)); d.Allow {
		t.Fatalf("DELETE /kb/admin/keys allowed by %v", d.RuleNames())
	}
}

// A Kubernetes ConfigMap volume: the mounted directory holds ..data, a
// symbolic link to a timestamped directory, and one symbolic link per key
// through ..data. An update writes a new timestamped directory, swaps
// ..data and adds links for new keys. The load races that swap.
func TestLoadDuringConfigMapSwapInstallsOneRelease(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "..2026_12_07_1", "kb.hcl"), release1KB)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.Symlink("..2026_12_07_1", filepath.Join(dir, "..data")))
	must(os.Symlink("..data/kb.hcl", filepath.Join(dir, "kb.hcl")))
	swapped := false
	defer policies.SetLoadHook(func(step string) {
		if swapped {
			return
		}
		swapped = true
		writeFile(t, filepath.Join(dir, "..2026_12_07_2", "kb.hcl"), release2KB)
		writeFile(t, filepath.Join(dir, "..2026_12_07_2", "zz-deny.hcl"), release2Deny)
		flip(t, filepath.Join(dir, "..data"), "..2026_12_07_2")
		must(os.Symlink("..data/zz-deny.hcl", filepath.Join(dir, "zz-deny.hcl")))
	})()
	var store policies.Store
	if diags := store.Reload(dir); diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := ruleNames(store.Set()); got != release2Rules {
		t.Fatalf("the load installed rules [%s]; release 1 has [%s], release 2 [%s]", got, release1Rules, release2Rules)
	}
	if d := store.Decide(input(deleteAdmin)); d.Allow {
		t.Fatalf("DELETE /kb/admin/keys allowed by %v", d.RuleNames())
	}
}

// A directory that changes during every attempt to load it is not
// installed: the reload fails with an error saying so and the last good
// set stays in force.
func TestReloadOfChangingDirectoryKeepsLastGoodSet(t *testing.T) {
	root := t.TempDir()
	v1, v2 := releases(t, root)
	link := filepath.Join(root, "policies")
	if err := os.Symlink(v1, link); err != nil {
		t.Fatal(err)
	}
	var store policies.Store
	if diags := store.Reload(link); diags.HasErrors() {
		t.Fatal(diags)
	}
	good := store.Set()
	n := 0
	defer policies.SetLoadHook(func(string) { // the deployer flips at every attempt
		n++
		if n%2 == 1 {
			flip(t, link, v2)
		} else {
			flip(t, link, v1)
		}
	})()
	diags := store.Reload(link)
	if !diags.HasErrors() || !strings.Contains(diags.Error(), "changed while") {
		t.Fatalf("reload of a directory changing at every attempt: %v (rules [%s])", diags, ruleNames(store.Set()))
	}
	if store.Set() != good {
		t.Fatalf("the failed reload replaced the last good set: rules [%s]", ruleNames(store.Set()))
	}
	if n < 2 || n > 10 {
		t.Errorf("%d attempts; want a few, bounded", n)
	}
}

// Reloads racing a deployer that keeps flipping the symbolic link between
// the releases (no hook: the real race) only ever install a whole release.
// Before the fix this mixed the releases within about a hundred reloads;
// the bound keeps the test short.
func TestReloadRacingSymlinkFlipsInstallsWholeReleases(t *testing.T) {
	root := t.TempDir()
	v1, v2 := releases(t, root)
	link := filepath.Join(root, "policies")
	if err := os.Symlink(v1, link); err != nil {
		t.Fatal(err)
	}
	var stop atomic.Bool
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; !stop.Load(); i++ {
			target := v1
			if i%2 == 0 {
				target = v2
			}
			tmp := link + ".tmp"
			os.Remove(tmp)
			if os.Symlink(target, tmp) != nil || os.Rename(tmp, link) != nil {
				return
			}
		}
	}()
	defer func() { stop.Store(true); <-done }()
	var store policies.Store
	for i := 0; i < 1000; i++ {
		store.Reload(link)
		if got := ruleNames(store.Set()); got != release1Rules && got != release2Rules && store.Set() != nil {
			d := store.Decide(input(deleteAdmin))
			t.Fatalf("reload %d installed rules [%s], in neither release; DELETE /kb/admin/keys: allow=%v by %v", i, got, d.Allow, d.RuleNames())
		}
	}
}

// Data files are part of the release: a flip between reading the policy
// files and reading a data file must not combine release 1's rules with
// release 2's data. Release 1 allows DELETE while acl.json says "open"
// (it says "closed"); release 2 has no DELETE rule and an "open" acl.json.
func TestLoadDuringSymlinkFlipReadsDataFromTheSameRelease(t *testing.T) {
	root := t.TempDir()
	v1, v2 := filepath.Join(root, "v1"), filepath.Join(root, "v2")
	writeFile(t, filepath.Join(v1, "kb.hcl"), `data "acl" {
  file = "acl.json"
}
rule "kb-delete" {
  effect    = "allow"
  condition = data.acl.mode == "open"
  action {
    http { methods = ["DELETE"] }
  }
}
`)
	writeFile(t, filepath.Join(v1, "acl.json"), `{"mode": "closed"}`)
	writeFile(t, filepath.Join(v2, "kb.hcl"), `data "acl" {
  file = "acl.json"
}
`+release1KB)
	writeFile(t, filepath.Join(v2, "acl.json"), `{"mode": "open"}`)
	link := filepath.Join(root, "policies")
	if err := os.Symlink(v1, link); err != nil {
		t.Fatal(err)
	}
	flipped := false
	defer policies.SetLoadHook(func(step string) {
		if step == "data" && !flipped {
			flipped = true
			flip(t, link, v2)
		}
	})()
	var store policies.Store
	if diags := store.Reload(link); diags.HasErrors() {
		t.Fatal(diags)
	}
	if !flipped {
		t.Fatal("the data file was not read")
	}
	if d := store.Decide(input(deleteAdmin)); d.Allow {
		t.Fatalf("DELETE /kb/admin/keys allowed by %v: release 1's rules with release 2's data", d.RuleNames())
	}
	if got := ruleNames(store.Set()); got != release1Rules {
		t.Fatalf("rules [%s], want release 2's [%s]", got, release1Rules)
	}
}

// A policy directory somewhere under a folder named tests is not a folder
// of test files: its rules load (the whole path was matched against
// "/tests/" before, and such a directory loaded no rule at all).
func TestLoadPolicyDirUnderTestsFolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tests", "policies")
	writeFile(t, filepath.Join(dir, "kb.hcl"), release1KB)
	writeFile(t, filepath.Join(dir, "kb_test.hcl"), "this is not read by Load")
	set, diags := policies.Load(dir)
	if diags.HasErrors() {
		t.Fatal(diags)
	}
	if got := ruleNames(set); got != release1Rules {
		t.Fatalf("rules [%s], want [%s]", got, release1Rules)
	}
}

// A file listed and then removed before it is read (a ConfigMap update
// dropping a key: the kubelet removes the key's link after the swap) makes
// the load start again, not fail.
func TestLoadRetriesWhenAListedFileGoesAway(t *testing.T) {
	root := t.TempDir()
	_, v2 := releases(t, root)
	removed := false
	defer policies.SetLoadHook(func(step string) {
		if step == "listed" && !removed {
			removed = true
			if err := os.Remove(filepath.Join(v2, "zz-deny.hcl")); err != nil {
				t.Error(err)
			}
		}
	})()
	set, diags := policies.Load(v2)
	if diags.HasErrors() {
		t.Fatalf("a file removed during the load failed it: %v", diags)
	}
	if got := ruleNames(set); got != "kb-write" {
		t.Fatalf("rules [%s], want the directory as it is now: [kb-write]", got)
	}
}

// BenchmarkLoadDir compares a load from disk (resolving the directory,
// reading 50 files of 20 rules each, and checking nothing changed) with
// compiling the same sources from memory, in one run: what reading a
// release consistently adds to a reload.
func BenchmarkLoadDir(b *testing.B) {
	dir := b.TempDir()
	rules := policygen.Rules(1000)
	var files []policies.File
	for i := 0; i < 50; i++ {
		name := fmt.Sprintf("gen%02d.hcl", i)
		src := policygen.HCL(rules[i*20 : (i+1)*20])
		files = append(files, policies.File{Name: name, Src: []byte(src)})
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	link := filepath.Join(b.TempDir(), "policies")
	if err := os.Symlink(dir, link); err != nil {
		b.Fatal(err)
	}
	b.Run("memory", func(b *testing.B) {
		for b.Loop() {
			if _, diags := policies.LoadFiles(files); diags.HasErrors() {
				b.Fatal(diags)
			}
		}
	})
	b.Run("disk", func(b *testing.B) {
		for b.Loop() {
			if _, diags := policies.Load(link); diags.HasErrors() {
				b.Fatal(diags)
			}
		}
	})
}
