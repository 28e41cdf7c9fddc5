package daemon_test

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/verifier/daemon"
)

// kbPost is kbPolicy with GET withdrawn (POST only).
var kbPost = strings.Replace(kbPolicy, `"GET"`, `"POST"`, 1)

// runWatched runs f's daemon until the test ends, with a short debounce,
// and returns once its policy watch is set up.
func runWatched(t *testing.T, f *fixture) { runDebounced(t, f, 10*time.Millisecond) }

func runDebounced(t *testing.T, f *fixture, debounce time.Duration) {
	t.Helper()
	t.Cleanup(daemon.SetWatchDebounce(debounce))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.d.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	select {
	case <-f.d.Watching():
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not set up the policy watch")
	}
}

// eventually waits (10 s at most) until cond holds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal(what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// symlinkRelease moves f's policy directory to release dir v1 and makes
// policy_dir a symbolic link to it, as an atomic deploy lays it out.
func symlinkRelease(t *testing.T, f *fixture) (v1 string) {
	t.Helper()
	v1 = filepath.Join(f.dir, "releases", "v1")
	os.MkdirAll(filepath.Dir(v1), 0o755)
	if err := os.Rename(f.policyDir, v1); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(v1, f.policyDir); err != nil {
		t.Fatal(err)
	}
	return v1
}

// release writes a release directory holding kb.hcl.
func release(t *testing.T, f *fixture, name, kb string) string {
	t.Helper()
	dir := filepath.Join(f.dir, "releases", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "kb.hcl"), kb)
	return dir
}

// flipLink points link at target as ln -sfn does: a new link renamed over
// the old one.
func flipLink(t *testing.T, link, target string) {
	t.Helper()
	tmp := link + ".tmp"
	os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil {
		t.Fatal(err)
	}
}

func (f *fixture) getAllowed(t *testing.T, cert string) func() bool {
	return func() bool { return f.check(t, cert, "GET", "/kb/doc")["allow"] == true }
}

func not(cond func() bool) func() bool { return func() bool { return !cond() } }

// policy_dir is a symbolic link flipped to a new release: the flip
// reloads the policy (no SIGHUP), and then the new release's files are the
// ones watched, after a SIGHUP too.
func TestSymlinkedPolicyDirFlipReloads(t *testing.T) {
	f := start(t)
	symlinkRelease(t, f)
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	runWatched(t, f)
	reader := f.taskCert(t, "kb:read")
	get := f.getAllowed(t, reader)
	if !get() {
		t.Fatal("release 1 does not allow GET /kb/doc")
	}
	v2 := release(t, f, "v2", kbPost) // release 2 withdraws GET
	flipLink(t, f.policyDir, v2)
	eventually(t, "after policy_dir was flipped to release 2, release 1 still decides (GET /kb/doc allowed): the flip was not seen", not(get))

	write(t, filepath.Join(v2, "kb.hcl"), kbPolicy)
	eventually(t, "an edit of release 2 (in force) was not loaded: the watch is not on release 2", get)

	if err := f.d.Reload(); err != nil { // SIGHUP
		t.Fatal(err)
	}
	write(t, filepath.Join(v2, "kb.hcl"), kbPost)
	eventually(t, "after a SIGHUP, an edit of release 2 (in force) was not loaded", not(get))
}

