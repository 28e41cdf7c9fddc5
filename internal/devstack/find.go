package devstack

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SPIREVersion is the SPIRE release that `make spire` builds and that the
// stack's configurations are written for.
const SPIREVersion = "1.13.3"

// SpireBinEnv names the environment variable that points to the folder
// holding spire-server and spire-agent.
const SpireBinEnv = "AGENTID_SPIRE_BIN"

// spireCache is where `make spire` puts the binaries, relative to the
// repository root.
var spireCache = filepath.Join(".cache", "spire", "v"+SPIREVersion, "bin")

// Binary names.
const (
	SpireServerBin = "spire-server"
	SpireAgentBin  = "spire-agent"
	AttestorBin    = "agentid-attestor"
	ComposerBin    = "agentid-composer"
	RegistrarBin   = "agentid-registrar"
	VerifierBin    = "agentid-verifier"
	AgentidBin     = "agentid"
)

// NotFoundError is a binary the stack needs that none of the folders
// searched holds. Its message says how to get it.
type NotFoundError struct {
	// Name is the missing binary, e.g. "spire-server".
	Name string
	// Dirs are the folders searched.
	Dirs []string
	// Hint says how to get the binary.
	Hint string
}

func (e *NotFoundError) Error() string {
	where := "any folder searched"
	if len(e.Dirs) > 0 {
		where = strings.Join(e.Dirs, ", ")
	}
	return fmt.Sprintf("%s not found in %s: %s", e.Name, where, e.Hint)
}

const (
	spireHint = "run `make spire` (builds SPIRE " + SPIREVersion + " from the Go module proxy) or pass --spire-bin DIR"
	binHint   = "run `make build` (puts the agentid binaries into bin/) or pass --bin-dir DIR"
	plugHint  = "run `make build` (puts the agentid binaries into bin/) or pass --plugin-dir DIR"
)

// FindSpireBin returns the folder holding spire-server and spire-agent:
// dir if not empty, else $AGENTID_SPIRE_BIN if set, else the first
// .cache/spire/v1.13.3/bin found walking up from the folder of the running
// executable and from the working directory (the repository's `make spire`
// cache). The error is a *NotFoundError naming the folders searched.
func FindSpireBin(dir string) (string, error) {
	names := []string{SpireServerBin, SpireAgentBin}
	switch {
	case dir != "":
		return requireIn(dir, names, spireHint)
	case os.Getenv(SpireBinEnv) != "":
		return requireIn(os.Getenv(SpireBinEnv), names, spireHint)
	}
	var searched []string
	for _, start := range startDirs() {
		for d := start; ; d = filepath.Dir(d) {
			cand := filepath.Join(d, spireCache)
			if hasAll(cand, names) == "" {
				return cand, nil
			}
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				searched = appendNew(searched, cand) // the repository's cache
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if len(searched) == 0 {
		searched = []string{filepath.Join("<repository>", spireCache) + " (no repository above the working directory or the agentid binary)"}
	}
	return "", &NotFoundError{Name: SpireServerBin, Dirs: searched, Hint: spireHint}
}

// FindBinDir returns the folder holding agentid-registrar and
// agentid-verifier: dir if not empty, else the folder of the running
// executable if it holds them (bin/ after `make build`), else the first
// bin/ holding them found walking up from the working directory. The error
// is a *NotFoundError.
func FindBinDir(dir string) (string, error) {
	return findAgentidDir(dir, []string{RegistrarBin, VerifierBin}, binHint)
}

// FindPluginDir is FindBinDir for agentid-attestor and agentid-composer.
func FindPluginDir(dir string) (string, error) {
	return findAgentidDir(dir, []string{AttestorBin, ComposerBin}, plugHint)
}

func findAgentidDir(dir string, names []string, hint string) (string, error) {
	if dir != "" {
		return requireIn(dir, names, hint)
	}
	var searched []string
	if exe, err := executableDir(); err == nil {
		if hasAll(exe, names) == "" {
			return exe, nil
		}
		searched = append(searched, exe)
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			cand := filepath.Join(d, "bin")
			if hasAll(cand, names) == "" {
				return cand, nil
			}
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				searched = appendNew(searched, cand)
				break
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	missing := names[0]
	if len(searched) > 0 {
		missing = hasAll(searched[0], names)
	}
	return "", &NotFoundError{Name: missing, Dirs: searched, Hint: hint}
}

// requireIn returns dir, absolute, if it holds every one of names as an
// executable file.
func requireIn(dir string, names []string, hint string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	if missing := hasAll(abs, names); missing != "" {
		return "", &NotFoundError{Name: missing, Dirs: []string{abs}, Hint: hint}
	}
	return abs, nil
}

// hasAll returns the first of names that is not an executable file in dir,
// or "" if all are.
func hasAll(dir string, names []string) string {
	for _, n := range names {
		fi, err := os.Stat(filepath.Join(dir, n))
		if err != nil || !fi.Mode().IsRegular() || fi.Mode()&0o111 == 0 {
			return n
		}
	}
	return ""
}

// startDirs are where the searches for the SPIRE cache begin: the folder
// of the running executable and the working directory.
func startDirs() []string {
	var dirs []string
	if d, err := executableDir(); err == nil {
		dirs = append(dirs, d)
	}
	if wd, err := os.Getwd(); err == nil {
		dirs = appendNew(dirs, wd)
	}
	return dirs
}

func executableDir() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", err
	}
	if r, err := filepath.EvalSymlinks(exe); err == nil {
		exe = r
	}
	return filepath.Dir(exe), nil
}

func appendNew(list []string, s string) []string {
	for _, x := range list {
		if x == s {
			return list
		}
	}
	return append(list, s)
}

// realPath is the absolute path of a binary with symlinks resolved: what
// the unix workload attestor reports as unix:path, and what SPIRE's
// plugin_cmd needs.
func realPath(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}
