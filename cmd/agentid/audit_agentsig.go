package main

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

// agentSig is what verify-receipt proved of the agent's signature in a
// record.
type agentSig struct {
	*httpsig.Proven
	// Body is the recorded body (nil when not recorded).
	Body []byte
	// Bound: the record's action is the signed request's (an http action's
	// method and path; an mcp action's method and name read from the
	// recorded body). Unbound says why not, when not.
	Bound   bool
	Unbound string
	// Window is the verifier's signature window the record's time was
	// checked with.
	Window time.Duration
}

// agentSignature checks the agent's own signature in a proven record (when
// it has one) against the bundle alone, and against the record: the same
// peer; the record's time within [created − window, expires + window] (the
// verifier accepts a signature only while created is within its window of
// its clock and expires has not passed); the recorded body's digest; and
// the action (bindAction). A signature that contradicts the record is an
// error; one that is genuine but whose action the receipt cannot read
// (an MCP body not recorded, a kind not read from the request) is returned
// unbound. nil, nil when the record carries none.
func agentSignature(rec *audit.Record, bundle x509bundle.Source, anchor time.Time, window time.Duration) (*agentSig, error) {
	s := rec.AgentSig
	if s == nil || s.Base == "" {
		return nil, nil
	}
	p, err := httpsig.VerifyEvidence(httpsig.Evidence{Label: s.Label, Base: s.Base, Signature: s.Sig}, bundle)
	if err != nil {
		return nil, fmt.Errorf("the agent's signature: %w", err)
	}
	if p.ID.String() != rec.Peer {
		return nil, fmt.Errorf("the agent's signature is by %s, the record's peer %s", p.ID, rec.Peer)
	}
	if len(s.Body) > 0 && httpsig.ContentDigest(s.Body) != p.ContentDigest {
		return nil, fmt.Errorf("the recorded body (%d bytes) is not the one the agent signed (%s)", len(s.Body), p.ContentDigest)
	}
	if from, to := p.Created.Add(-window), p.Expires.Add(window); rec.Time.Before(from) || rec.Time.After(to) {
		return nil, fmt.Errorf("the record's time %s is outside the agent's signature's [created − %s, expires + %s] = [%s, %s]: it was not made for this decision",
			rec.Time.UTC().Format(time.RFC3339), window, window, from.UTC().Format(time.RFC3339), to.UTC().Format(time.RFC3339))
	}
	if p.Created.After(anchor.Add(window)) {
		return nil, fmt.Errorf("the agent's signature was created at %s, after the checkpoint's time %s", p.Created.UTC().Format(time.RFC3339), anchor.UTC().Format(time.RFC3339))
	}
	a := &agentSig{Proven: p, Body: s.Body, Window: window}
	if a.Unbound, err = bindAction(rec.Action, p, s.Body); err != nil {
		return nil, err
	}
	a.Bound = a.Unbound == ""
	return a, nil
}

// bindAction holds the record's action to the signed request: an http
// action is its method and path; an mcp action is a POST to the record's
// endpoint path (when recorded) whose body, read as the verifier reads it
// (verifier.ParseMCP), is the record's MCP method and name. An error when
// they differ; "" when bound; else why the action is not bound (an MCP
// body not recorded, another kind).
func bindAction(a *audit.Action, p *httpsig.Proven, body []byte) (string, error) {
	if a == nil {
		return "", fmt.Errorf("the agent's signature covers %s %s, the record names no action", p.Method, p.TargetURI)
	}
	path := targetPath(p.TargetURI)
	switch a.Kind {
	case policies.KindHTTP:
		if a.Method != p.Method || a.Path != path {
			return "", fmt.Errorf("the agent's signature covers %s %s, the record %s %s", p.Method, p.TargetURI, a.Method, a.Path)
		}
		return "", nil
	case policies.KindMCP:
		if p.Method != http.MethodPost || a.Path != "" && a.Path != path {
			return "", fmt.Errorf("the agent's signature covers %s %s, the record an MCP request POSTed to %s", p.Method, p.TargetURI, a.Path)
		}
		if len(body) == 0 {
			return fmt.Sprintf("the record's mcp %s %s is read from the request's body, which was not recorded (signatures { record_body = true }): the signature may be of another MCP request", a.Method, a.Name), nil
		}
		m, err := verifier.ParseMCP(body, nil)
		if err != nil {
			return "", fmt.Errorf("the recorded body the agent signed is not the record's MCP request: %v", err)
		}
		if got := m.Action(a.Path); got.Method != a.Method || got.Name != a.Name {
			return "", fmt.Errorf("the agent signed mcp %s %s, the record mcp %s %s", got.Method, got.Name, a.Method, a.Name)
		}
		return "", nil
	}
	return fmt.Sprintf("a %s action is not read from the signed request, so the receipt cannot tell it is the one the agent signed", a.Kind), nil
}

// targetPath is the path of an absolute target URI (without the query).
func targetPath(uri string) string {
	_, rest, _ := strings.Cut(uri, "://")
	i := strings.IndexAny(rest, "/?")
	if i < 0 {
		return "/"
	}
	path, _, _ := strings.Cut(rest[i:], "?")
	if path == "" {
		path = "/"
	}
	return path
}

func printAgentSignature(w io.Writer, a *agentSig) {
	p := a.Proven
	verdict := "OK"
	if !a.Bound {
		verdict = "genuine, but not bound to this action"
	}
	fmt.Fprintf(w, "agent signature: %s: %s (its X.509-SVID key, keyid %s, %s) requested %s %s with body %s at %s (signature expiring %s, nonce %s)\n",
		verdict, p.ID, p.KeyID, p.Alg, p.Method, p.TargetURI, p.ContentDigest, p.Created.UTC().Format(time.RFC3339), p.Expires.UTC().Format(time.RFC3339), p.Nonce)
	if !a.Bound {
		fmt.Fprintf(w, "agent signature: not bound to this action: %s\n", a.Unbound)
	}
	if p.Authorization {
		fmt.Fprintln(w, "agent signature: it also covers the request's Authorization field (a JWT-SVID)")
	}
	if len(a.Body) > 0 {
		fmt.Fprintf(w, "agent signature: body recorded (%d bytes), its SHA-256 is the signed Content-Digest: %s\n", len(a.Body), bodyPreview(a.Body))
	}
	fmt.Fprintf(w, "agent signature: the record's time is within [created − %s, expires + %s] (the verifier's signature window, --signature-window)\n", a.Window, a.Window)
	var unproven []string
	if len(a.Body) == 0 {
		unproven = append(unproven, "the body itself (only its digest is recorded)")
	}
	unproven = append(unproven, "that "+targetHost(p.TargetURI)+" is the service whose verifier wrote the record (the record names no host)",
		"other headers, that the request reached the service, and the time beyond the agent's own clock and the record's")
	fmt.Fprintf(w, "agent signature: not proven: %s\n", strings.Join(unproven, ", "))
}

// targetHost is the authority of an absolute target URI.
func targetHost(uri string) string {
	_, rest, _ := strings.Cut(uri, "://")
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i]
	}
	return rest
}

// bodyPreview is the start of a body, printable ASCII only.
func bodyPreview(b []byte) string {
	const max = 256
	var out strings.Builder
	for i, c := range b {
		if i == max {
			fmt.Fprintf(&out, "…(%d bytes)", len(b))
			break
		}
		if c >= 0x20 && c < 0x7f {
			out.WriteByte(c)
		} else {
			out.WriteByte('.')
		}
	}
	return out.String()
}
