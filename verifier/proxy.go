package verifier

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
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
//
// Requests asking for a protocol upgrade (an Upgrade header, or a
// Connection header naming "upgrade": WebSocket, h2c, …) are refused as
// bad_request unless AllowUpgrades is set; CONNECT (a tunnel) always is. An allowed upgrade is decided
// once, on its request, and the upgraded connection is then held to its
// peer like a gRPC stream (Verifier.StreamServerInterceptor): every read
// from and write to the client re-runs the authentication stages (cached:
// cheap), the connection is re-checked every StreamRecheckInterval while
// idle, and it is closed — both sides — at the peer's expiry or once the
// peer is refused (its task, or one in its chain, revoked); the refusal
// is recorded like any other. Responses the proxy streams (Server-Sent
// Events, bodies of unknown length) and long exchanges — a request or
// response body of unknown length or over LongBodyBytes: an upload, a
// download — are held the same way: at the peer's refusal or expiry the
// upload is cut (the upstream's read fails) and the response is cut (the
// client sees it end early).
type Proxy struct {
	V        *Verifier
	Upstream *url.URL
	MCPPaths []string
	// Transport to the upstream (default http.DefaultTransport).
	Transport http.RoundTripper
	// AllowUpgrades lets requests asking for a protocol upgrade through
	// (default false: refused with 400).
	AllowUpgrades bool

	handler http.Handler
	mu      sync.Mutex
	open    map[*streamGuard]struct{} // upgraded connections and streamed responses
}

// CloseStreams closes the upgraded connections and streamed responses the
// proxy holds open (an http.Server's Shutdown leaves hijacked connections
// alone and waits for streaming ones): register it with the server's
// RegisterOnShutdown. Nothing is recorded for them; requests that follow
// are served as before.
func (p *Proxy) CloseStreams() {
	p.mu.Lock()
	open := p.open
	p.open = nil
	p.mu.Unlock()
	for g := range open {
		g.abort(errShutdown)
	}
}

var errShutdown = errors.New("verifier: the proxy is shutting down")

func (p *Proxy) track(g *streamGuard) {
	p.mu.Lock()
	if p.open == nil {
		p.open = map[*streamGuard]struct{}{}
	}
	p.open[g] = struct{}{}
	p.mu.Unlock()
}

func (p *Proxy) untrack(g *streamGuard) {
	p.mu.Lock()
	delete(p.open, g)
	p.mu.Unlock()
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
		ModifyResponse: p.guardResponse,
		ErrorHandler:   p.upstreamError,
		Transport: roundTripperFunc(func(r *http.Request) (*http.Response, error) {
			if t := p.Transport; t != nil {
				return t.RoundTrip(r)
			}
			return http.DefaultTransport.RoundTrip(r)
		}),
	}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if upgradeRequested(r.Header) {
			p.serveUpgrade(w, r, rp)
			return
		}
		p.serveGuarded(w, r, rp)
	})
	p.handler = v.httpHandler(FrontendProxy, HTTPAction, func() []string { return p.MCPPaths }, next)
	return p
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// ServeHTTP implements http.Handler.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	StripIdentityHeaders(r.Header)
	switch {
	case r.Method == http.MethodConnect:
		// a tunnel: not proxied (the reverse proxy would forward it as a
		// request, and an upstream answering 2xx would take it for one)
		p.reject(w, r, badInput("method", "CONNECT (a tunnel) is not proxied"))
		return
	case !p.AllowUpgrades && upgradeRequested(r.Header):
		p.reject(w, r, badInput("upgrade", "protocol upgrades (Upgrade: %q) are not allowed through this proxy (proxy { allow_upgrades = true } allows them)", truncate(strings.Join(r.Header.Values("Upgrade"), ", "))))
		return
	}
	p.handler.ServeHTTP(w, r)
}

