package attestor

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// statLine is a real-looking /proc/<pid>/stat line with comm and the
// start time (field 22) substituted.
func statLine(pid int, comm string, ppid int, start uint64) string {
	return strconv.Itoa(pid) + " (" + comm + ") S " + strconv.Itoa(ppid) +
		" 4242 4242 0 -1 4194560 113 0 0 0 0 0 0 0 20 0 1 0 " +
		strconv.FormatUint(start, 10) + " 8577024 192 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
}

func TestParseStat(t *testing.T) {
	tests := []struct {
		name, line string
		want       Stat
	}{
		{"plain", statLine(42, "sleep", 1, 987654), Stat{PID: 42, Comm: "sleep", State: 'S', PPID: 1, StartTime: 987654}},
		{"spaces", statLine(42, "my agent", 7, 5), Stat{PID: 42, Comm: "my agent", State: 'S', PPID: 7, StartTime: 5}},
		// A process can name itself so that a naive split at the first ')'
		// reads its fake fields: the real fields start after the LAST ')'.
		{"fake fields", statLine(42, "x) R 1 1 1 (", 99, 1234), Stat{PID: 42, Comm: "x) R 1 1 1 (", State: 'S', PPID: 99, StartTime: 1234}},
		{"parens", statLine(42, ") (", 3, 77), Stat{PID: 42, Comm: ") (", State: 'S', PPID: 3, StartTime: 77}},
		{"empty comm", statLine(42, "", 3, 77), Stat{PID: 42, Comm: "", State: 'S', PPID: 3, StartTime: 77}},
		{"no newline", strings.TrimSuffix(statLine(1, "init", 0, 9), "\n"), Stat{PID: 1, Comm: "init", State: 'S', PPID: 0, StartTime: 9}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseStat([]byte(tt.line))
			if err != nil || got != tt.want {
				t.Errorf("ParseStat(%q) = %+v, %v; want %+v", tt.line, got, err, tt.want)
			}
		})
	}
}

func TestParseStatErrors(t *testing.T) {
	for _, line := range []string{
		"",
		"42 sleep S 1",
		"(sleep) S 1 " + strings.Repeat("0 ", 20),
		"x (sleep) S 1 " + strings.Repeat("0 ", 20),
		"42 (sleep) S 1 2 3",                          // truncated
		"42 (sleep) S -1 " + strings.Repeat("0 ", 20), // bad ppid
		"42 (sleep) SS 1 " + strings.Repeat("0 ", 20), // bad state
		strings.Replace(statLine(42, "a", 1, 5), " 5 ", " x ", 1),
	} {
		if st, err := ParseStat([]byte(line)); err == nil {
			t.Errorf("ParseStat(%q) = %+v, want an error", line, st)
		}
	}
}

func FuzzParseStat(f *testing.F) {
	f.Add([]byte(statLine(42, "x) R 1 (", 1, 9)))
	f.Add([]byte(statLine(1, "", 0, 0)))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := ParseStat(b)
		if err != nil {
			return
		}
		again, err := ParseStat([]byte(statLine(st.PID, st.Comm, st.PPID, st.StartTime)))
		if err != nil || again.PID != st.PID || again.Comm != st.Comm || again.PPID != st.PPID || again.StartTime != st.StartTime {
			t.Errorf("round trip of %+v: %+v, %v", st, again, err)
		}
	})
}

// fakeStatus is the status file of the fake processes: the test agent's
// ids, no capabilities.
var fakeStatus = fmt.Sprintf("Name:\tx\nUid:\t%[1]d\t%[1]d\t%[1]d\t%[1]d\nGid:\t%[2]d\t%[2]d\t%[2]d\t%[2]d\nGroups:\t\nCapPrm:\t0000000000000000\nCapEff:\t0000000000000000\n",
	testAgentUID, testAgentGID)

