package audit

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// rotatedName is where a full file goes: audit.log → audit.00000000000000000001.log.
func rotatedName(path string, firstSeq uint64) string {
	ext := filepath.Ext(path)
	return fmt.Sprintf("%s.%020d%s", strings.TrimSuffix(path, ext), firstSeq, ext)
}

// Files lists the files of the log at path in chain order: the rotated
// files by their first sequence number, then path itself (when it exists).
func Files(path string) ([]string, error) {
	ext := filepath.Ext(path)
	stem := strings.TrimSuffix(path, ext)
	matches, err := filepath.Glob(globEscape(stem) + ".*" + globEscape(ext))
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	type rotated struct {
		path string
		seq  uint64
	}
	var rs []rotated
	for _, m := range matches {
		num := strings.TrimSuffix(strings.TrimPrefix(m, stem+"."), ext)
		if seq, err := strconv.ParseUint(num, 10, 64); err == nil && len(num) == 20 {
			rs = append(rs, rotated{m, seq})
		}
	}
	sort.Slice(rs, func(i, j int) bool { return rs[i].seq < rs[j].seq })
	out := make([]string, 0, len(rs)+1)
	for _, r := range rs {
		out = append(out, r.path)
	}
	if _, err := os.Stat(path); err == nil {
		out = append(out, path)
	}
	return out, nil
}

// firstRecord decodes the first line of a log file.
func firstRecord(path string) (*Record, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	defer f.Close()
	line, err := bufio.NewReaderSize(f, 1<<16).ReadBytes('\n')
	if err != nil {
		return nil, fmt.Errorf("audit: %s: no complete first line: %w", path, err)
	}
	var rec Record
	if err := json.Unmarshal(line, &rec); err != nil {
		return nil, fmt.Errorf("audit: %s: first line: %w", path, err)
	}
	return &rec, nil
}

// firstType is the type of a log file's first record.
func firstType(path string) (string, error) {
	rec, err := firstRecord(path)
	if err != nil {
		return "", err
	}
	return rec.Type, nil
}

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}

// ParseRotation checks the rotation and retention settings of a daemon's
// audit block — rotate_interval (a Go duration, "" for none) and
// max_segments (0: keep every file) — and returns the interval, or the
// key at fault with the error.
func ParseRotation(rotateInterval string, maxSegments int) (time.Duration, string, error) {
	var d time.Duration
	if rotateInterval != "" {
		var err error
		if d, err = time.ParseDuration(rotateInterval); err != nil || d < 0 {
			if err == nil {
				err = errors.New("negative")
			}
			return 0, "rotate_interval", fmt.Errorf("audit.rotate_interval %q: want a duration such as \"24h\": %w", rotateInterval, err)
		}
	}
	if maxSegments < 0 {
		return 0, "max_segments", fmt.Errorf("audit.max_segments %d: want 0 (keep every file) or the number of files to keep", maxSegments)
	}
	return d, "", nil
}
