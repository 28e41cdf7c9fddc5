package auditv1

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
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

func globEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `*`, `\*`, `?`, `\?`, `[`, `\[`)
	return r.Replace(s)
}
