package audit_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
)

// TestReviewSegmentWithoutCheckpoint (security review of issue 13): the
// retained files are replaced by one that starts with a genuine segment
// record followed only by lines no checkpoint covers (forged decisions
// after it): nothing authenticates them, so Verify refuses the log.
func TestReviewSegmentWithoutCheckpoint(t *testing.T) {
	ca := testca.New(t, td, t0)
	opts := audit.Options{Clock: clock(), Signer: ca.CreateX509SVID(vid), CheckpointEvery: 4, MaxBytes: 2500}
	vopts := audit.VerifyOptions{Bundle: ca.X509Bundle(), Now: t0.Add(time.Minute)}
	path := filepath.Join(t.TempDir(), "audit.log")
	write(t, path, opts, 40)
	files, _ := audit.Files(path)
	if len(files) < 3 {
		t.Fatalf("want 3 files or more, got %v", files)
	}
	data, _ := os.ReadFile(files[2])
	var kept []string
	for _, l := range strings.Split(strings.TrimSuffix(string(data), "\n"), "\n") {
		if strings.Contains(l, `"type":"checkpoint"`) {
			break
		}
		kept = append(kept, l)
	}
	if len(kept) < 2 || !strings.Contains(kept[0], `"type":"segment"`) {
		t.Fatalf("file %s does not start with a segment record and decisions: %q", files[2], kept)
	}
	forged := filepath.Join(t.TempDir(), "audit.log")
	os.WriteFile(forged, []byte(strings.Join(kept, "\n")+"\n"), 0o600)
	if sum, err := audit.Verify([]string{forged}, vopts); err == nil {
		t.Fatalf("a log of a segment record and %d unsigned lines verified: %+v", len(kept)-1, sum)
	} else {
		t.Logf("refused: %v", err)
	}
}
