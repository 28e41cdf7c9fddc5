// Package audittest reads decision logs in tests.
package audittest

import (
	"bufio"
	"encoding/json"
	"os"
	"testing"

	"github.com/agentid/agentid/audit"
)

// Decisions returns the decision records of the log at path, in order
// (key, checkpoint and other records left out).
func Decisions(t testing.TB, path string) []audit.Record {
	t.Helper()
	fh, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	var out []audit.Record
	sc := bufio.NewScanner(fh)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Type == audit.TypeDecision {
			out = append(out, r)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
