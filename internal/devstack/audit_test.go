package devstack_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/agentid/agentid/attestor"
	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/devstack"
	"github.com/agentid/agentid/internal/spiretest"
	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// TestAuditOnSPIRE (issue 13): on the real SPIRE, with an audit witness
// (`agentid audit witness serve`, its own key, pinned to the registrar's and
// the verifiers' SPIFFE IDs), two verifiers (one with the mTLS proxy, one
// with the check API) and the registrar write their logs cosigned by it. A
// task created through the registrar, and its child delegated through it,
// make real decisions; the receipts they get (the proxy's
// x-agentid-receipt to the upstream, the check API's "receipt") become
// evidence files with `agentid audit prove` that `agentid audit
// verify-receipt --bundle --witness-key` checks offline, naming the task and
// the decision. After the root is revoked and the daemons stop, `agentid
// audit verify --witness-key --signer` passes on every log, each extending
// the witness's latest checkpoint of it, and the registrar's "task created",
// "delegated" and "revoked" records prove like the decisions.
func TestAuditOnSPIRE(t *testing.T) {
	spireBin := spiretest.Bin(t)
	binDir := buildBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	st, err := devstack.Start(ctx, devstack.Options{SpireBin: spireBin, BinDir: binDir, Log: tlog{t}, Witness: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Stop() })
	if st.Witness == nil || st.BundlePath == "" {
		t.Fatal("no witness or bundle")
	}

	var mu sync.Mutex
	var upstreamReceipts []string
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		upstreamReceipts = append(upstreamReceipts, r.Header.Get("X-Agentid-Receipt"))
		mu.Unlock()
		io.WriteString(w, "kb ok")
	}))
	defer upstream.Close()
	va, err := st.StartVerifier(ctx, devstack.VerifierOptions{Name: "audit-proxy", PolicyDir: st.Verifier.PolicyDir,
		ProxyUpstream: upstream.URL, CheckpointInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	vb, err := st.StartVerifier(ctx, devstack.VerifierOptions{Name: "audit-check", PolicyDir: st.Verifier.PolicyDir,
		CheckpointInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}

	// The root task, created through the registrar's operator socket.
	conn, err := grpc.NewClient("unix://"+st.RegistrarOperatorSocket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	reg := registrarv1.NewRegistrarClient(conn)
	work := t.TempDir()
	created, err := reg.CreateTask(ctx, &registrarv1.CreateTaskRequest{Agent: "planner", Task: "AU-P", Model: "openai/gpt-4o",
		Prompt: promptDigest(t, st, work), Scope: []string{"kb:read", "tickets:write"}, Principal: "spiffe://example.org/user/alice",
		TtlSeconds: 3600, ParentId: st.NodeID})
	if err != nil {
		t.Fatal(err)
	}
	root := created
	rootFile := filepath.Join(work, "root.json")
	claims, err := svid.Parse([]byte(root.GetClaimsJson()))
	if err != nil {
		t.Fatal(err)
	}
	record, _ := attestor.TaskRecord{Incarnation: root.GetIncarnation(), Claims: claims}.MarshalJSON()
	if err := os.WriteFile(rootFile, record, 0o600); err != nil {
		t.Fatal(err)
	}
	// Its child, delegated through the registrar's mTLS API.
	childFile := filepath.Join(work, "child.json")
	asTask(t, st, work, rootFile, "agentid", "task", "create", "--delegate", "--socket", st.AgentSocket,
		"--registrar", st.RegistrarAddr, "--registrar-id", st.RegistrarID, "--agent", "researcher", "--task", "AU-R",
		"--model", "openai/gpt-4o", "--prompt-file", st.SamplePrompt, "--scope", "kb:read", "--ttl", "30m", "--output", childFile)
	childID := "spiffe://example.org/agent/researcher/task/AU-R"

	// A real call through the proxy, as the child, with its X.509-SVID.
	svidDir := filepath.Join(work, "svid")
	if err := os.Mkdir(svidDir, 0o700); err != nil {
		t.Fatal(err)
	}
	asTask(t, st, work, childFile, filepath.Join(st.SpireBin, "spire-agent"), "api", "fetch", "x509", "-socketPath", st.AgentSocket, "-write", svidDir)
	resp, err := mtlsClient(t, svidDir).Get(va.ProxyURL + "/kb/docs/1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || string(body) != "kb ok" {
		t.Fatalf("proxy: %s %q", resp.Status, body)
	}
	mu.Lock()
	proxyReceipt := upstreamReceipts[len(upstreamReceipts)-1]
	mu.Unlock()

	// The check API, as the child, with its JWT-SVID.
	creds := fetchCredentials(t, st, work, childFile)
	checkBody := strings.TrimSuffix(creds[0].body, "}") + `,"action":{"kind":"http","method":"GET","path":"/kb/docs/2"}}`
	resp, err = http.Post(vb.CheckURL, "application/json", strings.NewReader(checkBody))
	if err != nil {
		t.Fatal(err)
	}
	var dec struct {
		Allow   bool   `json:"allow"`
		Receipt string `json:"receipt"`
	}
	err = json.NewDecoder(resp.Body).Decode(&dec)
	resp.Body.Close()
	if err != nil || !dec.Allow {
		t.Fatalf("check API: %+v %v", dec, err)
	}

	// Each receipt proves, with the witness's cosignature, while the
	// verifiers run (checkpoint_interval 1s).
	for _, c := range []struct {
		v   *devstack.Verifier
		ref string
	}{{va, proxyReceipt}, {vb, dec.Receipt}} {
		idx := receiptIndex(t, c.ref)
		var out string
		if err := devstack.Poll(ctx, 30*time.Second, func() (bool, error) {
			out, err = proveAndVerify(t, st, work, c.v.AuditPath, idx)
			return err == nil, err
		}); err != nil {
			t.Fatalf("%s: receipt %q: %v", c.v.Name, c.ref, err)
		}
		for _, want := range []string{"cosigned by witness.agentid-dev", "peer: " + childID, "decision: allow dev-tasks", `"principal":"spiffe://example.org/user/alice"`} {
			if !strings.Contains(out, want) {
				t.Errorf("%s: verify-receipt output lacks %q:\n%s", c.v.Name, want, out)
			}
		}
		t.Logf("%s: receipt %s verifies offline:\n%s", c.v.Name, c.ref, out)
	}

	// Revoke the root (and with it the child) through the registrar.
	if _, err := reg.RevokeTask(ctx, &registrarv1.RevokeTaskRequest{SpiffeId: root.GetSpiffeId()}); err != nil {
		t.Fatal(err)
	}

	// Stop the writers: each closes its log with a checkpoint the witness
	// cosigns.
	for _, v := range []*devstack.Verifier{va, vb, st.Verifier} {
		if err := v.Stop(); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.Registrar.Process().Stop(); err != nil {
		t.Fatal(err)
	}
	logs := []struct{ name, path, signer string }{
		{va.Name, va.AuditPath, st.VerifierID}, {vb.Name, vb.AuditPath, st.VerifierID},
		{"registrar", st.Registrar.AuditPath, st.RegistrarID},
	}
	origin := regexp.MustCompile(`log (agentid-audit/\S+):`)
	for _, l := range logs {
		out, err := agentid(t, st, work, "audit", "verify", "--bundle", st.BundlePath, "--witness-key", st.Witness.KeyFile,
			"--signer", l.signer, l.path)
		if err != nil {
			t.Fatalf("%s: %v", l.name, err)
		}
		m := origin.FindStringSubmatch(out)
		if m == nil || !strings.Contains(out, "witnessed") || !strings.Contains(out, "(witness witness.agentid-dev)") {
			t.Fatalf("%s: audit verify: %s", l.name, out)
		}
		// The log extends what the witness holds for it.
		ckpt := filepath.Join(work, l.name+".checkpoint")
		latest, err := agentid(t, st, work, "audit", "witness", "latest", "--state", st.Witness.StateDir, "--origin", m[1])
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(ckpt, []byte(latest), 0o600); err != nil {
			t.Fatal(err)
		}
		out2, err := agentid(t, st, work, "audit", "verify", "--bundle", st.BundlePath, "--witness-key", st.Witness.KeyFile,
			"--signer", l.signer, "--checkpoint", ckpt, l.path)
		if err != nil {
			t.Fatalf("%s: with the witness's latest checkpoint: %v", l.name, err)
		}
		t.Logf("%s: %s", l.name, strings.TrimSpace(out2))
		// Not as a task: a pinned signer that did not write it fails.
		if _, err := agentid(t, st, work, "audit", "verify", "--bundle", st.BundlePath, "--witness-key", st.Witness.KeyFile,
			"--signer", "spiffe://example.org/someone-else", l.path); err == nil {
			t.Errorf("%s: verifies with a signer that did not write it", l.name)
		}
	}

	// The registrar's actions, each proved like a decision.
	wantActions := map[string]string{"CreateTask": root.GetSpiffeId(), "DelegateTask": childID, "RevokeTask": root.GetSpiffeId()}
	for _, rec := range readRecords(t, st.Registrar.AuditPath) {
		if rec.Type != audit.TypeRegistrar || rec.Action == nil || wantActions[rec.Action.Name] != rec.Action.Path || rec.Decision != "allow" {
			continue
		}
		out, err := proveAndVerify(t, st, work, st.Registrar.AuditPath, rec.Seq-1)
		if err != nil {
			t.Fatalf("registrar %s: %v", rec.Action.Name, err)
		}
		if !strings.Contains(out, "cosigned by witness.agentid-dev") || !strings.Contains(out, "action: registrar  "+rec.Action.Path+" "+rec.Action.Name) {
			t.Errorf("registrar %s: verify-receipt:\n%s", rec.Action.Name, out)
		}
		t.Logf("registrar %s %s (seq %d) proves", rec.Action.Name, rec.Action.Path, rec.Seq)
		delete(wantActions, rec.Action.Name)
	}
	if len(wantActions) > 0 {
		t.Errorf("the registrar's log lacks %v", wantActions)
	}
}

// promptDigest is the sample prompt's sha256:<hex>, as `agentid prompt`
// prints it.
func promptDigest(t *testing.T, st *devstack.Stack, work string) string {
	t.Helper()
	out, err := agentid(t, st, work, "prompt", "hash", st.SamplePrompt)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// receiptIndex is N of a reference "<origin>;index=<N>".
func receiptIndex(t *testing.T, ref string) uint64 {
	t.Helper()
	_, n, ok := strings.Cut(ref, ";index=")
	idx, err := strconv.ParseUint(n, 10, 64)
	if !ok || err != nil {
		t.Fatalf("receipt reference %q", ref)
	}
	return idx
}

// proveAndVerify writes the receipt of index idx of log with `agentid audit
// prove` and checks it offline against the bundle and the witness's key.
func proveAndVerify(t *testing.T, st *devstack.Stack, work, log string, idx uint64) (string, error) {
	t.Helper()
	file := filepath.Join(work, filepath.Base(log)+"."+strconv.FormatUint(idx, 10)+".receipt.json")
	if _, err := agentid(t, st, work, "audit", "prove", "--index", strconv.FormatUint(idx, 10), "--out", file, log); err != nil {
		return "", err
	}
	return agentid(t, st, work, "audit", "verify-receipt", file, "--bundle", st.BundlePath, "--witness-key", st.Witness.KeyFile)
}

func readRecords(t *testing.T, path string) []audit.Record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var recs []audit.Record
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		var r audit.Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		recs = append(recs, r)
	}
	return recs
}
