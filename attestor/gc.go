package attestor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// GC removes the stale manifests of dir: those whose process is gone or
// whose PID now names a process with another start time, and the temporary
// files of launches that never completed. It holds an exclusive lock on dir
// (waiting for launchers that are writing) and returns how many files it
// removed. procRoot "" means /proc.
func GC(dir, procRoot string) (int, error) {
	return gc(dir, procRoot, syscall.LOCK_EX)
}

// gcIfIdle is GC when no launcher holds the directory; otherwise it
// removes nothing.
func gcIfIdle(dir, procRoot string) (int, error) {
	n, err := gc(dir, procRoot, syscall.LOCK_EX|syscall.LOCK_NB)
	if errors.Is(err, errLocked) {
		return 0, nil
	}
	return n, err
}

func gc(dir, procRoot string, how int) (int, error) {
	lock, err := lockDir(dir, how)
	if err != nil {
		return 0, fmt.Errorf("attestor: gc: %w", err)
	}
	defer lock.unlock()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("attestor: gc: %w", err)
	}
	removed := 0
	var errs []error
	for _, e := range entries {
		if !isStale(dir, e.Name(), procRoot) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, e.Name())); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, err)
			continue
		}
		removed++
	}
	if len(errs) > 0 {
		return removed, fmt.Errorf("attestor: gc: %w", errors.Join(errs...))
	}
	return removed, nil
}

// removeStale removes the manifest of pid if it is still stale once the
// directory is locked, and only if no launcher is writing.
func removeStale(dir, procRoot string, pid int) bool {
	lock, err := lockDir(dir, syscall.LOCK_EX|syscall.LOCK_NB)
	if err != nil {
		return false
	}
	defer lock.unlock()
	name := ManifestName(pid)
	return isStale(dir, name, procRoot) && os.Remove(filepath.Join(dir, name)) == nil
}

// isStale reports whether the directory entry name is a manifest or a
// temporary manifest whose process is gone or was replaced. Other names are
// never stale. A manifest that cannot be parsed is stale only when its PID
// has no process.
func isStale(dir, name, procRoot string) bool {
	if pid, start, ok := parseTempName(name); ok {
		return !processMatches(procRoot, pid, start)
	}
	pid, ok := parseManifestName(name)
	if !ok {
		return false
	}
	st, err := ReadStat(procRoot, pid)
	if errors.Is(err, ErrNoProcess) {
		return true
	}
	if err != nil {
		return false
	}
	f, err := readNoFollow(filepath.Join(dir, name), MaxManifestSize)
	if err != nil || f.data == nil {
		return false
	}
	m, err := ParseManifest(f.data)
	return err == nil && m.StartTime != st.StartTime
}

// processMatches reports whether pid runs and started at start; it errs on
// the side of true when /proc cannot be read.
func processMatches(procRoot string, pid int, start uint64) bool {
	st, err := ReadStat(procRoot, pid)
	if errors.Is(err, ErrNoProcess) {
		return false
	}
	return err != nil || st.StartTime == start
}
