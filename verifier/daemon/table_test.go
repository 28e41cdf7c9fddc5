package daemon_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/verifier"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

const tablePolicy = `
rule "kb-admin" {
  effect = "deny"
  reason = "the admin area is for operators"
  action {
    http {
      paths = ["/kb/admin/**"]
    }
  }
}

rule "kb-api-post" {
  effect = "allow"
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    http {
      methods = ["POST"]
      paths   = ["/kb.v1.KB/**"]
    }
  }
}

rule "kb-no-delete" {
  effect = "deny"
  action {
    grpc {
      methods = ["/kb.v1.KB/Delete"]
    }
  }
}

rule "mcp-search" {
  effect = "allow"
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    mcp {
      tools = ["search_docs"]
    }
  }
}
`

// frontendCase is one request, put to every front-end.
type frontendCase struct {
	name         string
	cred         string // "task", "other" (no kb:read), "forged", "none"
	method, path string
	body         string // MCP body (POST /mcp)
	want         string // the outcome every front-end must give: allow, deny, unauthenticated, bad_request, too_large
}

var frontendCases = []frontendCase{
	{"allowed", "task", "GET", "/kb/doc", "", "allow"},
	{"policy deny", "task", "GET", "/kb/admin/keys", "", "deny"},
	{"default deny", "other", "GET", "/kb/doc", "", "deny"},
	{"forged certificate", "forged", "GET", "/kb/doc", "", "unauthenticated"},
	{"encoded path", "task", "GET", "/kb/%61dmin/keys", "", "bad_request"},
	{"dot segments", "task", "GET", "/kb/x/../admin/keys", "", "bad_request"},
	{"lower-case method", "task", "delete", "/kb/doc", "", "bad_request"},
	{"long path", "task", "GET", "/kb/" + strings.Repeat("a", verifier.MaxPathLen), "", "too_large"},
	{"MCP allowed", "task", "POST", "/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"}}`, "allow"},
	{"MCP denied", "task", "POST", "/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell"}}`, "deny"},
	{"MCP smuggled", "task", "POST", "/mcp", `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"shell","Name":"search_docs"}}`, "bad_request"},
	{"MCP batch", "task", "POST", "/mcp", `[{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"search_docs"}}]`, "bad_request"},
	{"gRPC call", "task", "POST", "/kb.v1.KB/Delete", "", "deny"},                       // as {grpc, /kb.v1.KB/Delete}, not the http POST allowed
	{"gRPC type beside another", "task", "POST", "/kb.v1.KB/Delete", "", "bad_request"}, // neither gRPC nor HTTP
}

// caseContentTypes is the Content-Type some frontendCases send (by name).
var caseContentTypes = map[string]string{
	"gRPC call":                "application/grpc",
	"gRPC type beside another": "application/grpc;v=a,b",
}

