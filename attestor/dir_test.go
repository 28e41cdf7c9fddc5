package attestor

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDirPolicyCheck(t *testing.T) {
	tests := []struct {
		name    string
		setup   func(t *testing.T, dir string) string // returns the path to check
		policy  DirPolicy
		problem string // "" means accepted
		fix     string
	}{
		{name: "0750", setup: func(t *testing.T, d string) string { return d }},
		{name: "0700", setup: func(t *testing.T, d string) string { chmod(t, d, 0o700); return d }},
		{
			name:    "missing",
			setup:   func(t *testing.T, d string) string { return filepath.Join(d, "absent") },
			problem: "does not exist", fix: "install -d -m 0750 -o root -g agentid ",
		},
		{
			name:    "world-writable",
			setup:   func(t *testing.T, d string) string { chmod(t, d, 0o777); return d },
			problem: "is world-writable (mode 0777)", fix: "chmod o-w ",
		},
		{
			name:    "world-writable even when group write is accepted",
			setup:   func(t *testing.T, d string) string { chmod(t, d, 0o773); return d },
			policy:  DirPolicy{GroupWritable: true},
			problem: "is world-writable", fix: "chmod o-w ",
		},
		{
			name:    "group-writable",
			setup:   func(t *testing.T, d string) string { chmod(t, d, 0o770); return d },
			problem: "is group-writable (mode 0770)", fix: "chmod g-w ",
		},
		{
			name:   "group-writable accepted",
			setup:  func(t *testing.T, d string) string { chmod(t, d, 0o770); return d },
			policy: DirPolicy{GroupWritable: true},
		},
		{
			name: "wrong owner",
			setup: func(t *testing.T, d string) string {
				if err := os.Chown(d, 4242, 4242); err != nil {
					t.Skipf("cannot chown (not root?): %v", err)
				}
				return d
			},
			problem: "is owned by uid 4242", fix: "chown root ",
		},
		{
			name:   "owner allowed",
			setup:  func(t *testing.T, d string) string { os.Chown(d, 4242, 4242); return d },
			policy: DirPolicy{Owners: []uint32{4242}},
		},
		{
			name: "symlink",
			setup: func(t *testing.T, d string) string {
				link := filepath.Join(t.TempDir(), "link")
				os.Symlink(d, link)
				return link
			},
			problem: "is a symlink",
		},
		{
			name: "file",
			setup: func(t *testing.T, d string) string {
				f := filepath.Join(d, "file")
				os.WriteFile(f, nil, 0o640)
				return f
			},
			problem: "is not a directory",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := tt.setup(t, manifestDir(t))
			err := tt.policy.Check(path)
			if tt.problem == "" {
				if err != nil {
					t.Fatalf("Check = %v, want nil", err)
				}
				return
			}
			var de *DirError
			if !errors.As(err, &de) || !strings.HasPrefix(de.Problem, tt.problem) || !strings.Contains(de.Fix, tt.fix) {
				t.Fatalf("Check = %v, want problem %q and a fix with %q", err, tt.problem, tt.fix)
			}
			if !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "fix: ") {
				t.Errorf("message %q does not name %s and a fix", err, path)
			}
		})
	}
}
