package verifier

import (
	"net/http"
	"net/http/httputil"
	"net/url"
)

// Proxy is an mTLS reverse proxy: serve it on a listener with
// ServerTLSConfig; it puts every request through the pipeline and forwards
// allowed ones to Upstream with the x-agentid-* identity headers (any
// incoming ones are stripped first, allowed or not). Only canonical paths
// and upper-case methods are accepted, so the upstream serves exactly the
// path that was decided. POST requests to one of MCPPaths must carry one
// MCP JSON-RPC message, decided as {mcp, method, tool}; other form and
// JSON POST bodies are read (up to MaxFormBody) and refused when they carry
// a "_method" field that Rails or Laravel would run as the method; the
// proxy forwards exactly the bytes it decided on.
type Proxy struct {
	V        *Verifier
	Upstream *url.URL
	MCPPaths []string
	// Transport to the upstream (default http.DefaultTransport).
	Transport http.RoundTripper

	handler http.Handler
}

// NewProxy returns a Proxy to upstream. Its fields are read on every
// request, so they may be set after NewProxy (before serving).
func NewProxy(v *Verifier, upstream *url.URL, mcpPaths []string) *Proxy {
	p := &Proxy{V: v, Upstream: upstream, MCPPaths: mcpPaths}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(p.Upstream)
			pr.SetXForwarded()
			// The client's Host is not decided on: it does not reach the
			// upstream (SetXForwarded copied it as X-Forwarded-Host).
			pr.Out.Header.Del("X-Forwarded-Host")
			DeleteProxyOnlyHeaders(pr.Out.Header)
			peer, _ := PeerFromContext(pr.In.Context())
			d, _ := DecisionFromContext(pr.In.Context())
			setIdentityHeaders(pr.Out.Header, peer, d, p.V.Headers.orDefault())
		},
		Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if t := p.Transport; t != nil {
				return t.RoundTrip(r)
			}
			return http.DefaultTransport.RoundTrip(r)
		}),
	}
	p.handler = v.httpHandler(FrontendProxy, HTTPAction, func() []string { return p.MCPPaths }, rp)
	return p
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	StripIdentityHeaders(r.Header)
	p.handler.ServeHTTP(w, r)
}
