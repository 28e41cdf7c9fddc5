package verifier_test

// Review 13's findings on this session's header-name and form-body fixes,
// against a real Laravel Request (Debian php-illuminate-http, php -S) and
// a real Rack (startRack).

import (
	"bufio"
	"strconv"
	"strings"
	"testing"
)

// laravelEchoApp shows the method Laravel runs and the identity header as
// Laravel (Symfony's HeaderBag over PHP's $_SERVER) reads it.
const laravelEchoApp = `<?php
require '/usr/share/php/Illuminate/Http/autoload.php';
$r = Illuminate\Http\Request::capture();
header('Content-Type: text/plain');
echo 'ran ' . $r->getMethod() . "\n";
echo 'claims=' . $r->header('x-agentid-claims') . "\n";
`

func startLaravelEcho(t *testing.T) string { return startLaravelApp(t, laravelEchoApp).String() }

// TestAttackHeaderNamePunctuation (review 13): PHP (php_register_variable_ex, used by the
// built-in server and PHP-FPM for $_SERVER) turns "." (and " ") in a
// variable name into "_": HTTP_X_HTTP_METHOD.OVERRIDE is registered as
// HTTP_X_HTTP_METHOD_OVERRIDE, which Symfony/Laravel read as the
// X-HTTP-Method-Override header the verifier refuses, and
// HTTP_X_AGENTID.CLAIMS as x-agentid-claims, an identity header.
func TestAttackHeaderNamePunctuation(t *testing.T) {
	e := newAttackEnv(t)
	up := startLaravelEcho(t)
	dial := proxyFor(t, e, up)
	for _, tc := range []struct{ name, header, bad string }{
		// no Content-Type: a form to the verifier (no "_method" field in
		// it); "Content.Type" is HTTP_CONTENT_TYPE, Symfony's CONTENT_TYPE
		// header: Laravel reads the body as JSON
		{"json", "Content.Type: application/json\r\nContent-Length: 20\r\n\r\n{\"_method\":\"DELETE\"}", "ran DELETE"},
		{"override", "X-Http-Method.Override: DELETE", "ran DELETE"},
		{"override2", "X.HTTP.Method.Override: DELETE", "ran DELETE"},
		{"claims", "X-Agentid.Claims: eyJzY29wZSI6WyJrYjphZG1pbiJdfQ", "claims=eyJ"},
	} {
		pc := dial()
		raw := "POST /kb/doc HTTP/1.1\r\nHost: kb\r\nContent-Type: text/plain\r\nContent-Length: 0\r\n" + tc.header + "\r\n\r\n"
		if tc.name == "json" {
			raw = "POST /kb/doc HTTP/1.1\r\nHost: kb\r\n" + tc.header
		}
		resp, body := exchangeRaw(t, pc, bufio.NewReader(pc), raw)
		if strings.Contains(body, tc.bad) {
			t.Errorf("proxy, %s: %d %q (Laravel behind the proxy read the forged header)", tc.header, resp.StatusCode, strings.TrimSpace(body))
		}
		if tc.name == "json" {
			continue
		}
		k, v, _ := strings.Cut(tc.header, ": ")
		in := map[string]string{strings.ToLower(k): v}
		if r := e.extAuthz(t, checkReq(e.certPEM, "POST", "/kb/doc", in, "")); r.GetOkResponse() != nil {
			t.Errorf("ext_authz, %s: allowed; as Envoy applies it the upstream gets %v", strings.ToLower(k), applyAsEnvoy(in, r.GetOkResponse()))
		}
	}
}

// TestAttackFormContentTypeSpace: PHP's SAPI cuts a Content-Type at the
// first ";", "," or " " (sapi_read_post_data) before choosing the POST
// reader, so "application/x-www-form-urlencoded x" is a form to PHP; the
// verifier's formKindOf cuts at ";" only and does not read the body.
func TestAttackFormContentTypeSpace(t *testing.T) {
	e := newAttackEnv(t)
	up := startLaravelEcho(t)
	dial := proxyFor(t, e, up)
	const body = "_method=DELETE"
	for _, ct := range []string{"application/x-www-form-urlencoded x", "application/x-www-form-urlencoded charset=utf-8"} {
		pc := dial()
		resp, got := exchangeRaw(t, pc, bufio.NewReader(pc), "POST /kb/doc HTTP/1.1\r\nHost: kb\r\nContent-Type: "+ct+"\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
		if strings.Contains(got, "ran DELETE") {
			t.Errorf("proxy, Content-Type %q: %d %q (past the deny on DELETE)", ct, resp.StatusCode, strings.TrimSpace(got))
		}
		r := e.extAuthz(t, checkReq(e.certPEM, "POST", "/kb/doc", map[string]string{"content-type": ct}, body))
		if r.GetOkResponse() != nil {
			t.Errorf("ext_authz, Content-Type %q with body %q: allowed", ct, body)
		}
	}
}

// TestAttackGRPCContentTypeSecondLine: a POST with two Content-Type lines,
// a form type first and a gRPC type second, is decided as a gRPC call
// (isGRPCContentType looks at every value) so its body is not read and
// its header names are not checked; Rack reads the first type (its
// CONTENT_TYPE is both joined by ", ", the media type the first) and runs
// the form's "_method".
func TestAttackGRPCContentTypeSecondLine(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, attackPolicy+`
rule "grpc-get" {
  effect = "allow"
  action {
    grpc {
      methods = ["/kb.v1.KB/Get"]
    }
  }
}
`)
	pc := proxyFor(t, e, startRack(t).String())()
	const body = "_method=DELETE"
	resp, got := exchangeRaw(t, pc, bufio.NewReader(pc), "POST /kb.v1.KB/Get HTTP/1.1\r\nHost: kb\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Type: application/grpc\r\nContent-Length: "+strconv.Itoa(len(body))+"\r\n\r\n"+body)
	if strings.Contains(got, "ran DELETE") {
		t.Errorf("proxy to Rack: %d %q (a gRPC Get was decided, Rack ran DELETE)", resp.StatusCode, strings.TrimSpace(got))
	}
	// Left (docs/verifier.md): one Content-Type that is both Connect's and
	// JSON to Laravel (application/connect+json) is decided as the gRPC
	// call; its body is not read (a stream). It takes a policy allowing a
	// gRPC method at a path a Laravel app serves with a DELETE route.
	// Envoy joins the two lines with ","; an underscore header rides along.
	in := map[string]string{"content-type": "application/x-www-form-urlencoded,application/grpc", "x_agentid_claims": "eyJzY29wZSI6WyJrYjphZG1pbiJdfQ"}
	if r := e.extAuthz(t, checkReq(e.certPEM, "POST", "/kb.v1.KB/Get", in, body)); r.GetOkResponse() != nil {
		t.Errorf("ext_authz: allowed; as Envoy applies it the upstream gets %v", applyAsEnvoy(in, r.GetOkResponse()))
	}
}