// fakeProc builds a proc root holding one stat and one status file per
// process.
func fakeProc(t *testing.T, procs ...Stat) string {
	t.Helper()
	root := t.TempDir()
	for _, p := range procs {
		d := filepath.Join(root, strconv.Itoa(p.PID))
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "stat"), []byte(statLine(p.PID, p.Comm, p.PPID, p.StartTime)), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "status"), []byte(fakeStatus), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Mkdir(filepath.Join(d, "ns"), 0o755); err != nil {
			t.Fatal(err)
		}
		for link, to := range map[string]string{"user": "user:[4026531837]", "mnt": "mnt:[4026531841]"} {
			if err := os.Symlink(to, filepath.Join(d, "ns", link)); err != nil {
				t.Fatal(err)
			}
		}
	}
	return root
}

func TestReadStatFakeProc(t *testing.T) {
	root := fakeProc(t, Stat{PID: 100, Comm: "a) (b", PPID: 1, StartTime: 555})
	st, err := ReadStat(root, 100)
	if err != nil || st.Comm != "a) (b" || st.StartTime != 555 {
		t.Errorf("ReadStat = %+v, %v", st, err)
	}
	if _, err := ReadStat(root, 101); !errors.Is(err, ErrNoProcess) {
		t.Errorf("missing pid: %v, want ErrNoProcess", err)
	}
	os.WriteFile(filepath.Join(root, "100", "stat"), []byte(statLine(7, "a", 1, 555)), 0o644)
	if _, err := ReadStat(root, 100); err == nil {
		t.Error("stat naming another pid accepted")
	}
}

// TestAttestFakeProc runs the attestor over a fake proc root whose comm
// fields try to smuggle a start time and a parent.
func TestAttestFakeProc(t *testing.T) {
	dir := manifestDir(t)
	root := fakeProc(t,
		Stat{PID: 300, Comm: "agent) S 1 2 3 (", PPID: 1, StartTime: 1000},
		Stat{PID: 301, Comm: "tool) S 300 ( ", PPID: 300, StartTime: 2000},
		Stat{PID: 302, Comm: "x) S 300 (", PPID: 1, StartTime: 3000},
	)
	writeForIn(t, dir, root, 300, 1000)
	for _, tt := range []struct {
		pid  int
		want bool
	}{{300, true}, {301, true}, {302, false}} {
		a, _ := newTest(t, Config{ManifestDir: dir, ProcRoot: root, InheritDepth: 1})
		sel, err := a.Attest(tt.pid)
		if err != nil || (sel != nil) != tt.want {
			t.Errorf("pid %d: %q, %v; want selectors %v", tt.pid, sel, err, tt.want)
		}
		if tt.want && !slices.Equal(sel, wantSelectors) {
			t.Errorf("pid %d: %q", tt.pid, sel)
		}
	}
}

// TestAttestInheritYoungerAncestor: a process whose parent PID now names a
// process that started after it (the parent exited and its PID was reused
// by a freshly launched task) inherits nothing from it.
func TestAttestInheritYoungerAncestor(t *testing.T) {
	dir := manifestDir(t)
	root := fakeProc(t,
		Stat{PID: 400, Comm: "tool", PPID: 401, StartTime: 5000},
		Stat{PID: 401, Comm: "agent", PPID: 1, StartTime: 9000}, // reused PID
		Stat{PID: 402, Comm: "tool", PPID: 403, StartTime: 9000},
		Stat{PID: 403, Comm: "agent", PPID: 1, StartTime: 9000}, // same tick: still its parent
	)
	writeForIn(t, dir, root, 401, 9000)
	writeForIn(t, dir, root, 403, 9000)
	a, _ := newTest(t, Config{ManifestDir: dir, ProcRoot: root, InheritDepth: 2})
	if sel, err := a.Attest(400); err != nil || sel != nil {
		t.Errorf("child older than its parent: %q, %v; want nothing", sel, err)
	}
	if sel, err := a.Attest(402); err != nil || !slices.Equal(sel, wantSelectors) {
		t.Errorf("child started in its parent's tick: %q, %v; want the parent's selectors", sel, err)
	}
}
