package verifier_test

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// Form bodies that a framework parses differently from Go's readers
// (review 13): each is run as DELETE by the real upstream named (checked
// directly first), and must be refused (400) by the proxy in front of it,
// the middleware and ext_authz.

// refusedByAll posts each case straight to the real upstream, which must
// run it as DELETE, then through the proxy in front of that upstream, the
// middleware and ext_authz, which must each refuse it with 400 naming
// want.
func refusedByAll(t *testing.T, upName string, up *url.URL, want string, cases []formCase) {
	t.Helper()
	e := newAttackEnv(t)
	for _, c := range cases {
		if st, body := postForm(t, http.DefaultClient, up.String(), c); st != 200 || !strings.HasPrefix(body, "ran DELETE") {
			t.Fatalf("the %s upstream directly, %s: %d %q, want it to run DELETE", upName, c.name, st, body)
		}
	}
	client, base := proxyToURL(t, e, up)
	mw := e.v.Middleware(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ran " + r.Method))
	}))
	for _, c := range cases {
		if st, body := postForm(t, client, base, c); st != http.StatusBadRequest || !strings.Contains(body, want) {
			t.Errorf("proxy to %s, %s: %d %q, want 400 naming %s", upName, c.name, st, body, want)
		}
		req := httptest.NewRequest("POST", "/kb/docs/1", strings.NewReader(c.body))
		req.Header.Set("Content-Type", c.contentType)
		req.Header.Set("Authorization", "Bearer "+e.jwt)
		rec := httptest.NewRecorder()
		mw.ServeHTTP(rec, req)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), want) {
			t.Errorf("middleware, %s: %d %q, want 400 naming %s", c.name, rec.Code, rec.Body, want)
		}
		r := e.extAuthz(t, checkReq(e.certPEM, "POST", "/kb/docs/1", map[string]string{"content-type": c.contentType}, c.body))
		if r.GetDeniedResponse().GetStatus().GetCode() != 400 || !strings.Contains(r.GetStatus().GetMessage(), want) {
			t.Errorf("ext_authz, %s: %v, want 400 naming %s", c.name, r.GetStatus(), want)
		}
	}
}

// bareLFDelimiter: the "_method" part follows a delimiter line whose line
// break before it is a bare LF, after a first delimiter line ended by
// CRLF.
var bareLFDelimiter = []formCase{{"delimiter after a bare LF", "multipart/form-data; boundary=zz",
	"--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\n--zz\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--zz--\r\n"}}

// TestAttackFormMultipartBareLFDelimiter: once the first delimiter line
// of a multipart body ends with CRLF, Go's multipart reader ends a part
// only at "\r\n--boundary", so after "x\n--zz\r\n" the "_method" part is
// content of the part before it; PHP (which looks for "\n--boundary")
// reads it as a part, and Laravel ran DELETE (Rack 2.2 did not). Seen
// failing before the fix: the proxy forwarded it to real Laravel ("ran
// DELETE"), the middleware and ext_authz allowed it.
func TestAttackFormMultipartBareLFDelimiter(t *testing.T) {
	refusedByAll(t, "Laravel", startLaravel(t), "delimiter", bareLFDelimiter)
}

// TestAttackFormMultipartSingleQuotedName: PHP's multipart parser
// (main/rfc1867.c, php_ap_getword_conf) reads a parameter value in single
// quotes as quoted, so name='_method' is the field "_method" to Laravel;
// to mime.ParseMediaType the value is the token "'_method'". Seen failing
// before the fix: the proxy forwarded it to real Laravel ("ran DELETE"),
// the middleware and ext_authz allowed it. The other cases (PHP keeps the
// last of two names, skips a run of "=", splits pairs at ";" outside
// quotes with \' escaped) were refused before as Go cannot read their
// Content-Disposition; they are now refused for their "_method" name.
func TestAttackFormMultipartSingleQuotedName(t *testing.T) {
	refusedByAll(t, "Laravel", startLaravel(t), "_method", []formCase{
		{"single-quoted name", "multipart/form-data; boundary=zz", "--zz\r\nContent-Disposition: form-data; name='_method'\r\n\r\nDELETE\r\n--zz--\r\n"},
		{"two names, PHP keeps the last", "multipart/form-data; boundary=zz", "--zz\r\nContent-Disposition: form-data; name=\"a\"; name=\"_method\"\r\n\r\nDELETE\r\n--zz--\r\n"},
		{"name after two equals signs", "multipart/form-data; boundary=zz", "--zz\r\nContent-Disposition: form-data; name==_method\r\n\r\nDELETE\r\n--zz--\r\n"},
		{"single-quoted name with an escaped quote before it", "multipart/form-data; boundary=zz", "--zz\r\nContent-Disposition: form-data; x='a\\'; name=b'; name='_method'\r\n\r\nDELETE\r\n--zz--\r\n"},
	})
}

// TestAttackFormMultipartNameInAnotherHeader: Rack 2.2 finds a part's
// name by searching its raw head — up to the first "\r\n\r\n" — with
// /Content-Disposition:[^:]*;\s*name=(VALUE)/ni, else
// /Content-ID:\s*([^\r\n]*)/ni, inside any header's value too; Go's
// textproto reads headers (and ends a head at "\n\n" too). Seen failing
// before the fix: the proxy forwarded each to real Rack ("ran DELETE"),
// the middleware and ext_authz allowed them.
func TestAttackFormMultipartNameInAnotherHeader(t *testing.T) {
	const ct = "multipart/form-data; boundary=zz"
	refusedByAll(t, "Rack", startRack(t), "_method", []formCase{
		{"disposition inside X-Note", ct, "--zz\r\nX-Note: Content-Disposition:; name=_method\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nDELETE\r\n--zz--\r\n"},
		{"Content-ID inside X-Note", ct, "--zz\r\nX-Note: Content-ID: _method\r\n\r\nDELETE\r\n--zz--\r\n"},
	})
	refusedByAll(t, "Rack", startRack(t), "head", []formCase{
		{"head ended by LF LF", ct, "--zz\r\nX-Note: x\n\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--zz--\r\n"},
		{"empty head", ct, "--zz\r\n\r\nContent-Disposition: form-data; name=\"_method\"\r\n\r\nDELETE\r\n--zz--\r\n"},
	})
}

// TestAttackFormBracketedName: Rack 2.2's normalize_params reads a field
// name as /\A[\[\]]*([^\[\]]+)\]*/ — leading brackets dropped, cut at
// the next bracket — so "[_method]", "]_method", "[]_method" and
// "_method]" are "_method" to Rack::MethodOverride, in urlencoded and
// multipart bodies; the check cut at the first "[" only (PHP's rule).
// Seen failing before the fix: the proxy forwarded each to real Rack
// ("ran DELETE"), the middleware and ext_authz allowed them.
func TestAttackFormBracketedName(t *testing.T) {
	const ue = "application/x-www-form-urlencoded"
	refusedByAll(t, "Rack", startRack(t), "_method", []formCase{
		{"[_method]", ue, "[_method]=DELETE"},
		{"]_method", ue, "]_method=DELETE"},
		{"%5B_method%5D", ue, "%5B_method%5D=DELETE"},
		{"[]_method", ue, "[]_method=DELETE"},
		{"_method]", ue, "_method]=DELETE"},
		{"multipart [_method]", "multipart/form-data; boundary=zz", "--zz\r\nContent-Disposition: form-data; name=\"[_method]\"\r\n\r\nDELETE\r\n--zz--\r\n"},
	})
}
