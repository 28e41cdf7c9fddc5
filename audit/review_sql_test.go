package audit_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/mariadbtest"
	"github.com/agentid/agentid/internal/testca"
)

// TestReviewSQLLockLost: the writer's GET_LOCK connection drops (a
// network blip, the server's wait_timeout on the idle lock connection);
// simulated with KILL. A second writer then opens the log, and the
// first keeps writing: every record both were told was stored must be
// in the log, and the log must verify.
func TestReviewSQLLockLost(t *testing.T) {
	dsn := mariadbtest.Start(t)
	db := openDB(t, dsn)
	ctx := context.Background()
	ca := testca.New(t, td, time.Now().Add(-time.Minute))
	opts := audit.Options{Signer: ca.CreateX509SVID(vid), CheckpointEvery: 1000}
	a, err := audit.OpenSQL(ctx, db, "lg", opts)
	if err != nil {
		t.Fatal(err)
	}
	var stored []string
	app := func(w *audit.Writer, who string, i int) {
		rec := decision(i)
		rec.Reason = fmt.Sprintf("%s-%d", who, i)
		if _, err := w.AppendWait(rec); err == nil {
			stored = append(stored, rec.Reason)
		} else {
			t.Logf("%s-%d: %v", who, i, err)
		}
	}
	app(a, "a", 0)
	var holder int64
	if err := db.QueryRowContext(ctx, "SELECT IS_USED_LOCK('agentid-audit:lg')").Scan(&holder); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, fmt.Sprintf("KILL %d", holder)); err != nil {
		t.Fatal(err)
	}
	b, err := audit.OpenSQL(ctx, db, "lg", opts)
	if err != nil {
		t.Logf("second writer refused (secure): %v", err)
		return
	}
	t.Logf("a second writer opened the log after the first lost its lock connection")
	app(b, "b", 1)
	app(a, "a", 2)
	app(b, "b", 3)
	b.Close()
	a.Close()
	path := dumpSQL(t, db, "lg")
	sum, verr := audit.Verify([]string{path}, audit.VerifyOptions{Bundle: ca.X509Bundle()})
	var got []string
	t.Logf("stored (acknowledged): %v; verify: %+v %v", stored, sum, verr)
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stored {
		if !strings.Contains(string(data), `"reason":"`+s+`"`) {
			got = append(got, s)
		}
	}
	if len(got) > 0 || verr != nil {
		t.Fatalf("two writers: acknowledged records missing from the log: %v; verify: %v", got, verr)
	}
}
