package daemon_test

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/agentid/agentid/internal/testca"
)

// TestAttackCheckAPIFormBody (review 13): the check API decides its "request" "as the
// middleware decides a request" (docs/verifier.md), but a POST form body
// with "_method=DELETE" (which the middleware refuses: Rails and Laravel
// run it as DELETE) is allowed.
func TestAttackCheckAPIFormBody(t *testing.T) {
	f := startWith(t, "check_api {\n  listen = \"127.0.0.1:0\"\n}\n", "", headersPolicy)
	s := f.taskSVID(t, f.ca, "kb:read")
	pemb, _ := testca.SVIDPEM(t, s)
	mw := f.d.Verifier().Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	for _, tc := range []struct{ ct, body string }{
		{"application/x-www-form-urlencoded", "_method=DELETE"},
		{"application/json", `{"_method":"DELETE"}`},
	} {
		body, _ := json.Marshal(map[string]any{"certificate": string(pemb),
			"action": map[string]string{"kind": "http", "method": "POST", "path": "/kb/doc"},
			"request": map[string]any{"method": "POST", "target_uri": "https://kb.example/kb/doc",
				"headers": map[string]string{"Content-Type": tc.ct}, "body": base64.StdEncoding.EncodeToString([]byte(tc.body))}})
		resp, err := http.Post("http://"+f.d.Addr("check_api").String()+"/v1/check", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()

		r := httptest.NewRequest("POST", "/kb/doc", strings.NewReader(tc.body))
		r.Header.Set("Content-Type", tc.ct)
		r.TLS = &tls.ConnectionState{PeerCertificates: s.Certificates}
		rec := httptest.NewRecorder()
		mw.ServeHTTP(rec, r)
		if out["allow"] == true {
			t.Errorf("check API, POST %s %q: %v; the middleware: %d %q", tc.ct, tc.body, out, rec.Code, strings.TrimSpace(rec.Body.String()))
		}
	}
}

// TestCheckAPIBodyCharset: a "request" whose JSON body is in another
// charset (a "+…-" UTF-7 run spelling `","_method":"DELETE","z":"`, which
// express.json() decodes) or compressed is refused (bad_request,
// Content-Type / Content-Encoding), as the middleware refuses it (415);
// a UTF-8 one is decided.
func TestCheckAPIBodyCharset(t *testing.T) {
	f := startWith(t, "check_api {\n  listen = \"127.0.0.1:0\"\n}\n", "", headersPolicy)
	s := f.taskSVID(t, f.ca, "kb:read")
	pemb, _ := testca.SVIDPEM(t, s)
	mw := f.d.Verifier().Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	const utf7Body = `{"q":"x+ACIALAAiAF8AbQBlAHQAaABvAGQAIgA6ACIARABFAEwARQBUAEUAIgAsACIAegAiADoAIg-"}`
	for _, tc := range []struct {
		headers map[string]string
		body    string
		allow   bool
		want    string // in the reason, and the middleware's status
		status  int
	}{
		{map[string]string{"Content-Type": "application/json; charset=utf-8"}, `{"q":"x"}`, true, "", 200},
		{map[string]string{"Content-Type": "application/json; charset=utf-7"}, utf7Body, false, `Content-Type: charset "utf-7" is refused`, 415},
		{map[string]string{"Content-Type": "application/json", "Content-Encoding": "gzip"}, `{"q":"x"}`, false, `Content-Encoding: "gzip" is refused`, 415},
	} {
		body, _ := json.Marshal(map[string]any{"certificate": string(pemb),
			"action": map[string]string{"kind": "http", "method": "POST", "path": "/kb/doc"},
			"request": map[string]any{"method": "POST", "target_uri": "https://kb.example/kb/doc",
				"headers": tc.headers, "body": base64.StdEncoding.EncodeToString([]byte(tc.body))}})
		resp, err := http.Post("http://"+f.d.Addr("check_api").String()+"/v1/check", "application/json", strings.NewReader(string(body)))
		if err != nil {
			t.Fatal(err)
		}
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if out["allow"] != tc.allow || !strings.Contains(fmt.Sprint(out["reason"]), tc.want) {
			t.Errorf("check API, %v: %v; want allow=%v with %q", tc.headers, out, tc.allow, tc.want)
		}
		r := httptest.NewRequest("POST", "/kb/doc", strings.NewReader(tc.body))
		for k, v := range tc.headers {
			r.Header.Set(k, v)
		}
		r.TLS = &tls.ConnectionState{PeerCertificates: s.Certificates}
		rec := httptest.NewRecorder()
		mw.ServeHTTP(rec, r)
		if rec.Code != tc.status {
			t.Errorf("the middleware, %v: %d %q, want %d", tc.headers, rec.Code, strings.TrimSpace(rec.Body.String()), tc.status)
		}
	}
}
