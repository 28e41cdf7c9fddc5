package verifier

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
)

// Proxy is an mTLS reverse proxy: serve it on a listener with
// ServerTLSConfig; it authenticates every request, asks the policy and
// forwards allowed requests to Upstream with the x-agentid-* identity
// headers (any incoming ones are stripped first, allowed or not). POST
// requests to one of MCPPaths whose body is an MCP JSON-RPC call are decided
// as {mcp, tool name}.
type Proxy struct {
	V        *Verifier
	Upstream *url.URL
	MCPPaths []string
	// Transport to the upstream (default http.DefaultTransport).
	Transport http.RoundTripper

	handler http.Handler
}

// NewProxy returns a Proxy to upstream.
func NewProxy(v *Verifier, upstream *url.URL, mcpPaths []string) *Proxy {
	p := &Proxy{V: v, Upstream: upstream, MCPPaths: mcpPaths}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
			peer, _ := PeerFromContext(pr.In.Context())
			d, _ := DecisionFromContext(pr.In.Context())
			SetIdentityHeaders(pr.Out.Header, peer, d)
		},
		Transport: p.Transport,
	}
	p.handler = v.MiddlewareFunc(p.action, rp)
	return p
}

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	StripIdentityHeaders(r.Header)
	p.handler.ServeHTTP(w, r)
}

func (p *Proxy) action(r *http.Request) Action {
	if r.Method != http.MethodPost || !slices.Contains(p.MCPPaths, r.URL.Path) || r.Body == nil {
		return HTTPAction(r)
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, MaxMCPBody+1))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err != nil {
		return HTTPAction(r)
	}
	if a, ok := MCPAction(body); ok {
		a.Path = r.URL.Path
		return a
	}
	return HTTPAction(r)
}
