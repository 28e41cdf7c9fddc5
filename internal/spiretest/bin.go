package spiretest

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// SPIREVersion is the SPIRE release that [Bin] provides.
const SPIREVersion = "1.13.3"

// BinEnv names the environment variable that overrides the folder holding
// spire-server and spire-agent.
const BinEnv = "AGENTID_SPIRE_BIN"

// spireBin caches the result of Bin for the test binary: SPIRE is built at
// most once, and a failed build fails every later test with the same output.
var spireBin struct {
	sync.Mutex
	dir string
	err error
}

// Bin returns the folder holding spire-server and spire-agent:
// $AGENTID_SPIRE_BIN if set, else <repo root>/.cache/spire/v1.13.3/bin.
// When the binaries are missing from the default folder it runs
// `make -C <repo root> spire` once, under a file lock so that parallel test
// binaries don't build twice, and fails the test with the output if that
// fails. A missing $AGENTID_SPIRE_BIN folder fails the test.
func Bin(t testing.TB) string {
	t.Helper()
	spireBin.Lock()
	defer spireBin.Unlock()
	if spireBin.dir == "" && spireBin.err == nil {
		spireBin.dir, spireBin.err = findOrBuildSPIRE()
	}
	if spireBin.err != nil {
		t.Fatalf("spiretest: %v", spireBin.err)
	}
	return spireBin.dir
}

func findOrBuildSPIRE() (string, error) {
	if dir := os.Getenv(BinEnv); dir != "" {
		if err := hasSPIRE(dir); err != nil {
			return "", fmt.Errorf("$%s=%s: %w (run `make spire`)", BinEnv, dir, err)
		}
		return dir, nil
	}
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, ".cache", "spire", "v"+SPIREVersion, "bin")
	if hasSPIRE(dir) == nil {
		return dir, nil
	}
	return dir, buildSPIRE(root, dir)
}

// hasSPIRE reports whether dir holds both executables.
func hasSPIRE(dir string) error {
	for _, name := range []string{"spire-server", "spire-agent"} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			return err
		}
		if fi.Mode()&0o111 == 0 {
			return fmt.Errorf("%s is not executable", fi.Name())
		}
	}
	return nil
}

// buildSPIRE runs `make spire` under an exclusive lock on
// .cache/spire/build.lock, unless another process built SPIRE while this one
// waited for the lock.
func buildSPIRE(root, dir string) error {
	unlock, err := lockFile(filepath.Join(root, ".cache", "spire", "build.lock"))
	if err != nil {
		return err
	}
	defer unlock()
	if hasSPIRE(dir) == nil {
		return nil
	}
	cmd := exec.Command("make", "-C", root, "spire")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("make spire: %w\n%s", err, out)
	}
	if err := hasSPIRE(dir); err != nil {
		return fmt.Errorf("make spire succeeded but %w\n%s", err, out)
	}
	return nil
}

// lockFile takes an exclusive flock on path, creating it and its folder.
func lockFile(path string) (unlock func(), err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return func() { f.Close() }, nil // closing releases the lock
}

// RepoRoot returns the folder of the go.mod found by walking up from the
// working directory (a test runs in its package folder).
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the working directory")
		}
		dir = parent
	}
}

// builds caches BuildCmd results by package for the test binary.
var builds struct {
	sync.Mutex
	m map[string]*build
}

type build struct {
	once sync.Once
	path string
	err  error
}

// BuildCmd builds the main package pkg (a path relative to the repository
// root, e.g. "./cmd/agentid-attestor") once per test binary and returns the
// absolute path of the executable. Binaries are kept under
// <repo root>/.cache/spiretest/bin, named after the package and the sha256
// of their content, so parallel test binaries never overwrite a binary that
// is running; files unused for a day are removed.
func BuildCmd(t testing.TB, pkg string) string {
	t.Helper()
	builds.Lock()
	if builds.m == nil {
		builds.m = make(map[string]*build)
	}
	b := builds.m[pkg]
	if b == nil {
		b = new(build)
		builds.m[pkg] = b
	}
	builds.Unlock()
	b.once.Do(func() { b.path, b.err = goBuild(pkg) })
	if b.err != nil {
		t.Fatalf("spiretest: build %s: %v", pkg, b.err)
	}
	return b.path
}

func goBuild(pkg string) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(root, ".cache", "spiretest", "bin")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	pruneOld(dir, 24*time.Hour)
	tmp := filepath.Join(dir, fmt.Sprintf(".build-%d-%d", os.Getpid(), time.Now().UnixNano()))
	defer os.Remove(tmp)
	cmd := exec.Command("go", "build", "-o", tmp, pkg)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build: %w\n%s", err, out)
	}
	sum, err := fileSHA256(tmp)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, filepath.Base(pkg)+"-"+sum[:16])
	// Never replace an existing file: another test binary may be running
	// it, and a replaced executable shows as "<path> (deleted)" in
	// /proc/<pid>/exe, which SPIRE's unix path: selector no longer matches.
	// The same name means the same content, so keep the one that is there
	// (Link fails instead of replacing) and mark it used for pruneOld.
	if err := os.Link(tmp, path); err != nil {
		if !errors.Is(err, fs.ErrExist) {
			return "", err
		}
		now := time.Now()
		_ = os.Chtimes(path, now, now)
	}
	return path, nil
}

// pruneOld removes the files in dir not modified within age.
func pruneOld(dir string, age time.Duration) {
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > age {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Checksum returns the hex sha256 of the file at path, the value SPIRE
// expects in plugin_checksum.
func Checksum(t testing.TB, path string) string {
	t.Helper()
	sum, err := fileSHA256(path)
	if err != nil {
		t.Fatalf("spiretest: checksum: %v", err)
	}
	return sum
}

// PluginBlock renders an external plugin's block for a SPIRE `plugins { }`
// section: kind is the plugin type ("WorkloadAttestor",
// "CredentialComposer", …), name its label (for a WorkloadAttestor, the
// selector type), binPath the plugin executable (made absolute, as SPIRE
// requires) and pluginData the HCL body of `plugin_data { }`. For
// `plugin_data_file`, write the block yourself with [Checksum].
func PluginBlock(t testing.TB, kind, name, binPath, pluginData string) string {
	t.Helper()
	abs, err := filepath.Abs(binPath)
	if err != nil {
		t.Fatalf("spiretest: plugin %s %q: %v", kind, name, err)
	}
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s {\n", kind, strconv.Quote(name))
	fmt.Fprintf(&b, "    plugin_cmd = %s\n", strconv.Quote(abs))
	fmt.Fprintf(&b, "    plugin_checksum = %q\n", Checksum(t, abs))
	fmt.Fprintf(&b, "    plugin_data {\n%s    }\n}\n", indent(pluginData, "        "))
	return b.String()
}

// indent prefixes every non-empty line of s and ends it with a newline.
func indent(s, prefix string) string {
	s = strings.TrimSpace(s)
	if s == "" {
		return ""
	}
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if strings.TrimSpace(l) != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "\n") + "\n"
}
