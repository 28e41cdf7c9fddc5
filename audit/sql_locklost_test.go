package audit_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/mariadbtest"
	"github.com/agentid/agentid/internal/testca"
)

// TestSQLLockLostFailsClosed (review finding: a lost GET_LOCK), on a real
// MariaDB: the first writer's lock connection is killed (as a network
// drop or the server's wait_timeout would), the server frees the lock and
// a second writer opens the log. The first must refuse every record from
// then on with ErrUnavailable (not write through another pooled
// connection, nor delete the second's rows when its batch fails), and
// every record either was told was stored is in the log, which verifies.
func TestSQLLockLostFailsClosed(t *testing.T) {
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
	app := func(w *audit.Writer, who string, i int) error {
		rec := decision(i)
		rec.Reason = fmt.Sprintf("%s-%d", who, i)
		_, err := w.AppendWait(rec)
		if err == nil {
			stored = append(stored, rec.Reason)
		}
		return err
	}
	if err := app(a, "a", 0); err != nil {
		t.Fatal(err)
	}
	var holder int64
	if err := db.QueryRowContext(ctx, "SELECT IS_USED_LOCK('agentid-audit:lg')").Scan(&holder); err != nil {
		t.Fatal(err)
	}
	if _, err := db.ExecContext(ctx, fmt.Sprintf("KILL %d", holder)); err != nil {
		t.Fatal(err)
	}
	// The killed session ends (and its lock goes) asynchronously.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var free int
		if err := db.QueryRowContext(ctx, "SELECT IS_FREE_LOCK('agentid-audit:lg')").Scan(&free); err != nil {
			t.Fatal(err)
		}
		if free == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the killed connection's lock was not freed")
		}
	}
	b, err := audit.OpenSQL(ctx, db, "lg", opts)
	if err != nil {
		t.Fatalf("the second writer, once the lock is free: %v", err)
	}
	if err := app(b, "b", 1); err != nil {
		t.Fatal(err)
	}
	for i := 2; i < 6; i += 2 {
		if err := app(a, "a", i); err == nil || !errors.Is(err, audit.ErrUnavailable) || !strings.Contains(err.Error(), "lock on log \"lg\" is lost") {
			t.Fatalf("a-%d, the writer that lost its lock: %v (want ErrUnavailable: the lock is lost)", i, err)
		}
		if err := app(b, "b", i+1); err != nil {
			t.Fatal(err)
		}
	}
	if err := a.Healthy(); err == nil {
		t.Fatal("the writer that lost its lock says it is healthy")
	}
	a.Close()
	if err := b.Close(); err != nil {
		t.Fatal(err)
	}
	path := dumpSQL(t, db, "lg")
	if _, err := audit.Verify([]string{path}, audit.VerifyOptions{Bundle: ca.X509Bundle()}); err != nil {
		t.Fatalf("verify: %v", err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range stored {
		if !strings.Contains(string(data), `"reason":"`+s+`"`) {
			t.Errorf("acknowledged record %s is not in the log", s)
		}
	}
	if len(stored) != 4 {
		t.Fatalf("acknowledged: %v", stored)
	}
}
