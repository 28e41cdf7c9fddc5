// Package tsagent builds the TypeScript agent of examples/ts-agent for the
// tests that run it (its interop test, the e2e test on the real SPIRE):
// npm ci when node_modules is not current (npm's cache under the
// repository's .cache/npm), tsc when dist/ is older than the sources. The
// build holds a file lock, so that test packages running in parallel
// neither install nor compile over each other, and a fresh build is not
// redone.
package tsagent

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// Build makes examples/ts-agent ready to run and returns the node binary
// and the example's directory (scripts are under dir/dist). root is the
// repository's root.
func Build(tb testing.TB, root string) (node, dir string) {
	tb.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		tb.Fatal("node is needed for the TypeScript agent: ", err)
	}
	dir = filepath.Join(root, "examples", "ts-agent")
	cache := filepath.Join(root, ".cache")
	if err := os.MkdirAll(cache, 0o755); err != nil {
		tb.Fatal(err)
	}
	lock, err := os.OpenFile(filepath.Join(cache, "ts-agent.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		tb.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		tb.Fatal(err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	var steps [][]string
	if !newer(filepath.Join(dir, "node_modules", ".package-lock.json"), filepath.Join(dir, "package-lock.json")) {
		steps = append(steps, []string{"npm", "ci", "--no-audit", "--no-fund", "--cache", filepath.Join(cache, "npm")})
	}
	srcs, _ := filepath.Glob(filepath.Join(dir, "src", "*.ts"))
	if len(steps) > 0 || !newer(filepath.Join(dir, "dist", "agent.js"), append(srcs, filepath.Join(dir, "tsconfig.json"))...) {
		steps = append(steps, []string{"npm", "run", "build"})
	}
	for _, args := range steps {
		cmd := exec.Command(args[0], args[1:]...)
		cmd.Dir = dir
		if out, err := cmd.CombinedOutput(); err != nil {
			tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	return node, dir
}

// newer reports whether path exists and is at least as new as every one of
// than.
func newer(path string, than ...string) bool {
	fi, err := os.Stat(path)
	if err != nil {
		return false
	}
	for _, t := range than {
		ti, err := os.Stat(t)
		if err != nil || ti.ModTime().After(fi.ModTime()) {
			return false
		}
	}
	return true
}
