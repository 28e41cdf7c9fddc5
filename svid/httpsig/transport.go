package httpsig

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

// DefaultMaxBody bounds the body Transport reads to digest (16 MiB).
const DefaultMaxBody = 16 << 20

// Transport is an http.RoundTripper that signs every request with the
// current X.509-SVID of Source (a workloadapi.X509Source): it reads the
// body to compute its Content-Digest, adds the Agentid-Svid chain and
// the RFC 9421 Signature-Input and Signature, and sends the request with
// Base. The request given is not modified (a clone is sent).
type Transport struct {
	Base   http.RoundTripper // default http.DefaultTransport
	Source x509svid.Source
	// Lifetime is expires - created (default DefaultLifetime).
	Lifetime time.Duration
	// Bearer, when set, is the JWT-SVID variant: the token it returns (a
	// JWT-SVID of the same task, e.g. from workloadapi.JWTSource) is sent
	// as "Authorization: Bearer", and the signature covers it. The verifier
	// then requires the Agentid-Svid certificate to chain to its bundle and
	// name the JWT-SVID's SPIFFE ID.
	Bearer func(ctx context.Context, req *http.Request) (string, error)
	// MaxBody bounds the body read (default DefaultMaxBody).
	MaxBody int64
	// Clock (default time.Now).
	Clock func() time.Time
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	out, err := t.sign(req)
	if err != nil {
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	base := t.Base
	if base == nil {
		base = http.DefaultTransport
	}
	return base.RoundTrip(out)
}

// sign returns the signed clone of req.
func (t *Transport) sign(req *http.Request) (*http.Request, error) {
	svid, err := t.Source.GetX509SVID()
	if err != nil {
		return nil, fmt.Errorf("httpsig: X.509-SVID: %w", err)
	}
	body, err := t.readBody(req)
	if err != nil {
		return nil, err
	}
	out := req.Clone(req.Context())
	out.Header = req.Header.Clone()
	if out.Header == nil {
		out.Header = http.Header{}
	}
	setBody(out, body)
	if t.Bearer != nil {
		tok, err := t.Bearer(req.Context(), req)
		if err != nil {
			return nil, fmt.Errorf("httpsig: JWT-SVID: %w", err)
		}
		out.Header.Set("Authorization", "Bearer "+tok)
	}
	host := out.Host
	if host == "" {
		host = out.URL.Host
	}
	m := &Message{Method: out.Method, TargetURI: out.URL.Scheme + "://" + host + out.URL.RequestURI(), Header: out.Header}
	s := RequestSigner{Chain: svid.Certificates, Key: svid.PrivateKey, Lifetime: t.Lifetime}
	now := time.Now()
	if t.Clock != nil {
		now = t.Clock()
	}
	if _, err := s.Sign(m, body, now); err != nil {
		return nil, err
	}
	return out, nil
}

func (t *Transport) readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	max := t.MaxBody
	if max <= 0 {
		max = DefaultMaxBody
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, max+1))
	req.Body.Close()
	if err != nil {
		return nil, fmt.Errorf("httpsig: reading the body: %w", err)
	}
	if int64(len(body)) > max {
		return nil, fmt.Errorf("httpsig: the body exceeds %d bytes", max)
	}
	return body, nil
}

func setBody(r *http.Request, body []byte) {
	r.ContentLength = int64(len(body))
	if len(body) == 0 {
		r.Body, r.GetBody = http.NoBody, nil
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
}
