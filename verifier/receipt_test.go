package verifier_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"google.golang.org/genproto/googleapis/rpc/code"
)

// onDisk reports whether the log's line at ref.Index holds want: what a
// receipt reference names must be in the file when it is handed out.
func onDisk(t *testing.T, path string, ref audit.Ref, want string) bool {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	return ref.Index < uint64(len(lines)) && strings.Contains(lines[ref.Index], want)
}

// TestReceiptsThroughFrontEnds: with receipts on, an allowed decision
// reaches the upstream (ext_authz, proxy) or the handler (middleware) with
// the reference of its audit record, which is already in the file, and
// proves, after a checkpoint, with a receipt that verifies and names that
// decision; a receipt a client sends is never passed on; a denial carries
// none.
func TestReceiptsThroughFrontEnds(t *testing.T) {
	e := newAttackEnv(t)
	path := filepath.Join(t.TempDir(), "audit.log")
	w, err := audit.Open(path, audit.Options{Signer: e.ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/verifier"))})
	if err != nil {
		t.Fatal(err)
	}
	e.v.Audit, e.v.Receipts = w, true
	forged := "agentid-audit/00000000000000000000000000000000;index=0"
	type handed struct {
		ref      audit.Ref
		frontend string
		path     string
	}
	var mu sync.Mutex
	var refs []handed
	take := func(frontend, path, header string) {
		t.Helper()
		ref, err := audit.ParseRef(header)
		if err != nil || header == forged {
			t.Fatalf("%s %s: receipt header %q: %v", frontend, path, header, err)
		}
		if !onDisk(t, w.Path(), ref, `"path":"`+path+`"`) {
			t.Fatalf("%s %s: receipt %s handed out before its record is on disk", frontend, path, ref)
		}
		mu.Lock()
		refs = append(refs, handed{ref, frontend, path})
		mu.Unlock()
	}

	// ext_authz: the header goes to the upstream (as Envoy applies it).
	incoming := map[string]string{verifier.HeaderReceipt: forged}
	resp := e.extAuthz(t, checkReq(e.certPEM, "GET", "/kb/doc", incoming, ""))
	if code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("ext_authz: %v", resp.GetStatus())
	}
	take("ext_authz", "/kb/doc", applyAsEnvoy(incoming, resp.GetOkResponse())[verifier.HeaderReceipt])
	resp = e.extAuthz(t, checkReq(e.certPEM, "GET", "/kb/admin/x", incoming, ""))
	for _, h := range resp.GetDeniedResponse().GetHeaders() {
		if h.GetHeader().GetKey() == verifier.HeaderReceipt {
			t.Fatalf("a denial carries a receipt: %v", h)
		}
	}

	// The proxy: the upstream sees it, the client's own is stripped.
	client, base, _ := proxyTo(t, e, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if vals := r.Header.Values(verifier.HeaderReceipt); len(vals) != 1 {
			t.Errorf("upstream got receipt headers %q", vals)
			return
		}
		take("proxy", r.URL.Path, r.Header.Get(verifier.HeaderReceipt))
	}))
	req, _ := http.NewRequest("GET", base+"/kb/via-proxy", nil)
	req.Header.Set(verifier.HeaderReceipt, forged)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("proxy: %d", res.StatusCode)
	}

	// The middleware: in the context.
	h := e.v.Middleware(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		ref, ok := verifier.ReceiptFromContext(r.Context())
		d, _ := verifier.DecisionFromContext(r.Context())
		if !ok || d.Receipt != ref {
			t.Errorf("middleware: receipt %v %v, decision's %v", ref, ok, d.Receipt)
			return
		}
		take("http", r.URL.Path, ref.String())
	}))
	r := httptest.NewRequest("GET", "/kb/via-middleware", nil)
	r.Header.Set("Authorization", "Bearer "+e.jwt)
	h.ServeHTTP(httptest.NewRecorder(), r)

	if len(refs) != 3 {
		t.Fatalf("%d receipts, want 3", len(refs))
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	files, _ := audit.Files(path)
	for _, h := range refs {
		rc, err := audit.Prove(files, h.ref.Index)
		if err != nil {
			t.Fatal(err)
		}
		res, err := audit.VerifyReceipt(rc, audit.VerifyOptions{Bundle: e.ca.X509Bundle(), Signers: []spiffeid.ID{spiffeid.RequireFromString("spiffe://example.org/verifier")}})
		if err != nil {
			t.Fatalf("%s: %v", h.ref, err)
		}
		if rc.Origin != h.ref.Origin || res.Record.Frontend != h.frontend || res.Record.Action.Path != h.path || res.Record.Decision != "allow" {
			t.Fatalf("%s proves %+v, handed out by %s for %s", h.ref, res.Record, h.frontend, h.path)
		}
	}
}

// TestReceiptHeaderNotForgeable: without receipts, a client's
// x-agentid-receipt reaches neither the upstream nor the handler's context.
func TestReceiptHeaderNotForgeable(t *testing.T) {
	e := newAttackEnv(t)
	forged := "agentid-audit/00000000000000000000000000000000;index=7"
	incoming := map[string]string{verifier.HeaderReceipt: forged}
	resp, err := (&verifier.ExtAuthz{V: e.v}).Check(context.Background(), checkReq(e.certPEM, "GET", "/kb/doc", incoming, ""))
	if err != nil || resp.GetOkResponse() == nil {
		t.Fatalf("ext_authz: %v %v", resp, err)
	}
	if got := applyAsEnvoy(incoming, resp.GetOkResponse())[verifier.HeaderReceipt]; got != "" {
		t.Fatalf("ext_authz passed on %q", got)
	}
	seen := "unset"
	client, base, _ := proxyTo(t, e, http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		seen = r.Header.Get(verifier.HeaderReceipt)
	}))
	req, _ := http.NewRequest("GET", base+"/kb/doc", nil)
	req.Header.Set(verifier.HeaderReceipt, forged)
	res, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if seen != "" {
		t.Fatalf("the upstream got %q", seen)
	}
}
