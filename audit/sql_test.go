package audit_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/mariadbtest"
	"github.com/agentid/agentid/internal/testca"
)

func openDB(t *testing.T, dsn string) *sql.DB {
	t.Helper()
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// dumpSQL writes a SQL log to a file, as `agentid audit verify` reads it.
func dumpSQL(t *testing.T, db *sql.DB, log string) string {
	t.Helper()
	var buf bytes.Buffer
	if err := audit.DumpSQL(context.Background(), db, log, &buf); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), log+".log")
	if err := os.WriteFile(path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestSQLStore (issue 13, the MariaDB store), on a real MariaDB: two
// verifiers' logs in one database, each with signed checkpoints, a
// witness and receipts; a second writer of a log is refused while the
// first has it open; a log reopened continues its chain and tree; each
// log's rows, dumped, verify with the witness's key and prove every
// receipt handed out.
func TestSQLStore(t *testing.T) {
	dsn := mariadbtest.Start(t)
	db := openDB(t, dsn)
	ctx := context.Background()
	ca := testca.New(t, td, time.Now().Add(-time.Minute))
	wit, vkey := newTestWitness(t, ca)
	opts := audit.Options{Signer: ca.CreateX509SVID(vid), CheckpointEvery: 7, Witness: direct{wit}}
	vopts := audit.VerifyOptions{Bundle: ca.X509Bundle(), WitnessKeys: []string{vkey}}

	refs := map[string][]audit.Ref{}
	for session := range 2 {
		for _, name := range []string{"verifier-a", "verifier-b"} {
			w, err := audit.OpenSQL(ctx, db, name, opts)
			if err != nil {
				t.Fatal(err)
			}
			if session == 0 && name == "verifier-a" {
				if _, err := audit.OpenSQL(ctx, db, name, opts); err == nil || !strings.Contains(err.Error(), "is open by another writer") {
					t.Fatalf("second writer of %s: %v", name, err)
				}
			}
			for i := range 20 {
				rec := decision(i)
				rec.Reason = fmt.Sprintf("%s-%d-%d", name, session, i)
				ref, err := w.AppendWait(rec)
				if err != nil {
					t.Fatal(err)
				}
				refs[name] = append(refs[name], ref)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			if err := w.WitnessError(); err != nil {
				t.Fatal(err)
			}
		}
	}
	for name, rs := range refs {
		path := dumpSQL(t, db, name)
		sum, err := audit.Verify([]string{path}, vopts)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if sum.Witnessed == 0 || sum.Unsigned != 0 || sum.Origin != rs[0].Origin {
			t.Fatalf("%s: summary %+v", name, sum)
		}
		for i, ref := range rs {
			r, err := audit.Prove([]string{path}, ref.Index)
			if err != nil {
				t.Fatalf("%s: %s: %v", name, ref, err)
			}
			res, err := audit.VerifyReceipt(r, vopts)
			if err != nil {
				t.Fatalf("%s: %s: %v", name, ref, err)
			}
			if want := fmt.Sprintf("%s-%d-%d", name, i/20, i%20); res.Record.Reason != want {
				t.Fatalf("%s: %s proves %q, want %q", name, ref, res.Record.Reason, want)
			}
		}
	}
	if refs["verifier-a"][0].Origin == refs["verifier-b"][0].Origin {
		t.Fatal("two logs with one origin")
	}
	// durability = "none" still commits (there is no OS to leave it to).
	w, err := audit.OpenSQL(ctx, db, "none", audit.Options{Durability: audit.SyncNone})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.AppendWait(decision(1)); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if data, _ := os.ReadFile(dumpSQL(t, db, "none")); bytes.Count(data, []byte("\n")) != 1 {
		t.Fatalf("durability none: %q", data)
	}
}

// TestSQLReceiptsSurviveKill9: a writer process appending to MariaDB from
// 16 goroutines is killed with SIGKILL after it printed 1,000 references;
// its lock goes with its connection, a new writer opens the log and
// checkpoints the tail, and every reference handed out proves the record
// it was handed out for.
func TestSQLReceiptsSurviveKill9(t *testing.T) {
	dsn := mariadbtest.Start(t)
	ca := testca.New(t, td, time.Now().Add(-time.Minute))
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperSQLWriter$")
	cmd.Env = append(os.Environ(), "AUDIT_HELPER_DSN="+dsn)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	type handed struct {
		ref    audit.Ref
		reason string
	}
	var got []handed
	sc := bufio.NewScanner(stdout)
	for len(got) < 1000 && sc.Scan() {
		ref, reason, _ := strings.Cut(sc.Text(), " ")
		r, err := audit.ParseRef(ref)
		if err != nil {
			t.Fatalf("helper printed %q: %v", sc.Text(), err)
		}
		got = append(got, handed{r, reason})
	}
	cmd.Process.Signal(syscall.SIGKILL)
	cmd.Wait()
	if len(got) < 1000 {
		t.Fatalf("helper ended after %d references: %s", len(got), stderr.String())
	}
	db := openDB(t, dsn)
	ctx := context.Background()
	var w *audit.Writer
	var err error
	for range 50 { // the server notices the dead connection at once; be patient all the same
		if w, err = audit.OpenSQL(ctx, db, "killed", audit.Options{Signer: ca.CreateX509SVID(vid)}); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	path := dumpSQL(t, db, "killed")
	opts := audit.VerifyOptions{Bundle: ca.X509Bundle()}
	if _, err := audit.Verify([]string{path}, opts); err != nil {
		t.Fatal(err)
	}
	for i, h := range got {
		if i%25 != 0 && i < len(got)-25 {
			continue
		}
		r, err := audit.Prove([]string{path}, h.ref.Index)
		if err != nil {
			t.Fatalf("reference %s (%s) handed out before the kill: %v", h.ref, h.reason, err)
		}
		res, err := audit.VerifyReceipt(r, opts)
		if err != nil {
			t.Fatalf("reference %s: %v", h.ref, err)
		}
		if res.Record.Reason != h.reason {
			t.Fatalf("reference %s proves %q, but was handed out for %q", h.ref, res.Record.Reason, h.reason)
		}
	}
}

// TestHelperSQLWriter is the process TestSQLReceiptsSurviveKill9 kills.
func TestHelperSQLWriter(t *testing.T) {
	dsn := os.Getenv("AUDIT_HELPER_DSN")
	if dsn == "" {
		return // only runs as the helper process
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	w, err := audit.OpenSQL(context.Background(), db, "killed", audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	appendUntilKilled(t, w)
}

// BenchmarkSQLAppendWait (issue 13, the MariaDB store): receipts
// (AppendWait) from 64 concurrent callers into a file log (default
// durability: answered once in the OS, fsync per batch) and into a real
// MariaDB started by the benchmark (answered at commit, one transaction
// per batch), in one run; records/s and the receipt latency p50/p99.
//
// go test -run '^$' -bench SQLAppendWait -benchtime 3s ./audit/
func BenchmarkSQLAppendWait(b *testing.B) {
	db, err := sql.Open("mysql", mariadbtest.Start(b))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	for _, store := range []string{"file", "mariadb"} {
		b.Run(store, func(b *testing.B) {
			var w *audit.Writer
			var err error
			if store == "file" {
				w, err = audit.Open(filepath.Join(b.TempDir(), "audit.log"), audit.Options{})
			} else {
				w, err = audit.OpenSQL(context.Background(), db, fmt.Sprintf("bench-%d", b.N), audit.Options{})
			}
			if err != nil {
				b.Fatal(err)
			}
			var mu sync.Mutex
			var lat []time.Duration
			b.SetParallelism(32) // 64 callers on 2 CPUs
			b.RunParallel(func(pb *testing.PB) {
				var mine []time.Duration
				rec := decision(1)
				for pb.Next() {
					start := time.Now()
					if _, err := w.AppendWait(rec); err != nil {
						b.Error(err)
						return
					}
					mine = append(mine, time.Since(start))
				}
				mu.Lock()
				lat = append(lat, mine...)
				mu.Unlock()
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "records/s")
			slices.Sort(lat)
			if len(lat) > 0 {
				b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-µs")
				b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-µs")
			}
			if err := w.Close(); err != nil {
				b.Fatal(err)
			}
		})
	}
}
