package server

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/audit/mysqlstore"
	"github.com/agentid/agentid/internal/mariadbtest"
	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestDaemonAuditInMariaDB (issue 13, the MariaDB store): a registrar
// whose audit block is mysql { dsn, log } writes its task actions to a
// real MariaDB; once it stops, the log's rows, dumped, verify signed by
// the registrar's SVID and hold the task it created.
func TestDaemonAuditInMariaDB(t *testing.T) {
	dsn := mariadbtest.Start(t)
	ca := testca.New(t, testTD, time.Now())
	my := &mysqlstore.Config{DSN: dsn, Log: "registrar"}
	// Registered before the daemon: runs after it stopped (and closed its log).
	t.Cleanup(func() {
		var dump bytes.Buffer
		if err := mysqlstore.Dump(context.Background(), *my, &dump); err != nil {
			t.Error(err)
			return
		}
		path := filepath.Join(t.TempDir(), "registrar.log")
		os.WriteFile(path, dump.Bytes(), 0o600)
		sum, err := audit.Verify([]string{path}, audit.VerifyOptions{Bundle: ca.X509Bundle(), Signers: []spiffeid.ID{spiffeid.RequireFromString(registrarID)}})
		if err != nil || sum.Checkpoints == 0 || sum.Unsigned != 0 {
			t.Errorf("the registrar's log in MariaDB: %+v %v", sum, err)
		}
		if !strings.Contains(dump.String(), `"type":"registrar"`) || !strings.Contains(dump.String(), "agent/planner/task/P") {
			t.Errorf("the task action is not in the log:\n%s", dump.String())
		}
	})
	src := &Sources{X509SVID: ca.CreateX509SVID(spiffeid.RequireFromString(registrarID)), X509Bundles: ca.X509Bundle(), JWTBundles: ca.JWTBundle()}
	_, op, _, _ := startDaemon(t, &Config{AuditMySQL: my}, src)
	createPlanner(t, op, "P")
}