// reloadErrors is agentid_policy_reloads_total{result="error"}.
func reloadErrors(t *testing.T, f *fixture) int {
	m := regexp.MustCompile(`agentid_policy_reloads_total\{result="error"\} (\d+)`).FindStringSubmatch(metricsText(t, f))
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// A flip to a broken release keeps the last good policy (and says so);
// the fix of the broken release, now policy_dir's target, is then loaded
// by the watch.
func TestSymlinkFlipToBrokenReleaseKeepsLastGoodUntilFixed(t *testing.T) {
	f := start(t)
	symlinkRelease(t, f)
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	runWatched(t, f)
	get := f.getAllowed(t, f.taskCert(t, "kb:read"))
	v2 := release(t, f, "v2", kbPost+"\nrule \"broken\" {\n  effect = \"maybe\"\n}\n")
	flipLink(t, f.policyDir, v2)
	eventually(t, "the flip to a broken release was not reloaded (no reload error counted)", func() bool { return reloadErrors(t, f) > 0 })
	if !get() {
		t.Fatal("a broken release replaced the last good policy")
	}
	write(t, filepath.Join(v2, "kb.hcl"), kbPost)
	eventually(t, "the fixed release 2 was not loaded: its directory is not watched", not(get))
}

// A Kubernetes ConfigMap volume as policy_dir: the keys are symbolic links
// through ..data, which an update swaps to a new timestamped directory.
func TestConfigMapPolicyDirSwapReloads(t *testing.T) {
	f := start(t)
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	ts1 := filepath.Join(f.policyDir, "..2026_12_07_08_00_00.1")
	must(os.Mkdir(ts1, 0o755))
	must(os.Rename(filepath.Join(f.policyDir, "kb.hcl"), filepath.Join(ts1, "kb.hcl")))
	must(os.Symlink(filepath.Base(ts1), filepath.Join(f.policyDir, "..data")))
	must(os.Symlink("..data/kb.hcl", filepath.Join(f.policyDir, "kb.hcl")))
	must(f.d.Reload())
	runWatched(t, f)
	get := f.getAllowed(t, f.taskCert(t, "kb:read"))
	if !get() {
		t.Fatal("the ConfigMap's first version does not allow GET /kb/doc")
	}
	ts2 := filepath.Join(f.policyDir, "..2026_12_07_08_05_00.2")
	must(os.Mkdir(ts2, 0o755))
	write(t, filepath.Join(ts2, "kb.hcl"), kbPost)
	flipLink(t, filepath.Join(f.policyDir, "..data"), filepath.Base(ts2))
	must(os.RemoveAll(ts1))
	eventually(t, "the ConfigMap update (..data swapped) was not loaded", not(get))
}

// policy_dir under a symbolic link (Capistrano's layout:
// app/current -> releases/N, policy_dir through current): flipping current
// reloads the policy.
func TestPolicyDirUnderFlippedSymlinkReloads(t *testing.T) {
	f := start(t)
	app := filepath.Join(f.dir, "app")
	v1 := filepath.Join(app, "releases", "1", "policies")
	if err := os.MkdirAll(filepath.Dir(v1), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(f.policyDir, v1); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("releases/1", filepath.Join(app, "current")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("app/current/policies", f.policyDir); err != nil {
		t.Fatal(err)
	}
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	runWatched(t, f)
	get := f.getAllowed(t, f.taskCert(t, "kb:read"))
	if !get() {
		t.Fatal("release 1 does not allow GET /kb/doc")
	}
	v2 := filepath.Join(app, "releases", "2", "policies")
	if err := os.MkdirAll(v2, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(v2, "kb.hcl"), kbPost)
	flipLink(t, filepath.Join(app, "current"), "releases/2")
	eventually(t, "after app/current was flipped to release 2, release 1 still decides", not(get))
	write(t, filepath.Join(v2, "kb.hcl"), kbPolicy)
	eventually(t, "an edit of release 2 (in force) was not loaded", get)
}

// policy_dir, a real directory, replaced by another renamed into its place
// (mv policies policies.old; mv policies.new policies): the replacement
// reloads the policy, and its files are the ones watched afterwards.
func TestPolicyDirReplacedByRenameReloads(t *testing.T) {
	f := start(t)
	runWatched(t, f)
	get := f.getAllowed(t, f.taskCert(t, "kb:read"))
	if !get() {
		t.Fatal("the first policy does not allow GET /kb/doc")
	}
	next := filepath.Join(f.dir, "policies.new")
	if err := os.Mkdir(next, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(next, "kb.hcl"), kbPost)
	if err := os.Rename(f.policyDir, filepath.Join(f.dir, "policies.old")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(next, f.policyDir); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the policy directory replaced by a rename was not reloaded", not(get))
	write(t, filepath.Join(f.policyDir, "kb.hcl"), kbPolicy)
	eventually(t, "an edit of the new policy directory was not loaded: the watch is still on the old one", get)
}

// A link removed and made again (an ln that is not atomic), with a reload
// in the gap: that reload fails and keeps the last good policy, and the
// new link is still seen.
func TestPolicyDirMissingForAMomentReloadsWhenBack(t *testing.T) {
	f := start(t)
	symlinkRelease(t, f)
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	runWatched(t, f)
	get := f.getAllowed(t, f.taskCert(t, "kb:read"))
	v2 := release(t, f, "v2", kbPost)
	if err := os.Remove(f.policyDir); err != nil {
		t.Fatal(err)
	}
	if err := f.d.Reload(); err == nil { // a reload in the gap
		t.Fatal("a reload without policy_dir succeeded")
	}
	// and the watch's own reload for the removal, in the gap too
	eventually(t, "the removal of policy_dir was not seen", func() bool { return reloadErrors(t, f) >= 2 })
	if !get() {
		t.Fatal("a failed reload replaced the last good policy")
	}
	if err := os.Symlink(v2, f.policyDir); err != nil {
		t.Fatal(err)
	}
	eventually(t, "policy_dir made again after a reload in the gap was not reloaded", not(get))
}

// A data file named by an absolute path through a symbolic link of its
// own (a second ConfigMap, another release tree): flipping that link
// reloads the policy with the new data.
func TestDataFolderSymlinkFlipReloads(t *testing.T) {
	f := start(t)
	data1, data2 := filepath.Join(f.dir, "data-1"), filepath.Join(f.dir, "data-2")
	os.Mkdir(data1, 0o755)
	os.Mkdir(data2, 0o755)
	write(t, filepath.Join(data1, "acl.json"), `{"mode": "closed"}`)
	write(t, filepath.Join(data2, "acl.json"), `{"mode": "open"}`)
	os.Mkdir(filepath.Join(f.dir, "cfg"), 0o755)
	link := filepath.Join(f.dir, "cfg", "current") // in a folder nothing else has the daemon watch
	if err := os.Symlink("../data-1", link); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(f.policyDir, "wiki.hcl"), `
data "acl" {
  file = "`+filepath.Join(link, "acl.json")+`"
}
rule "wiki-open" {
  effect    = "allow"
  condition = data.acl.mode == "open"
  action {
    http { paths = ["/wiki/**"] }
  }
}
`)
	if err := f.d.Reload(); err != nil {
		t.Fatal(err)
	}
	runWatched(t, f)
	reader := f.taskCert(t, "kb:read")
	wiki := func() bool { return f.check(t, reader, "GET", "/wiki/doc")["allow"] == true }
	if wiki() {
		t.Fatal("data-1 says closed, and /wiki is allowed")
	}
	flipLink(t, link, "../data-2")
	eventually(t, "the data folder's link was flipped, and the new data was not loaded", wiki)
}
