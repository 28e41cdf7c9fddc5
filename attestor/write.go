package attestor

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// ManifestMode is the permission of manifest files: readable by the
// directory's group (the attestor may run in it), writable by nobody but
// the owner.
const ManifestMode = 0o640

// WriteManifest writes m into dir as [ManifestName](m.PID), atomically: a
// temporary file in dir (".<pid>.<start_time>.<random>.tmp", mode 0640,
// synced) renamed over the final name, under a shared lock on dir so that a
// concurrent garbage collection cannot remove it. The manifest must pass
// [Manifest.Check]. It returns the manifest's path.
//
// WriteManifest does not check dir; see [DirPolicy.Check].
func WriteManifest(dir string, m Manifest) (string, error) {
	if err := m.Check(); err != nil {
		return "", err
	}
	data, _ := m.MarshalJSON()
	lock, err := lockDir(dir, lockShared)
	if err != nil {
		return "", fmt.Errorf("attestor: %w", err)
	}
	defer lock.unlock()
	tmp, err := writeTemp(dir, m, data)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, ManifestName(m.PID))
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("attestor: %w", err)
	}
	return path, nil
}

func writeTemp(dir string, m Manifest, data []byte) (string, error) {
	var rnd [8]byte
	rand.Read(rnd[:])
	name := tempName(m.PID, m.StartTime) + hex.EncodeToString(rnd[:]) + tempSuffix
	path := filepath.Join(dir, name)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, ManifestMode)
	if err != nil {
		return "", fmt.Errorf("attestor: %w", err)
	}
	err = f.Chmod(ManifestMode) // whatever the umask
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return "", fmt.Errorf("attestor: %w", err)
	}
	return path, nil
}

const tempSuffix = ".tmp"

// tempName is the prefix of a temporary manifest: ".<pid>.<start>.".
func tempName(pid int, start uint64) string {
	return "." + strconv.Itoa(pid) + "." + strconv.FormatUint(start, 10) + "."
}

// parseTempName returns the PID and start time a temporary file was
// written for.
func parseTempName(name string) (pid int, start uint64, ok bool) {
	if !strings.HasPrefix(name, ".") || !strings.HasSuffix(name, tempSuffix) {
		return 0, 0, false
	}
	parts := strings.Split(name[1:len(name)-len(tempSuffix)], ".")
	if len(parts) != 3 {
		return 0, 0, false
	}
	pid, err1 := strconv.Atoi(parts[0])
	start, err2 := strconv.ParseUint(parts[1], 10, 64)
	return pid, start, err1 == nil && err2 == nil && pid > 0
}

// parseManifestName returns the PID of "<pid>.json".
func parseManifestName(name string) (int, bool) {
	s, ok := strings.CutSuffix(name, ".json")
	if !ok {
		return 0, false
	}
	pid, err := strconv.Atoi(s)
	return pid, err == nil && pid > 0 && strconv.Itoa(pid) == s
}
