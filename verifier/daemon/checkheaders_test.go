package daemon_test

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentid/agentid/internal/testca"
)

const headersPolicy = `
rule "kb-write" {
  effect = "allow"
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    http {
      methods = ["POST"]
      paths   = ["/kb/**"]
    }
  }
}

rule "no-delete" {
  effect = "deny"
  reason = "nothing is deleted by agents"
  action {
    http {
      methods = ["DELETE"]
    }
  }
}

rule "tenant" {
  effect = "deny"
  reason = "not the admin tenant"
  action {
    http {}
  }
  condition = lookup(request.headers, "x-tenant", "") == "admin"
}
`

// TestAttackCheckAPIRequestHeaders (review 10): the check API's "request" is "the HTTP
// request the service received", yet its headers are not the policy's
// request.headers and are not checked for method overrides: the same
// request the middleware refuses was allowed by the check API. Its headers
// and its target's query are now decided on as the middleware's are.
func TestAttackCheckAPIRequestHeaders(t *testing.T) {
	f := startWith(t, "check_api {\n  listen = \"127.0.0.1:0\"\n}\n", "", headersPolicy)
	s := f.taskSVID(t, f.ca, "kb:read")
	pemb, _ := testca.SVIDPEM(t, s)
	pem := string(pemb)
	mw := f.d.Verifier().Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	for _, hdr := range []map[string]string{{"X-HTTP-Method-Override": "DELETE"}, {"X-Tenant": "admin"}, {"X_Tenant": "admin"}, {"X-Tenant": "other"}} {
		body, _ := json.Marshal(map[string]any{"certificate": pem,
			"action":  map[string]string{"kind": "http", "method": "POST", "path": "/kb/doc"},
			"request": map[string]any{"method": "POST", "target_uri": "https://kb.example/kb/doc", "headers": hdr}})
		resp, err := http.Post("http://"+f.d.Addr("check_api").String()+"/v1/check", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		var out struct {
			Allow    bool   `json:"allow"`
			DenyCode string `json:"deny_code"`
		}
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()

		r := httptest.NewRequest("POST", "/kb/doc", strings.NewReader("x"))
		for k, v := range hdr {
			r.Header.Set(k, v)
		}
		r.TLS = &tls.ConnectionState{PeerCertificates: s.Certificates}
		rec := httptest.NewRecorder()
		mw.ServeHTTP(rec, r)
		if out.Allow != (rec.Code == 200) || out.Allow != (hdr["X-Tenant"] == "other") {
			t.Errorf("POST /kb/doc with %v: check API allow=%v (%q), middleware %d %q", hdr, out.Allow, out.DenyCode, rec.Code, strings.TrimSpace(rec.Body.String()))
		}
	}
	// A "_method" in the request's query, as the middleware refuses it.
	body, _ := json.Marshal(map[string]any{"certificate": pem,
		"action":  map[string]string{"kind": "http", "method": "POST", "path": "/kb/doc"},
		"request": map[string]any{"method": "POST", "target_uri": "https://kb.example/kb/doc?_method=DELETE"}})
	resp, err := http.Post("http://"+f.d.Addr("check_api").String()+"/v1/check", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	if out["allow"] != false || out["deny_code"] != "bad_request" {
		t.Errorf("a _method query parameter: %v", out)
	}
}
