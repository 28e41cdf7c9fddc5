package audit

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/mariadbtest"
	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestSQLIdleLockLossIsSeen (review finding 1, on a real MariaDB): the
// lock connection of an idle writer drops (killed here, as wait_timeout
// or a network drop would). The keepalive notices without a record being
// written: Healthy reports it and the next record is refused with
// ErrUnavailable instead of being queued for a log this writer no longer
// owns.
func TestSQLIdleLockLossIsSeen(t *testing.T) {
	old := sqlKeepalive
	sqlKeepalive = 5 * time.Millisecond
	t.Cleanup(func() { sqlKeepalive = old })
	db, err := sql.Open("mysql", mariadbtest.Start(t))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	ctx := context.Background()
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"), time.Now().Add(-time.Minute))
	w, err := OpenSQL(ctx, db, "idle", Options{Signer: ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/verifier"))})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	if _, err := w.AppendWait(Record{Type: TypeDecision, Decision: "allow"}); err != nil {
		t.Fatal(err)
	}
	var holder int64
	if err := db.QueryRowContext(ctx, "SELECT IS_USED_LOCK('agentid-audit:idle')").Scan(&holder); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, fmt.Sprintf("KILL %d", holder)); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); w.Healthy() == nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("an idle writer whose lock connection was killed still says it is healthy")
		}
	}
	err = w.Append(Record{Type: TypeDecision, Decision: "allow"})
	if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "is lost") {
		t.Fatalf("Append after the lock was lost: %v", err)
	}
}
