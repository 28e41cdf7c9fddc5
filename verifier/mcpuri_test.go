package verifier_test

import (
	"context"
	"strings"
	"testing"

	"google.golang.org/genproto/googleapis/rpc/code"

	"github.com/agentid/agentid/verifier"
)

// readURI is a resources/read of uri (JSON-escaped by the caller).
func readURI(method, uri string) string {
	return `{"jsonrpc":"2.0","id":1,"method":"` + method + `","params":{"uri":"` + uri + `"}}`
}

// Hierarchical resource URIs that a server reading them with url.Parse and
// path.Clean (or a file system) reads as another resource than the policy
// matches: refused, as bad_request.
var nonCanonicalURIs = []string{
	"file:///srv/../etc/shadow",
	"file:///srv/x/../../etc/shadow",
	"file:///srv/./notes.md",
	"file:///srv/..",
	"file:///srv/%2e%2e/etc/shadow",
	"file:///srv/%2E%2E/etc/shadow",
	"file:///srv/.%2e/etc/shadow",
	"file:///srv/%2e/notes.md",
	"file:///srv/%6eotes.md", // an encoded unreserved character
	"file:///srv/a%2fb",      // encoded "/"
	"file:///srv/a%2Fb",
	"file:///srv/a%5cb", // encoded "\"
	"file:///srv/a%00b", // encoded NUL
	"file:///srv/a%3fb", // lower-case hex
	"file:///srv/a%zzb", // malformed escape
	"file:///srv/a%2",
	"file:///srv//notes.md", // empty segment
	"file:////etc/shadow",
	"file:///srv/a\\b", // backslash
	"file:///srv\\..\\etc\\shadow",
	"file:///srv/..;x/etc/shadow", // a dot segment to servers dropping path parameters
	"file:///srv/a\tb",            // control byte
	"file:///srv/notes.md#x",      // a fragment names no other resource
	"file://host/../etc/shadow",
	"file://ho\\st/srv/notes.md",
	"https://files.example.org/srv/../etc/shadow",
	"http://files.example.org/srv/%2e%2e/etc/shadow",
	"HTTPS://files.example.org/srv/notes.md", // upper-case scheme
	"File:///srv/notes.md",
	"file:srv/../etc/shadow", // file: without "/": a relative path
	"s3://bucket/srv/../etc/shadow",
	"custom:/srv/../etc/shadow", // any scheme with an absolute path
	"/srv/../etc/shadow",        // no scheme
	"../etc/shadow",
	// an escape of a character a path may hold as it is: two spellings of
	// one file ("a:b" and "a%3Ab") that a deny on one would not match
	"file:///srv/a%3Ab",
	"file:///srv/%40ops/keys",
	"file:///srv/a%2Bb",
	"file:///srv/a%3Bx/b",
	"https://h/jobs/7%3Acancel",
	"https://files.example.org", // parsers add the "/": send https://files.example.org/
}

// Canonical hierarchical URIs and opaque ones (matched as sent) pass.
var canonicalURIs = []string{
	"file:///srv/shared/notes.md",
	"file:///srv/",
	"file:///srv/a%20b.md",
	"file:///srv/caf%C3%A9",
	"file:///srv/.hidden",
	"file:///srv/a..b",
	"file:///srv/a:b@c+d;e=f!$&'()*,",
	"file:///srv/a%3Fb%23c%25d%5B%5D", // "?", "#", "%", "[", "]" stay encoded
	"https://files.example.org/srv/notes.md?rev=2",
	"https://files.example.org/",
	"urn:example:../..", // opaque: no path to resolve
	"custom:notes/../x", // opaque (no "/" after the scheme)
	"mailto:a@example.org",
	"data:text/plain,..%2F",
	"notes.md", // no scheme, a relative path without dot segments
}

