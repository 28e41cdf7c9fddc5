package daemon_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/audit/mysqlstore"
	"github.com/agentid/agentid/internal/mariadbtest"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/verifier/daemon"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestDaemonAuditInMariaDB (issue 13, the MariaDB store): a verifier
// whose audit block is mysql { dsn, log } keeps its decision log in a real
// MariaDB: an allowed check answers a receipt reference, a second verifier
// configured with the same log name is refused (one writer per log), and
// after the first stops the log's rows, dumped, verify and prove that
// receipt offline.
func TestDaemonAuditInMariaDB(t *testing.T) {
	dsn := mariadbtest.Start(t)
	ca := testca.New(t, spiffeid.RequireTrustDomainFromString("example.org"), time.Now())
	dir := t.TempDir()
	f := &fixture{dir: dir, policyDir: filepath.Join(dir, "policies"), ca: ca}
	os.Mkdir(f.policyDir, 0o755)
	write(t, filepath.Join(f.policyDir, "kb.hcl"), kbPolicy)
	write(t, filepath.Join(dir, "bundle.pem"), string(ca.BundlePEM()))
	certs, key := testca.SVIDPEM(t, ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/verifier")))
	write(t, filepath.Join(dir, "svid.pem"), string(certs))
	write(t, filepath.Join(dir, "key.pem"), string(key))
	src := `
trust_domain = "example.org"
policy_dir   = "` + f.policyDir + `"
files {
  x509_bundle = "` + filepath.Join(dir, "bundle.pem") + `"
  svid_cert   = "` + filepath.Join(dir, "svid.pem") + `"
  svid_key    = "` + filepath.Join(dir, "key.pem") + `"
}
audit {
  checkpoint_every = 2
  signer_id        = "spiffe://example.org/verifier"
  mysql {
    dsn = "` + dsn + `"
    log = "verifier-1"
  }
}
check_api {
  listen = "127.0.0.1:0"
}
`
	cfg, err := daemon.ParseConfig([]byte(src), "verifier.hcl")
	if err != nil {
		t.Fatal(err)
	}
	newDaemon := func() (*daemon.Daemon, error) {
		return daemon.New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	}
	if f.d, err = newDaemon(); err != nil {
		t.Fatal(err)
	}
	out := f.check(t, f.taskCert(t, "kb:read"), "GET", "/kb/articles/1")
	receipt, _ := out["receipt"].(string)
	ref, err := audit.ParseRef(receipt)
	if out["allow"] != true || err != nil {
		t.Fatalf("check: %v (%v)", out, err)
	}
	if _, err := newDaemon(); err == nil || !strings.Contains(err.Error(), `log "verifier-1" is open by another writer`) {
		t.Fatalf("a second verifier on the same log: %v", err)
	}
	f.d.Close()

	var dump bytes.Buffer
	if err := mysqlstore.Dump(context.Background(), *cfg.Audit.MySQL, &dump); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "verifier-1.log")
	write(t, path, dump.String())
	opts := audit.VerifyOptions{Bundle: ca.X509Bundle(), Signers: []spiffeid.ID{spiffeid.RequireFromString("spiffe://example.org/verifier")}}
	if _, err := audit.Verify([]string{path}, opts); err != nil {
		t.Fatal(err)
	}
	r, err := audit.Prove([]string{path}, ref.Index)
	if err != nil {
		t.Fatal(err)
	}
	res, err := audit.VerifyReceipt(r, opts)
	if err != nil {
		t.Fatal(err)
	}
	if r.Origin != ref.Origin || res.Record.Decision != "allow" || res.Record.Action.Path != "/kb/articles/1" {
		t.Fatalf("receipt %s proves %+v", ref, res.Record)
	}
}