// upgradeRequested reports whether h asks for a protocol upgrade: an
// Upgrade header, or "upgrade" among the Connection header's tokens (in
// any case; Go's server has canonicalised the header names).
func upgradeRequested(h http.Header) bool {
	if len(h["Upgrade"]) > 0 {
		return true
	}
	for _, v := range h["Connection"] {
		for tok := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(tok), "upgrade") {
				return true
			}
		}
	}
	return false
}

// reject refuses a request the proxy does not forward (an upgrade, a
// tunnel) through the pipeline, so that the refusal is recorded (with the
// peer, when it authenticates) and counted like any other.
func (p *Proxy) reject(w http.ResponseWriter, r *http.Request, why *InputError) {
	q := Query{Frontend: FrontendProxy, Credential: HTTPCredential(r), Action: HTTPAction(r),
		Request: Request{Headers: r.Header, Source: remoteAddr(r.RemoteAddr)}, Reject: why}
	res := p.V.Decide(r.Context(), &q)
	refuse(w, res.HTTPStatus(), res.Message())
}

// serveUpgrade forwards an allowed upgrade request with its connection,
// once hijacked, under a streamGuard.
func (p *Proxy) serveUpgrade(w http.ResponseWriter, r *http.Request, next http.Handler) {
	peer, _ := PeerFromContext(r.Context())
	q := Query{Frontend: FrontendProxy, Credential: HTTPCredential(r), Action: HTTPAction(r), Request: Request{Source: remoteAddr(r.RemoteAddr)}}
	hw := &hijackGuard{ResponseWriter: w}
	g := p.V.newStreamGuard(r.Context(), &q, peer.Expires(), func(res *Result) error { return errors.New(res.Message()) }, hw.end)
	hw.g = g
	p.track(g)
	defer func() {
		g.stop()
		p.untrack(g)
	}()
	// The guard's context is the request's: when the guard ends the
	// exchange, the reverse proxy closes the upstream connection.
	next.ServeHTTP(hw, r.WithContext(g.ctx))
}

// guardResponse holds the upstream's response to the exchange's guard
// (serveGuarded): the peer is re-checked before the response is
// forwarded (a task revoked while the upstream was answering gets no
// answer: upstreamError refuses it, as the pipeline would), and on every
// read of its body, so that what the upstream sends after a refusal is
// not forwarded (the client sees the response broken off, not ended). A
// response that the reverse proxy streams — Server-Sent Events, or a body
// of unknown length or over LongBodyBytes: an MCP server's GET stream, a
// long download — is also re-checked every StreamRecheckInterval while
// idle (the guard's timer is armed), and it is closed with the proxy
// (CloseStreams).
func (p *Proxy) guardResponse(res *http.Response) error {
	g, ok := res.Request.Context().Value(guardKey{}).(*streamGuard)
	if !ok || res.StatusCode == http.StatusSwitchingProtocols {
		return nil
	}
	if err := g.check(); err != nil {
		return err
	}
	if res.Body == nil || res.Body == http.NoBody {
		return nil
	}
	if longBody(res.ContentLength) || isEventStream(res.Header.Get("Content-Type")) {
		g.arm()
		p.track(g)
	}
	res.Body = &checkedBody{ReadCloser: res.Body, g: g}
	return nil
}

// upstreamError answers a request whose exchange failed before the
// response was forwarded: with the refusal when the guard refused the
// peer (recorded already), else 502 as the reverse proxy would.
func (p *Proxy) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if g, ok := r.Context().Value(guardKey{}).(*streamGuard); ok && g.failure() != nil {
		status := g.status
		if status == 0 { // aborted: the proxy is shutting down
			status = http.StatusServiceUnavailable
		}
		refuse(w, status, g.failure().Error())
		return
	}
	w.WriteHeader(http.StatusBadGateway)
}

// LongBodyBytes is the length over which a body (an upload through the
// proxy or into a Middleware handler, a download through the proxy) is
// also re-checked while idle, every StreamRecheckInterval, as a stream is;
// every body is re-checked as it passes (each read), and a shorter body of
// known length needs no timer.
const LongBodyBytes = 64 << 10