// TestParseMCPResourceURICanonical (R4): ParseMCP refuses a resource URI
// that is not canonical in every method that names one.
func TestParseMCPResourceURICanonical(t *testing.T) {
	for _, method := range []string{"resources/read", "resources/subscribe", "resources/unsubscribe"} {
		for _, uri := range nonCanonicalURIs {
			body := readURI(method, strings.ReplaceAll(strings.ReplaceAll(uri, `\`, `\\`), "\t", `\t`))
			m, err := verifier.ParseMCP([]byte(body), nil)
			var ie *verifier.InputError
			if err == nil {
				t.Errorf("%s %q: accepted as %+v", method, uri, m)
			} else if !asInputError(err, &ie) || ie.TooLarge {
				t.Errorf("%s %q: %v, want a bad-request InputError", method, uri, err)
			} else if string(m.ID) != "1" {
				t.Errorf("%s %q: id %q lost (the JSON-RPC error needs it)", method, uri, m.ID)
			}
		}
		for _, uri := range canonicalURIs {
			m, err := verifier.ParseMCP([]byte(readURI(method, uri)), nil)
			if err != nil || m.URI != uri {
				t.Errorf("%s %q: %+v %v", method, uri, m, err)
			}
		}
	}
}

func asInputError(err error, ie **verifier.InputError) bool {
	e, ok := err.(*verifier.InputError)
	*ie = e
	return ok
}

// TestExtAuthzResourceURIDotSegments (R4): with resources =
// ["file:///srv/**"], ext_authz refuses ".." and "%2e%2e" out of /srv as
// INVALID_ARGUMENT (bad_request), and allows the canonical URI.
func TestExtAuthzResourceURIDotSegments(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, `
rule "fs-resources" {
  effect = "allow"
  action {
    mcp {
      resources = ["file:///srv/**"]
    }
  }
}
`)
	if resp := e.extAuthz(t, checkReq(e.certPEM, "POST", "/mcp", nil, readURI("resources/read", "file:///srv/notes.md"))); code.Code(resp.GetStatus().GetCode()) != code.Code_OK {
		t.Fatalf("file:///srv/notes.md: %v", resp.GetStatus())
	}
	for _, uri := range []string{"file:///srv/../etc/shadow", "file:///srv/%2e%2e/etc/shadow", "file:///srv/x/../../etc/shadow", "file:///srv//..//etc/shadow"} {
		for _, method := range []string{"resources/read", "resources/subscribe"} {
			resp := e.extAuthz(t, checkReq(e.certPEM, "POST", "/mcp", nil, readURI(method, uri)))
			if got := code.Code(resp.GetStatus().GetCode()); got != code.Code_INVALID_ARGUMENT || !strings.Contains(resp.GetStatus().GetMessage(), "bad_request") {
				t.Errorf("ext_authz %s %s: %v %q, want INVALID_ARGUMENT bad_request", method, uri, got, resp.GetStatus().GetMessage())
			}
		}
	}
}

// TestCheckResourceURIAllocs: the check of a canonical URI allocates
// nothing (it runs on every resources/read).
func TestCheckResourceURIAllocs(t *testing.T) {
	for _, uri := range []string{"file:///srv/shared/notes.md", "https://files.example.org/srv/a%20b?rev=2", "urn:example:x"} {
		if n := testing.AllocsPerRun(100, func() {
			if verifier.CheckResourceURI(uri) != nil {
				t.Fatal(uri)
			}
		}); n != 0 {
			t.Errorf("%s: %v allocations", uri, n)
		}
	}
}

// TestDecideResourceURIAnyFrontend: an MCP resource action built by a
// front-end other than ParseMCP (the check API, AuthZEN, mcpauth) is held
// to the same rule by the pipeline: a dotted URI is bad_request, the
// canonical one is decided by the policy.
func TestDecideResourceURIAnyFrontend(t *testing.T) {
	e := newAttackEnv(t)
	e.v.Policy = loadPolicy(t, `
rule "fs-resources" {
  effect = "allow"
  action {
    mcp {
      resources = ["file:///srv/**"]
    }
  }
}
`)
	decide := func(method, uri string) verifier.Result {
		return e.v.Decide(context.Background(), &verifier.Query{Frontend: verifier.FrontendCheckAPI, Audience: "kb",
			Credential: verifier.Credential{Kind: verifier.CredentialJWT, Value: e.jwt},
			Action:     verifier.Action{Kind: "mcp", Method: method, Name: uri}})
	}
	if r := decide("resources/read", "file:///srv/notes.md"); !r.Allowed() {
		t.Fatalf("file:///srv/notes.md: %+v", r.Decision)
	}
	for _, method := range []string{"resources/read", "resources/subscribe", "resources/unsubscribe"} {
		for _, uri := range []string{"file:///srv/../etc/shadow", "file:///srv/%2e%2e/etc/shadow"} {
			if r := decide(method, uri); r.Outcome != verifier.BadRequest || !strings.Contains(r.Decision.Reason, "MCP resource URI") {
				t.Errorf("%s %s: %v %q, want bad_request", method, uri, r.Outcome, r.Decision.Reason)
			}
		}
	}
	// A tool or prompt name is no URI: "a/../b" is matched as sent.
	if r := decide("prompts/get", "a/../b"); r.Outcome == verifier.BadRequest {
		t.Errorf("prompts/get a/../b: %q", r.Decision.Reason)
	}
}

// TestResourceURIOneSpelling (review 8): spellings of one resource that a
// server reads alike are refused, naming the canonical one where there is
// one — a query or another authority on a file: URI (url.Parse and Node's
// fileURLToPath drop the query; Node reads file:/x and file://localhost/x
// as file:///x), an upper-case opaque scheme, http(s) authorities that
// Node normalises (default or empty port, userinfo, numeric IPv4 forms, a
// trailing dot) or that end at a "?" (https://evil.com?.example.org/x),
// and characters in both their literal and their escaped form.
func TestResourceURIOneSpelling(t *testing.T) {
	for _, uri := range []string{
		"file:///srv/id.key?", "file:///srv/id.key?v=1", "file:///srv/x?/../../etc/shadow",
		"file:/etc/shadow", "file://localhost/etc/shadow", "file://x/srv/a", "file://[::1]/srv/x",
		"URN:secret:x", "Mailto:a@b",
		"https://evil.com?.example.org/x", "https://a@files.example.org/x", "https://files.example.org:443/x",
		"http://files.example.org:80/x", "https://files.example.org:/x", "http://0x7f.1/x", "http://127.1/x",
		"http://2130706433/x", "https://files.example.org./x", "https://files.example.org:0443/x",
		"file:///srv/[x]", "file:///srv/a|b", "file:///srv/a^b", "file:///srv/a%7Bb%7D", "file:///srv/a\"b",
		// review 9: the other WHATWG special schemes, IPv4-mapped IPv6
		"ws:internal/admin/x", "ws:/internal/admin/x", "ws://internal:80/admin/x", "wss://h:443/x", "ftp:files/secret/x",
		"ftp://files:21/secret/x", "ws://127.1/x", "http://[::ffff:127.0.0.1]/x", "WS://h/x",
		"", // no resource at all (review 9)
	} {
		if err := verifier.CheckResourceURI(uri); err == nil {
			t.Errorf("%s: accepted", uri)
		}
	}
	for _, uri := range []string{
		"file:///srv/id.key", "file:///srv/%5Bx%5D", "file:///srv/{+path}", "https://files.example.org/x?v=1",
		"https://files.example.org:8443/x", "http://127.0.0.1/x", "https://[::1]/x", "urn:secret:x", "demo://resource/1",
	} {
		if err := verifier.CheckResourceURI(uri); err != nil {
			t.Errorf("%s: %v", uri, err)
		}
	}
}
