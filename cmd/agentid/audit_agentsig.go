package main

import (
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
)

// agentSignature checks the agent's own signature in a proven record (when
// it has one) against the bundle alone, and against the record: the same
// peer, method and path. nil, nil when the record carries none.
func agentSignature(rec *audit.Record, bundle x509bundle.Source, anchor time.Time) (*httpsig.Proven, error) {
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
	// An http action is the signed request's method and path; another
	// kind (an MCP message) is read from the body, bound by its digest.
	a := rec.Action
	if a == nil || a.Kind == "http" && (a.Method != p.Method || a.Path != targetPath(p.TargetURI)) {
		var m, path string
		if a != nil {
			m, path = a.Method, a.Path
		}
		return nil, fmt.Errorf("the agent's signature covers %s %s, the record %s %s", p.Method, p.TargetURI, m, path)
	}
	if len(s.Body) > 0 && httpsig.ContentDigest(s.Body) != p.ContentDigest {
		return nil, fmt.Errorf("the recorded body (%d bytes) is not the one the agent signed (%s)", len(s.Body), p.ContentDigest)
	}
	if p.Created.After(anchor.Add(httpsig.DefaultWindow)) {
		return nil, fmt.Errorf("the agent's signature was created at %s, after the checkpoint's time %s", p.Created.UTC().Format(time.RFC3339), anchor.UTC().Format(time.RFC3339))
	}
	return p, nil
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

func printAgentSignature(w io.Writer, p *httpsig.Proven, body []byte) {
	fmt.Fprintf(w, "agent signature: OK: %s (its X.509-SVID key, keyid %s, %s) requested %s %s with body %s at %s (signature expiring %s, nonce %s)\n",
		p.ID, p.KeyID, p.Alg, p.Method, p.TargetURI, p.ContentDigest, p.Created.UTC().Format(time.RFC3339), p.Expires.UTC().Format(time.RFC3339), p.Nonce)
	if p.Authorization {
		fmt.Fprintln(w, "agent signature: it also covers the request's Authorization field (a JWT-SVID)")
	}
	if len(body) > 0 {
		fmt.Fprintf(w, "agent signature: body recorded (%d bytes), its SHA-256 is the signed Content-Digest: %s\n", len(body), bodyPreview(body))
		fmt.Fprintln(w, "agent signature: not proven: other headers, that the request reached the service, and the time beyond the agent's own clock (the checkpoint bounds it from above)")
		return
	}
	fmt.Fprintln(w, "agent signature: not proven: the body itself (only its digest is recorded), other headers, that the request reached the service, and the time beyond the agent's own clock (the checkpoint bounds it from above)")
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