func longBody(n int64) bool { return n < 0 || n > LongBodyBytes }

// guardKey is the context key of an exchange's streamGuard (serveGuarded).
type guardKey struct{}

// serveGuarded forwards an allowed request under a streamGuard that holds
// the exchange to its peer: every read of the request's body and of the
// response's re-checks it (the Authenticator's cache and the liveness
// view make that cheap), and at a refusal the guard cancels the outgoing
// request's context, so the transport aborts the upload (the upstream's
// read of the body fails) and the response. A request body of unknown
// length or over LongBodyBytes also arms the guard's idle re-check (an
// idle upload is cut too) and is closed with the proxy (CloseStreams); a
// short exchange needs no timer.
func (p *Proxy) serveGuarded(w http.ResponseWriter, r *http.Request, next http.Handler) {
	peer, _ := PeerFromContext(r.Context())
	q := Query{Frontend: FrontendProxy, Credential: HTTPCredential(r), Action: HTTPAction(r), Request: Request{Source: remoteAddr(r.RemoteAddr)}}
	g := p.V.newCheckGuard(r.Context(), &q, peer.Expires(), func(res *Result) error { return errors.New(res.Message()) }, func(error) {})
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	if hasBody && longBody(r.ContentLength) {
		g.arm()
		p.track(g)
	}
	defer func() {
		g.stop()
		p.untrack(g)
	}()
	out := r.WithContext(context.WithValue(g.ctx, guardKey{}, g))
	if hasBody {
		out.Body = &checkedBody{ReadCloser: r.Body, g: g}
	}
	next.ServeHTTP(w, out)
}

// checkedBody re-checks its guard's peer on every read that returns data;
// the guard's owner stops it. ended tells whether the body has been read
// to its end.
type checkedBody struct {
	io.ReadCloser
	g     *streamGuard
	ended atomic.Bool
}

func (b *checkedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.ended.Store(true)
	}
	if n > 0 {
		if cerr := b.g.check(); cerr != nil {
			return 0, cerr
		}
	}
	return n, err
}

func isEventStream(ct string) bool {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.EqualFold(strings.TrimSpace(mt), "text/event-stream")
}

// hijackGuard hands the reverse proxy the client's connection wrapped in a
// guardedConn, and closes it when the guard ends the exchange.
type hijackGuard struct {
	http.ResponseWriter
	g *streamGuard

	mu    sync.Mutex
	conn  net.Conn
	ended bool
}

// Unwrap lets http.ResponseController reach the server's writer (Flush).
func (h *hijackGuard) Unwrap() http.ResponseWriter { return h.ResponseWriter }

// Hijack implements http.Hijacker.
func (h *hijackGuard) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	conn, brw, err := http.NewResponseController(h.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	h.mu.Lock()
	h.conn = conn
	ended := h.ended
	h.mu.Unlock()
	if ended {
		conn.Close()
	}
	return &guardedConn{Conn: conn, g: h.g}, brw, nil
}

func (h *hijackGuard) end(error) {
	h.mu.Lock()
	h.ended = true
	conn := h.conn
	h.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

// guardedConn is an upgraded client connection under a streamGuard: what
// is read is handed over, and what is written sent, only while the peer
// passes.
type guardedConn struct {
	net.Conn
	g *streamGuard
}

func (c *guardedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		if cerr := c.g.check(); cerr != nil {
			return 0, cerr
		}
	}
	return n, err
}

func (c *guardedConn) Write(b []byte) (int, error) {
	if err := c.g.check(); err != nil {
		return 0, err
	}
	return c.Conn.Write(b)
}

// CloseWrite half-closes the connection (the reverse proxy propagates the
// upstream's end of stream so).
func (c *guardedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return errors.New("verifier: the connection cannot be half-closed")
}
