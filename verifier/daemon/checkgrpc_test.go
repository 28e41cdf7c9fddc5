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

// grpcKindPolicy: the service is open to kb:read holders over HTTP and
// gRPC, except the gRPC Delete (TestAttackGRPCKindAlike's policy).
const grpcKindPolicy = `
rule "api" {
  effect = "allow"
  peer {
    scopes_all = ["kb:read"]
  }
  action {
    http {
      paths = ["/**"]
    }
    grpc {
      methods = ["/kb.v1.KB/*"]
    }
  }
}
rule "no-delete" {
  effect = "deny"
  action {
    grpc {
      methods = ["/kb.v1.KB/Delete"]
    }
  }
}
`

// TestAttackCheckAPIGRPCRequest: the check API decides
// its "request" "as the middleware decides a request" (docs/verifier.md),
// and the middleware decides a POST with a gRPC content type as the gRPC
// call {grpc, /kb.v1.KB/Delete} (denied); the check API, given the same
// request as {"kind": "http"}, decides {http, POST, /kb.v1.KB/Delete}
// and allows it.
func TestAttackCheckAPIGRPCRequest(t *testing.T) {
	f := startWith(t, "check_api {\n  listen = \"127.0.0.1:0\"\n}\n", "", grpcKindPolicy)
	s := f.taskSVID(t, f.ca, "kb:read")
	pemb, _ := testca.SVIDPEM(t, s)
	mw := f.d.Verifier().Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	const path = "/kb.v1.KB/Delete"
	body, _ := json.Marshal(map[string]any{"certificate": string(pemb),
		"action": map[string]string{"kind": "http", "method": "POST", "path": path},
		"request": map[string]any{"method": "POST", "target_uri": "https://kb.example" + path,
			"headers": map[string]string{"Content-Type": "application/grpc", "Te": "trailers"}}})
	resp, err := http.Post("http://"+f.d.Addr("check_api").String()+"/v1/check", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()

	r := httptest.NewRequest("POST", path, strings.NewReader("\x00\x00\x00\x00\x00"))
	r.Header.Set("Content-Type", "application/grpc")
	r.Header.Set("Te", "trailers")
	r.TLS = &tls.ConnectionState{PeerCertificates: s.Certificates}
	rec := httptest.NewRecorder()
	mw.ServeHTTP(rec, r)
	if out["allow"] == true || rec.Code == 200 {
		t.Errorf("POST %s (content-type application/grpc): check API %d %v; the middleware: %d %q", path, resp.StatusCode, out, rec.Code, strings.TrimSpace(rec.Body.String()))
	}
}

// TestCheckAPIGRPCRefusals: the check API refuses what the middleware and
// the interceptors refuse: a gRPC content type beside another (joined by
// a comma, or a comma in a parameter), and a gRPC method not spelled
// as protobuf names one, as {"kind": "grpc"} or as a POST with a gRPC
// content type.
func TestCheckAPIGRPCRefusals(t *testing.T) {
	f := startWith(t, "check_api {\n  listen = \"127.0.0.1:0\"\n}\n", "", grpcKindPolicy)
	pemb, _ := testca.SVIDPEM(t, f.taskSVID(t, f.ca, "kb:read"))
	check := func(action map[string]string, headers map[string]string) map[string]any {
		t.Helper()
		req := map[string]any{"certificate": string(pemb), "action": action}
		if headers != nil {
			req["request"] = map[string]any{"method": action["method"], "target_uri": "https://kb.example" + action["path"], "headers": headers}
		}
		body, _ := json.Marshal(req)
		resp, err := http.Post("http://"+f.d.Addr("check_api").String()+"/v1/check", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		return out
	}
	post := func(path string) map[string]string {
		return map[string]string{"kind": "http", "method": "POST", "path": path}
	}
	for _, tc := range []struct {
		name     string
		action   map[string]string
		headers  map[string]string
		wantCode string // "" for allowed
	}{
		{"gRPC Get", post("/kb.v1.KB/Get"), map[string]string{"Content-Type": "application/grpc"}, ""},
		{"gRPC kind Get", map[string]string{"kind": "grpc", "path": "/kb.v1.KB/Get"}, nil, ""},
		{"HTTP POST", post("/kb.v1.KB/Delete"), map[string]string{"Content-Type": "application/json"}, ""},
		{"comma in a parameter", post("/kb.v1.KB/Delete"), map[string]string{"Content-Type": "application/grpc;v=a,b"}, "bad_request"},
		// (two lines cannot be given: the JSON refuses case-variant keys)
		{"joined", post("/kb.v1.KB/Delete"), map[string]string{"Content-Type": "text/plain, application/grpc"}, "bad_request"},
		{"encoded method", map[string]string{"kind": "grpc", "path": "/kb.v1.KB/%44elete"}, nil, "bad_request"},
		{"method with a query", map[string]string{"kind": "grpc", "path": "/kb.v1.KB/Delete?x=1"}, nil, "bad_request"},
		{"method with a fragment", map[string]string{"kind": "grpc", "path": "/kb.v1.KB/Delete#x"}, nil, "bad_request"},
	} {
		out := check(tc.action, tc.headers)
		if tc.wantCode == "" {
			if out["allow"] != true {
				t.Errorf("%s: %v, want allowed", tc.name, out)
			}
		} else if out["allow"] == true || out["deny_code"] != tc.wantCode {
			t.Errorf("%s: %v, want deny_code %s", tc.name, out, tc.wantCode)
		}
	}
}
