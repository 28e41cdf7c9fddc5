package audit_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/mariadbtest"
	"github.com/agentid/agentid/internal/testca"
)

// TestSQLReopenRefusesRewrittenRow: a decision row of a log in MariaDB,
// already under a signed checkpoint, is rewritten ("deny" → "allow")
// while no writer has the log open. The next writer must refuse to open
// the log rather than sign a checkpoint over the altered row.
func TestSQLReopenRefusesRewrittenRow(t *testing.T) {
	dsn := mariadbtest.Start(t)
	db := openDB(t, dsn)
	ctx := context.Background()
	ca := testca.New(t, td, time.Now().Add(-time.Minute))
	opts := audit.Options{Signer: ca.CreateX509SVID(vid), CheckpointEvery: 3}
	w, err := audit.OpenSQL(ctx, db, "lg", opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		rec := decision(i)
		if i == 0 {
			rec.Decision = "deny"
		}
		if _, err := w.AppendWait(rec); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	res, err := db.ExecContext(ctx, `UPDATE agentid_audit_lines SET line = REPLACE(line, '"decision":"deny"', '"decision":"allow"') WHERE log = 'lg' AND seq = 1`)
	if n, _ := res.RowsAffected(); err != nil || n != 1 {
		t.Fatalf("rewriting the row: %v (%d rows)", err, n)
	}
	w, err = audit.OpenSQL(ctx, db, "lg", opts)
	if err == nil {
		w.Close()
		t.Fatal("a writer opened the log after a row under a checkpoint was rewritten")
	}
	if !strings.Contains(err.Error(), "agentid audit verify") {
		t.Fatalf("error %q does not say what to run", err)
	}
	t.Logf("refused: %v", err)
	// The refused writer let the log go: after the operator restores the
	// row, a writer opens it.
	db.ExecContext(ctx, `UPDATE agentid_audit_lines SET line = REPLACE(line, '"decision":"allow"', '"decision":"deny"') WHERE log = 'lg' AND seq = 1`)
	w, err = audit.OpenSQL(ctx, db, "lg", opts)
	if err != nil {
		t.Fatalf("after restoring the row: %v", err)
	}
	w.Close()
}