// TestFrontEndsDecideAlike puts the same requests to ext_authz, the proxy,
// the HTTP middleware and (for what it can express) the check API of one
// daemon, and expects the same outcome from each, the same audit record
// (decision, rules, reason), the same metrics, and (receipts being on by
// default) a receipt reference for every allowed decision that proves
// that front-end's record.
func TestFrontEndsDecideAlike(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Receipt", r.Header.Get(verifier.HeaderReceipt))
		io.WriteString(w, "upstream")
	}))
	t.Cleanup(upstream.Close)
	f := startWith(t, `check_api {
  listen = "127.0.0.1:0"
}
ext_authz {
  listen    = "127.0.0.1:0"
  mcp_paths = ["/mcp"]
}
proxy {
  listen    = "127.0.0.1:0"
  upstream  = "`+upstream.URL+`"
  mcp_paths = ["/mcp"]
}
`, "", tablePolicy)
	td := spiffeid.RequireTrustDomainFromString("example.org")
	svids := map[string]*x509svid.SVID{"task": f.taskSVID(t, f.ca, "kb:read"), "other": f.taskSVID(t, f.ca, "tickets:write"),
		"forged": f.taskSVID(t, testca.New(t, td, time.Now()), "kb:read")}
	creds := map[string]string{}
	for k, s := range svids {
		pem, _ := testca.SVIDPEM(t, s)
		creds[k] = string(pem)
	}
	proxyClients := map[string]*http.Client{}
	for k, s := range svids {
		proxyClients[k] = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(
			s, f.ca.X509Bundle(), tlsconfig.AuthorizeID(spiffeid.RequireFromString("spiffe://example.org/verifier")))}}
	}

	conn, err := grpc.NewClient(f.d.Addr("ext_authz").String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	extAuthz := authv3.NewAuthorizationClient(conn)
	middleware := f.d.Verifier().Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ref, _ := verifier.ReceiptFromContext(r.Context())
		w.Header().Set("X-Seen-Receipt", ref.String())
		io.WriteString(w, "ok")
	}))
	receipts := map[string][]string{} // front-end → receipt references of its allowed decisions

	frontends := map[string]func(tc frontendCase) (string, bool){
		"ext_authz": func(tc frontendCase) (string, bool) {
			req := &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
				Source:  &authv3.AttributeContext_Peer{Certificate: url.PathEscape(creds[tc.cred])},
				Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: tc.method, Path: tc.path, Body: tc.body}}}}
			if ct := caseContentTypes[tc.name]; ct != "" {
				req.Attributes.Request.Http.Headers = map[string]string{"content-type": ct}
			}
			resp, err := extAuthz.Check(context.Background(), req)
			if err != nil {
				t.Fatal(err)
			}
			if ok := resp.GetOkResponse(); ok != nil {
				for _, h := range ok.GetHeaders() {
					if h.GetHeader().GetKey() == verifier.HeaderReceipt {
						receipts["ext_authz"] = append(receipts["ext_authz"], h.GetHeader().GetValue())
					}
				}
				return "allow", true
			}
			return outcomeOf(int(resp.GetDeniedResponse().GetStatus().GetCode())), true
		},
		"proxy": func(tc frontendCase) (string, bool) {
			if tc.cred == "none" {
				return "", false // the proxy's TLS handshake requires a client certificate
			}
			client := proxyClients[tc.cred]
			req, _ := http.NewRequest(tc.method, "https://"+f.d.Addr("proxy").String()+"/", strings.NewReader(tc.body))
			req.URL.Opaque = tc.path
			if ct := caseContentTypes[tc.name]; ct != "" {
				req.Header.Set("Content-Type", ct)
			}
			resp, err := client.Do(req)
			if err != nil {
				if tc.cred == "forged" {
					return "unauthenticated", true // refused in the handshake
				}
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				receipts["proxy"] = append(receipts["proxy"], resp.Header.Get("X-Seen-Receipt"))
			}
			return outcomeOf(resp.StatusCode), true
		},
		"http": func(tc frontendCase) (string, bool) {
			if tc.body != "" {
				return "", false
			}
			r := httptest.NewRequest("GET", "/", nil)
			r.Method, r.RequestURI = tc.method, tc.path
			if ct := caseContentTypes[tc.name]; ct != "" {
				r.Header.Set("Content-Type", ct)
			}
			if u, err := url.ParseRequestURI(tc.path); err == nil {
				r.URL = u // as a server parses it (the middleware refuses a URL rewritten in front of it)
			}
			if s := svids[tc.cred]; s != nil {
				r.TLS = &tls.ConnectionState{PeerCertificates: s.Certificates}
			}
			rec := httptest.NewRecorder()
			middleware.ServeHTTP(rec, r)
			if rec.Code == 200 {
				receipts["http"] = append(receipts["http"], rec.Header().Get("X-Seen-Receipt"))
			}
			return outcomeOf(rec.Code), true
		},
		"check_api": func(tc frontendCase) (string, bool) {
			if tc.body != "" {
				return "", false // the check API takes actions, not MCP bodies
			}
			in := map[string]any{"certificate": creds[tc.cred], "action": map[string]string{"kind": "http", "method": tc.method, "path": tc.path}}
			if ct := caseContentTypes[tc.name]; ct != "" { // the request the service received
				in["request"] = map[string]any{"method": tc.method, "target_uri": "https://kb.example" + tc.path, "headers": map[string]string{"Content-Type": ct}}
			}
			body, _ := json.Marshal(in)
			resp, err := http.Post("http://"+f.d.Addr("check_api").String()+"/v1/check", "application/json", strings.NewReader(string(body)))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var out struct {
				Allow    bool   `json:"allow"`
				DenyCode string `json:"deny_code"`
				Receipt  string `json:"receipt"`
			}
			json.NewDecoder(resp.Body).Decode(&out)
			switch {
			case out.Allow:
				receipts["check_api"] = append(receipts["check_api"], out.Receipt)
				return "allow", true
			case out.DenyCode == "":
				return "deny", true
			case out.DenyCode == verifier.ReasonBadRequest || out.DenyCode == verifier.ReasonTooLarge:
				return out.DenyCode, true
			}
			return "unauthenticated", true
		},
	}
	for _, tc := range frontendCases {
		for name, fe := range frontends {
			got, ok := fe(tc)
			if ok && got != tc.want {
				t.Errorf("%s via %s: %s, want %s", tc.name, name, got, tc.want)
			}
		}
	}

	// Every front-end is counted alike.
	m := metricsText(t, f)
	for _, fe := range []string{"ext_authz", "proxy", "http", "check_api"} {
		for _, want := range []string{
			`agentid_refusals_total{code="bad_request",frontend="` + fe + `"}`,
			`agentid_refusals_total{code="forbidden",frontend="` + fe + `"}`,
			`agentid_decisions_total{decision="allow",frontend="` + fe + `",rule="kb-read"} 1`,
		} {
			if !strings.Contains(m, want) {
				t.Errorf("metrics lack %s", want)
			}
		}
	}

	// The audit records of one case agree across front-ends (except the
	// proxy's forged case, refused in the TLS handshake before the
	// pipeline).
	f.d.Close()
	type key struct{ frontend, path string }
	recs := map[key][]audit.Record{}
	file, _ := os.Open(f.auditPath)
	sc := bufio.NewScanner(file)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var r audit.Record
		json.Unmarshal(sc.Bytes(), &r)
		if r.Type == audit.TypeDecision && r.Action != nil {
			recs[key{r.Frontend, r.Action.Method + " " + r.Action.Path + " " + r.Action.Name}] = append(recs[key{r.Frontend, r.Action.Method + " " + r.Action.Path + " " + r.Action.Name}], r)
		}
	}
	file.Close()
	byAction := map[string]map[string]string{}
	for k, rs := range recs {
		for _, r := range rs {
			if byAction[k.path] == nil {
				byAction[k.path] = map[string]string{}
			}
			byAction[k.path][k.frontend+" "+r.Peer] = r.Decision + "|" + strings.Join(r.Rules, ",") + "|" + r.Reason
		}
	}
	for action, m := range byAction {
		seen := map[string]string{} // peer → record
		for fp, rec := range m {
			peer := fp[strings.IndexByte(fp, ' ')+1:]
			if prev, ok := seen[peer]; ok && prev != rec {
				t.Errorf("%s: audit records differ between front-ends:\n%v", action, m)
				break
			}
			seen[peer] = rec
		}
	}
	if len(byAction) < 8 {
		t.Fatalf("only %d distinct actions audited", len(byAction))
	}

	// Every allowed decision carried a receipt reference that proves its
	// own front-end's allowed record.
	files, _ := audit.Files(f.auditPath)
	seen := map[string]bool{}
	for fe, want := range map[string]int{"ext_authz": 2, "proxy": 2, "http": 1, "check_api": 1} {
		if len(receipts[fe]) != want {
			t.Errorf("%s: %d receipts %q for %d allowed decisions", fe, len(receipts[fe]), receipts[fe], want)
		}
		for _, s := range receipts[fe] {
			ref, err := audit.ParseRef(s)
			if err != nil || seen[s] {
				t.Fatalf("%s: receipt %q: %v (seen before: %v)", fe, s, err, seen[s])
			}
			seen[s] = true
			rc, err := audit.Prove(files, ref.Index)
			if err != nil {
				t.Fatalf("%s: %s: %v", fe, s, err)
			}
			res, err := audit.VerifyReceipt(rc, audit.VerifyOptions{Bundle: f.ca.X509Bundle()})
			if err != nil || rc.Origin != ref.Origin || res.Record.Frontend != fe || res.Record.Decision != "allow" {
				t.Fatalf("%s: %s proves %+v: %v", fe, s, res, err)
			}
		}
	}
}

func outcomeOf(status int) string {
	switch status {
	case 200:
		return "allow"
	case 403:
		return "deny"
	case 401:
		return "unauthenticated"
	case 400:
		return "bad_request"
	case 413, 414:
		return "too_large"
	}
	return "status " + http.StatusText(status)
}
