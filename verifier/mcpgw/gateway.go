package mcpgw

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
	"github.com/agentid/agentid/verifier/mcpauth"
)

// Frontend is the gateway's front-end name in audit records and metrics.
const Frontend = "mcp_gateway"

// CodeUpstream is the JSON-RPC error code of a call the upstream MCP
// server did not answer (it could not be reached, refused the gateway, or
// its stream broke), next to mcpauth's codes.
const CodeUpstream = -32033

// maxUpstreamMessage bounds a list answer the gateway reads whole to
// filter it, and one SSE event.
const maxUpstreamMessage = 32 << 20

// maxIdleUpstream is how many idle connections to the upstream are kept
// (net/http's default of 2 redials under concurrent calls).
const maxIdleUpstream = 256

const (
	headerSessionID = "Mcp-Session-Id"
	headerMethod    = "Mcp-Method"
	headerName      = "Mcp-Name"
	headerVersion   = "Mcp-Protocol-Version"
	// headerLastEventID resumes an SSE stream: refused on GET, never
	// forwarded.
	headerLastEventID = "Last-Event-Id"
)

// Gateway is an http.Handler serving the MCP endpoint (Config.Path) and
// its RFC 9728 metadata. It is safe for concurrent use.
type Gateway struct {
	v        *verifier.Verifier
	auth     *mcpauth.Auth
	meta     http.Handler
	cfg      Config
	path     string
	upstream string
	rt       http.RoundTripper
	child    *child // nil for an HTTP upstream
	sessions *sessions
	tools    toolSet
	params   paramSchemas // the tools' x-mcp-header bindings (params.go)
	log      *slog.Logger
	seq      atomic.Uint64
	dropped  atomic.Int64
	// deletes bounds the DELETEs of forgotten sessions in flight, and
	// forgottenDeleted counts them (forget.go)
	deletes          chan struct{}
	forgottenDeleted atomic.Int64
	// suppressed counts the upstream's messages to the agent kept from it
	// (notify.go)
	suppressed atomic.Int64
	// inflight maps the calls being forwarded (inflightKey) to the ids the
	// upstream got, for the agent's notifications/cancelled
	inflight sync.Map
}

// New returns a gateway deciding with v. With Config.Command it starts
// the child; Close stops it.
func New(v *verifier.Verifier, cfg Config) (*Gateway, error) {
	a, err := mcpauth.New(v, mcpauth.Options{Resource: cfg.Resource, ScopesSupported: cfg.ScopesSupported,
		ResourceName: cfg.ResourceName, AuthorizationServers: cfg.AuthorizationServers})
	if err != nil {
		return nil, fmt.Errorf("mcpgw: %w", err)
	}
	g := &Gateway{v: v, auth: a, meta: a.MetadataHandler(), cfg: cfg, path: cfg.Path, sessions: newSessions(cfg.MaxSessionsPerTask), log: cfg.Log}
	if g.log == nil {
		g.log = slog.Default()
	}
	g.deletes = make(chan struct{}, maxDeletes)
	g.sessions.onForget = g.deleteForgotten // forget.go
	g.sessions.idle = cfg.SessionIdleTimeout
	if g.path == "" {
		u, _ := url.Parse(cfg.Resource) // checked by mcpauth.New
		g.path = u.EscapedPath()
		if g.path == "" || g.path == "/" {
			g.path = "/mcp"
		}
	}
	if err := verifier.CheckPath(g.path); err != nil {
		return nil, fmt.Errorf("mcpgw: Path: %w", err)
	}
	switch {
	case cfg.Upstream != nil && len(cfg.Command) > 0:
		return nil, errors.New("mcpgw: give Upstream or Command, not both")
	case cfg.Upstream != nil:
		if cfg.Upstream.Scheme != "http" && cfg.Upstream.Scheme != "https" {
			return nil, fmt.Errorf("mcpgw: Upstream %q is not an http(s) URL", cfg.Upstream)
		}
		g.upstream, g.rt = cfg.Upstream.String(), cfg.Transport
		if g.rt == nil {
			t := http.DefaultTransport.(*http.Transport).Clone()
			t.MaxIdleConnsPerHost = maxIdleUpstream // one host: keep a connection per concurrent call
			g.rt = t
		}
	case len(cfg.Command) > 0:
		if _, err := exec.LookPath(cfg.Command[0]); err != nil {
			return nil, fmt.Errorf("mcpgw: Command: %w", err)
		}
		g.child = startChild(cfg, g.log)
		g.upstream, g.rt = "http://stdio.invalid/mcp", g.child
	default:
		return nil, errors.New("mcpgw: Upstream or Command is required")
	}
	return g, nil
}

// Close stops the stdio child, if any.
func (g *Gateway) Close() error {
	if g.child != nil {
		return g.child.Close()
	}
	return nil
}

// Path is the MCP endpoint's path.
func (g *Gateway) Path() string { return g.path }

// Healthy is nil while the gateway can serve: always for an HTTP upstream
// (whose faults are per request), and for a stdio child while one is
// running.
func (g *Gateway) Healthy() error {
	if g.child == nil {
		return nil
	}
	return g.child.healthy()
}

// ChildStarts is how many times the stdio child was started (0 for an
// HTTP upstream): 1 plus its restarts.
func (g *Gateway) ChildStarts() int64 {
	if g.child == nil {
		return 0
	}
	return g.child.starts.Load()
}

// DroppedResponses is how many JSON-RPC responses from the upstream the
// gateway dropped because they answered no request of the agent's: on a
// GET stream (which carries the server's requests and notifications
// only) or under an id the gateway did not send on that request.
func (g *Gateway) DroppedResponses() int64 { return g.dropped.Load() }

// ServeHTTP serves the MCP endpoint and the RFC 9728 metadata.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case g.path:
		g.serveMCP(w, r)
	case g.auth.MetadataPath():
		g.meta.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// exchange is one request on its way through the gateway.
type exchange struct {
	msg *verifier.MCPMessage // nil for GET and DELETE
	res *verifier.Result     // the peer's authentication or the call's decision
	q   *verifier.Query
	// for a call: the id the gateway sent the upstream in place of the
	// agent's, and the agent's id as it spelled it (which its answer gets
	// back)
	upID    string
	agentID []byte
}

func (x *exchange) isCall() bool { return x.msg != nil && len(x.msg.ID) > 0 && x.msg.Method != "" }

// id is the id the agent's answer carries.
func (x *exchange) id() []byte {
	if x.agentID != nil {
		return x.agentID
	}
	return x.msg.ID
}

// ours reports whether msg is the upstream's response to the call: not a
// request, and the gateway's id (compared as the string it is, whatever
// its spelling).
func (x *exchange) ours(msg []byte) bool {
	request, id, isString, ok := messageKindBytes(msg)
	return ok && !request && isString && string(id) == x.upID
}

// answer is the upstream's response msg (ours) with the agent's id.
func (x *exchange) answer(msg []byte) []byte {
	out, _, ok := replaceTopLevel(msg, "id", x.agentID)
	if !ok {
		return errorMessage(x.id(), CodeUpstream, "agentid gateway: the upstream's answer could not be read")
	}
	return out
}

// answerEvent is the SSE event ev carrying the upstream's response (ours)
// with the agent's id, as ev.withData(x.answer(ev.data)) has it.
func (x *exchange) answerEvent(ev sseEvent) []byte {
	if out, ok := ev.withTopLevel("id", x.agentID); ok {
		return out
	}
	return ev.withData(errorMessage(x.id(), CodeUpstream, "agentid gateway: the upstream's answer could not be read"))
}

func (g *Gateway) serveMCP(w http.ResponseWriter, r *http.Request) {
	q := &verifier.Query{Frontend: Frontend, Credential: verifier.HTTPCredential(r), Audience: g.cfg.Resource, Request: mcpauth.HTTPRequest(r)}
	reject := verifier.CheckHeaderNames(r.Header) // what the upstream would read as another header
	if n := len(r.Header.Values(headerSessionID)); n > 1 {
		// servers differ on which one they take: the gateway would check one
		// session and the upstream serve another
		reject = &verifier.InputError{What: headerSessionID, Detail: fmt.Sprintf("sent %d times", n)}
	}
	if reject != nil {
		q.Action = verifier.Action{Kind: policies.KindHTTP, Method: r.Method, Path: g.path}
		q.Reject = reject
		res := g.v.Decide(r.Context(), q)
		g.auth.WriteRefusal(w, &res, q.Credential) // 401, or 400 for an authenticated peer
		return
	}
	switch r.Method {
	case http.MethodPost:
		g.post(w, r, q)
	case http.MethodGet, http.MethodDelete:
		res := g.v.Authenticate(r.Context(), q)
		if !res.Authenticated {
			g.auth.WriteRefusal(w, &res, q.Credential)
			return
		}
		if !g.sessions.owns(r.Header.Get(headerSessionID), &res.Peer) {
			sessionNotFound(w, nil)
			return
		}
		if r.Method == http.MethodGet && r.Header.Get(headerLastEventID) != "" {
			// the upstream would replay its stored events, answers to lists
			// included, on a stream the gateway cannot tie to their requests
			http.Error(w, "agentid gateway: stream resumption (Last-Event-ID) is not supported through the gateway; send the request again", http.StatusBadRequest)
			return
		}
		g.forward(w, r, nil, &exchange{res: &res, q: q})
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// post decides one JSON-RPC message and forwards it.
func (g *Gateway) post(w http.ResponseWriter, r *http.Request, q *verifier.Query) {
	ctx := r.Context()
	for _, ce := range r.Header.Values("Content-Encoding") {
		if !strings.EqualFold(strings.TrimSpace(ce), "identity") {
			// the gateway decides the bytes as they are; an upstream that
			// inflates them (express.json() does) would run something else
			http.Error(w, fmt.Sprintf("agentid gateway: Content-Encoding %q is not accepted: send the JSON-RPC message uncompressed", ce), http.StatusUnsupportedMediaType)
			return
		}
	}
	body, err := readBody(r)
	if err != nil {
		http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	m, perr := verifier.ParseMCP(body, r.Header)
	if perr != nil { // refused and audited by the pipeline, which reads the body the same way
		q.Action, q.MCP, q.Body = verifier.Action{Kind: policies.KindHTTP, Method: http.MethodPost, Path: g.path}, true, body
		res := g.v.Decide(ctx, q)
		if res.Authenticated && res.Outcome == verifier.BadRequest && isHeaderMismatch(perr) {
			writeHeaderMismatch(w, &res) // 400 with HeaderMismatch (-32020), as MCP asks
			return
		}
		g.refuse(w, &res, q)
		return
	}
	var res verifier.Result
	if mcpauth.Decided(m.Method) || m.Method == methodComplete || m.Method == methodListen {
		res = g.decide(ctx, r, q, &m, body)
		if res.Authenticated && !g.sessions.owns(r.Header.Get(headerSessionID), &res.Peer) {
			sessionNotFound(w, m.ID)
			return
		}
		if !res.Allowed() {
			g.refuse(w, &res, q)
			return
		}
	} else {
		res = g.v.Authenticate(ctx, q)
		res.MCPID = m.ID
		if !res.Authenticated {
			g.refuse(w, &res, q)
			return
		}
		if !g.sessions.owns(r.Header.Get(headerSessionID), &res.Peer) {
			sessionNotFound(w, m.ID)
			return
		}
	}
	x := &exchange{msg: &m, res: &res, q: q}
	if x.isCall() {
		// the upstream gets an id of the gateway's: its answer is known by
		// that id whatever spelling the agent chose (1.0 and 1 are one
		// number to most JSON libraries, not to a byte comparison)
		var buf [48]byte
		upID := strconv.AppendUint(append(buf[:0], `"agentid-gateway-`...), g.seq.Add(1), 10)
		upID = append(upID, '"')
		x.upID = string(upID[1 : len(upID)-1])
		out, old, ok := replaceTopLevel(body, "id", upID)
		if !ok || old == nil { // ParseMCP read an id from this object
			http.Error(w, "agentid gateway: internal error", http.StatusInternalServerError)
			return
		}
		body, x.agentID = out, old
		key := inflightKey(&res.Peer, r.Header.Get(headerSessionID), m.ID)
		g.inflight.Store(key, x.upID)
		defer g.inflight.CompareAndDelete(key, x.upID)
	} else if m.Method == "notifications/cancelled" {
		body = g.translateCancel(body, &res.Peer, r.Header.Get(headerSessionID))
	}
	g.forward(w, r, body, x)
}

// inflightKey names a call in flight: the peer's, in its session, by the
// agent's id (as ParseMCP encodes it).
func inflightKey(p *verifier.Peer, sid string, id []byte) string {
	return peerKey(p) + "\x00" + sid + "\x00" + string(id)
}

// translateCancel is the agent's notifications/cancelled with the
// requestId of one of its calls in flight replaced by the id the upstream
// got for it (unchanged when it names none: the upstream ignores it).
func (g *Gateway) translateCancel(body []byte, p *verifier.Peer, sid string) []byte {
	ps, pe := -1, -1
	eachTopLevel(body, func(k []byte, s, e int) {
		if keyIs(k, "params") {
			ps, pe = s, e
		}
	})
	if ps < 0 {
		return body
	}
	params := body[ps:pe]
	var old []byte
	eachTopLevel(params, func(k []byte, s, e int) {
		if keyIs(k, "requestId") {
			old = params[s:e]
		}
	})
	id := canonicalID(old)
	if id == nil {
		return body
	}
	up, ok := g.inflight.Load(inflightKey(p, sid, id))
	if !ok {
		return body
	}
	upID, _ := json.Marshal(up)
	np, _, ok := replaceTopLevel(params, "requestId", upID)
	if !ok {
		return body
	}
	return append(append(append(make([]byte, 0, len(body)+len(upID)), body[:ps]...), np...), body[pe:]...)
}

// canonicalID is a JSON-RPC id as ParseMCP encodes it (nil if it is not
// a string or a number).
func canonicalID(raw []byte) []byte {
	if len(raw) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if dec.Decode(&v) != nil {
		return nil
	}
	switch v.(type) {
	case string, json.Number:
		b, _ := json.Marshal(v)
		return b
	}
	return nil
}

// readBody reads at most verifier.MaxMCPBody+1 bytes (so that an
// oversized body is seen as such), in one allocation when the length is
// announced.
func readBody(r *http.Request) ([]byte, error) {
	lr := io.LimitReader(r.Body, verifier.MaxMCPBody+1)
	if n := r.ContentLength; n > 0 && n <= verifier.MaxMCPBody {
		buf := make([]byte, n, n+1)
		if _, err := io.ReadFull(lr, buf); err != nil {
			return nil, err
		}
		var one [1]byte
		if m, _ := lr.Read(one[:]); m > 0 { // longer than announced
			return nil, errors.New("body longer than its Content-Length")
		}
		return buf, nil
	}
	return io.ReadAll(lr)
}

// decide runs the pipeline on a decided method (tools/call, prompts/get,
// resources/read, …). A tool the upstream does not list is refused as
// bad_request; the upstream's list is asked for when the name is not
// known yet, for an authenticated peer only.
func (g *Gateway) decide(ctx context.Context, r *http.Request, q *verifier.Query, m *verifier.MCPMessage, body []byte) verifier.Result {
	switch m.Method {
	case methodComplete:
		return g.decideCompletion(ctx, r, q, m, body) // completion.go
	case methodListen:
		return g.decideListen(ctx, r, q, m, body) // listen.go
	}
	q.Action = m.Action("")
	q.WantScopes = q.Credential.Kind == verifier.CredentialJWT
	if m.Method == policies.MCPToolsCall && (!g.tools.has(m.Name) || g.params.stale(r.Header, m.Name)) {
		a := g.v.Authenticate(ctx, q)
		if !a.Authenticated {
			a.MCPID = m.ID
			return a
		}
		if !g.sessions.owns(r.Header.Get(headerSessionID), &a.Peer) {
			return a // answered 404 by post
		}
		q.Reject = g.checkTool(ctx, r, body, m.Name)
	}
	if q.Reject == nil && m.Method == policies.MCPToolsCall {
		if err := g.params.check(r.Header, m); err != nil {
			q.Reject = err // params.go: Mcp-Param-* headers against the arguments
		}
	}
	res := g.v.Decide(ctx, q)
	res.MCPID = m.ID
	return res
}

// refuse answers a refused request as mcpauth does (401, 400/413, 403
// insufficient_scope, else a JSON-RPC error naming the rule).
func (g *Gateway) refuse(w http.ResponseWriter, res *verifier.Result, q *verifier.Query) {
	switch {
	case res.Allowed(): // a programming error: never forward on this path
		http.Error(w, "agentid gateway: internal error", http.StatusInternalServerError)
	case res.Authenticated && res.Outcome == verifier.BadRequest && isHeaderMismatch(q.Reject):
		writeHeaderMismatch(w, res) // params.go
	case q.Reject != nil && res.Outcome == verifier.BadRequest:
		// a well-formed call the gateway cannot pass on (a tool the upstream
		// does not have): an MCP error, as mcpauth's middleware answers it
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(res.MCPID), "error": mcpauth.RefusalError(res)})
	default:
		g.auth.WriteRefusal(w, res, q.Credential)
	}
}

func sessionNotFound(w http.ResponseWriter, id []byte) {
	// 404 is what the Streamable HTTP transport answers for a session it
	// does not know; the client starts a new one.
	writeJSONRPCError(w, http.StatusNotFound, id, CodeUpstream, "agentid gateway: session not found (sessions belong to the task that opened them)")
}

// Request headers never forwarded: the agent's credentials, hop-by-hop
// headers, and what the gateway sets itself. x-agentid-* are replaced by
// the peer's identity headers.
var requestDrop = map[string]bool{
	"Authorization": true, "Proxy-Authorization": true, "Cookie": true,
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true,
	"Upgrade": true, "Proxy-Connection": true, "Host": true, "Content-Length": true,
	"Accept-Encoding":  true, // Go's transport asks for gzip and decodes it: the gateway reads lists
	"Content-Encoding": true, // only identity is accepted (post)
	"Content-Type":     true, // the gateway's own: the bytes it decided, as UTF-8 JSON (upstreamRequest)
	"Forwarded":        true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
	headerLastEventID: true, // no stream resumption through the gateway
}

func init() {
	for _, k := range verifier.ProxyOnlyHeaders { // what only a trusted proxy may say
		requestDrop[k] = true
	}
}

var responseDrop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true,
	"Upgrade": true, "Proxy-Connection": true, "Content-Length": true, "Www-Authenticate": true,
}

func copyHeaders(dst, src http.Header, drop map[string]bool) {
	n := 0
	for _, vs := range src {
		n += len(vs)
	}
	all := make([]string, 0, n) // one backing array, as http.Header.Clone
	for k, vs := range src {
		if drop[canonicalKey(k)] {
			continue
		}
		all = append(all, vs...)
		dst[k] = all[len(all)-len(vs) : len(all) : len(all)]
	}
}

// canonicalKey is http.CanonicalHeaderKey(k), without allocating for a
// key already in that form (as net/http stores the headers it reads).
func canonicalKey(k string) string {
	upper := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case c >= 'a' && c <= 'z':
			if upper {
				return http.CanonicalHeaderKey(k)
			}
		case c >= 'A' && c <= 'Z':
			if !upper {
				return http.CanonicalHeaderKey(k)
			}
		case c == '-' || c >= '0' && c <= '9':
		default: // what CanonicalHeaderKey leaves as is, or another byte
			return http.CanonicalHeaderKey(k)
		}
		upper = c == '-'
	}
	return k
}

var contentTypeJSON = []string{"application/json"}

// upstreamRequest is a request to the upstream with the gateway's
// credential and none of the agent's.
func (g *Gateway) upstreamRequest(ctx context.Context, method string, in http.Header, body []byte) *http.Request {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	out, _ := http.NewRequestWithContext(ctx, method, g.upstream, rd) // g.upstream parsed in New
	out.ContentLength = int64(len(body))
	out.Header = make(http.Header, len(in)+8) // room for the identity headers and the credential
	copyHeaders(out.Header, in, requestDrop)
	if body != nil {
		// never the agent's: a charset in it (ParseMCP refuses all but
		// UTF-8) would have the upstream decode other text than was decided
		out.Header["Content-Type"] = contentTypeJSON
	}
	if g.cfg.UpstreamHeader != "" {
		out.Header.Set(g.cfg.UpstreamHeader, g.upstreamValue())
	}
	return out
}

// upstreamValue is the value of Config.UpstreamHeader now.
func (g *Gateway) upstreamValue() string {
	if g.cfg.UpstreamValueFunc != nil {
		return g.cfg.UpstreamValueFunc()
	}
	return g.cfg.UpstreamValue
}

// forward sends the request upstream and streams the answer back,
// filtering list answers.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, body []byte, x *exchange) {
	// A call is held to its peer while the upstream works on it (a long
	// tool): re-checked every StreamRecheckInterval, the upstream's
	// request cancelled at a refusal, and an answer that arrives after it
	// is not relayed (the agent gets the refusal). An event stream takes
	// over with its own guard (below).
	reqCtx, cancelReq := context.WithCancelCause(r.Context())
	defer cancelReq(nil)
	checkWait, stopWait := func() error { return nil }, func() {}
	if x.isCall() {
		_, checkWait, stopWait = g.v.Guard(r.Context(), x.q, x.res.Peer.Expires(), cancelReq)
	}
	defer stopWait()
	refused := func() bool {
		if ferr := checkWait(); ferr != nil {
			clear(w.Header()) // none of the upstream's answer goes with the refusal
			writeJSONRPCError(w, http.StatusOK, x.id(), mcpauth.CodeUnauthenticated, "agentid gateway: "+ferr.Error())
			return true
		}
		return false
	}
	out := g.upstreamRequest(reqCtx, r.Method, r.Header, body)
	verifier.SetIdentityHeaders(out.Header, &x.res.Peer, x.res.Decision)
	if g.cfg.UpstreamHeader != "" { // after the identity headers: an x-agentid-* name stays the operator's
		out.Header.Set(g.cfg.UpstreamHeader, g.upstreamValue())
	}
	defer g.sessions.enter(r.Header.Get(headerSessionID))() // idle.go: not idle while in flight
	resp, err := g.rt.RoundTrip(out)
	if err != nil {
		if refused() {
			return
		}
		g.log.Warn("mcp gateway: upstream request failed", "err", err)
		g.upstreamError(w, x, "the upstream MCP server cannot be reached: "+err.Error())
		return
	}
	defer resp.Body.Close()
	sid := r.Header.Get(headerSessionID)
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		g.log.Warn("mcp gateway: the upstream refused the gateway's request; check upstream_header", "status", resp.StatusCode, "www_authenticate", resp.Header.Get("WWW-Authenticate"))
		g.upstreamError(w, x, fmt.Sprintf("the upstream MCP server refused the gateway (HTTP %d)", resp.StatusCode))
		return
	case resp.StatusCode == http.StatusNotFound && sid != "",
		r.Method == http.MethodDelete && resp.StatusCode/100 == 2:
		g.sessions.drop(sid)
	}
	if nsid := resp.Header.Get(headerSessionID); nsid != "" && nsid != sid && !g.sessions.bind(nsid, &x.res.Peer) {
		g.log.Error("mcp gateway: the upstream reused a session id of another peer", "session", nsid)
		g.upstreamError(w, x, "the upstream MCP server answered with another peer's session")
		return
	}
	if x.isCall() && resp.StatusCode/100 == 2 && resp.StatusCode != http.StatusOK {
		// A request is answered 200 (JSON or SSE). Clients read any 2xx
		// but 202 as the answer, so another 2xx is not passed on unread.
		g.log.Warn("mcp gateway: the upstream answered a request with an unexpected status", "method", x.msg.Method, "status", resp.StatusCode)
		g.upstreamError(w, x, fmt.Sprintf("the upstream MCP server answered %s with HTTP %d, not 200", x.msg.Method, resp.StatusCode))
		return
	}
	copyHeaders(w.Header(), resp.Header, responseDrop)
	list := x.msg != nil && listKey(x.msg.Method) != "" && resp.StatusCode == http.StatusOK
	switch ct := mediaType(resp.Header.Get("Content-Type")); {
	case ct == "text/event-stream":
		stopWait()
		// A stream of events lasts only while its peer passes the
		// pipeline's authentication stages (revocation, expiry): when it
		// does not, the upstream's body is closed, which ends the stream,
		// and a write blocked on a client that does not read ends too.
		rc := http.NewResponseController(w)
		ctx, check, stop := g.v.Guard(r.Context(), x.q, x.res.Peer.Expires(), func(error) {
			resp.Body.Close()
			rc.SetWriteDeadline(time.Now())
		})
		g.streamSSE(w, ctx, resp, x, list, check)
		stop()
	case x.isCall() && ct == "application/json":
		if refused() {
			return
		}
		g.answerJSON(w, r.Context(), resp, x, list, refused)
	default:
		if refused() {
			return
		}
		if resp.StatusCode/100 == 2 && r.Method != http.MethodDelete && hasBody(resp) {
			// Fail closed: clients read answers more leniently than
			// mime.ParseMediaType (the TypeScript SDK takes any type that
			// contains "text/event-stream" for SSE), so an answer the
			// gateway did not read must not reach them.
			g.log.Warn("mcp gateway: the upstream answered with a content type that is neither JSON nor SSE", "content_type", resp.Header.Get("Content-Type"))
			for k := range w.Header() {
				delete(w.Header(), k)
			}
			g.upstreamError(w, x, fmt.Sprintf("the upstream MCP server answered with content type %q, neither application/json nor text/event-stream", resp.Header.Get("Content-Type")))
			return
		}
		w.WriteHeader(resp.StatusCode)
		copyFlushing(w, resp.Body)
	}
}

// hasBody reports whether an answer has a body, reading at most one byte
// of it (put back in front of the rest).
func hasBody(resp *http.Response) bool {
	if resp.ContentLength == 0 || resp.Body == http.NoBody {
		return false
	}
	var b [1]byte
	n, _ := io.ReadFull(resp.Body, b[:])
	if n == 0 {
		return false
	}
	resp.Body = struct {
		io.Reader
		io.Closer
	}{io.MultiReader(bytes.NewReader(b[:n]), resp.Body), resp.Body}
	return true
}

// upstreamError fails a request the upstream did not answer: a call gets
// its JSON-RPC error (HTTP 200, so that the client's session goes on),
// anything else 502.
func (g *Gateway) upstreamError(w http.ResponseWriter, x *exchange, msg string) {
	if x.isCall() {
		writeJSONRPCError(w, http.StatusOK, x.id(), CodeUpstream, "agentid gateway: "+msg)
		return
	}
	http.Error(w, "agentid gateway: "+msg, http.StatusBadGateway)
}

func writeJSONRPCError(w http.ResponseWriter, status int, id []byte, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(errorMessage(id, code, msg))
}

func errorMessage(id []byte, code int, msg string) []byte {
	if len(id) == 0 {
		id = []byte("null")
	}
	b, _ := messageWithID(map[string]any{"jsonrpc": "2.0", "id": nil, "error": map[string]any{"code": code, "message": msg}}, id)
	return b
}

// copyFlushing copies an answer of unknown kind, flushing each read.
func copyFlushing(w http.ResponseWriter, r io.Reader) {
	rc := http.NewResponseController(w)
	buf := make([]byte, 8<<10)
	for {
		n, err := r.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			rc.Flush()
		}
		if err != nil {
			return
		}
	}
}

// streamSSE passes an SSE answer through event by event, filtering the
// answer to a list request. When the upstream's stream breaks before a
// call was answered, the call is answered with an error (CodeUpstream).
// check, re-run before each event is passed on, ends the stream once the
// peer is refused (the stream guard's).
func (g *Gateway) streamSSE(w http.ResponseWriter, ctx context.Context, resp *http.Response, x *exchange, list bool, check func() error) {
	w.WriteHeader(resp.StatusCode)
	rc := http.NewResponseController(w)
	if x.msg == nil || !mcpauth.Decided(x.msg.Method) {
		// a stream that may stay quiet (GET, subscriptions/listen): let the
		// client see it open; a call's answer carries the headers
		rc.Flush()
	}
	rd := newSSEReader(resp.Body, maxUpstreamMessage)
	defer rd.release()
	answered := false
	for {
		ev, err := rd.next()
		if err != nil {
			if !errors.Is(err, io.EOF) && x.isCall() && !answered && ctx.Err() == nil {
				g.log.Warn("mcp gateway: the upstream's SSE stream broke before it answered", "method", x.msg.Method, "err", err)
				w.Write(sseMessage(errorMessage(x.id(), CodeUpstream, "agentid gateway: the upstream MCP server's stream broke before it answered: "+err.Error())))
				rc.Flush()
			}
			return
		}
		raw := ev.raw
		if ev.hasData && len(bytes.TrimSpace(ev.data)) > 0 { // not a priming event (an id and empty data)
			request, _, _, ok := messageKind(ev.data)
			switch {
			case ok && request: // the server's request or notification
				if !g.passServerMessage(ctx, x, ev.data) {
					continue
				}
			case !x.isCall():
				// a GET stream carries no responses (a replayed or misrouted
				// answer would reach the agent unfiltered)
				g.dropResponse(x, ev.data)
				continue
			case x.ours(ev.data) && list:
				answered, raw = true, ev.withData(g.filterMessage(ctx, x, ev.data))
			case x.ours(ev.data):
				answered, raw = true, x.answerEvent(ev)
			case list:
				// not known as the list's answer: never passed unfiltered
				g.dropResponse(x, ev.data)
				w.Write(sseMessage(errorMessage(x.id(), CodeUpstream, "agentid gateway: the upstream's answer to "+x.msg.Method+" could not be read")))
				rc.Flush()
				return
			default:
				g.dropResponse(x, ev.data)
				continue
			}
		}
		if check() != nil { // revoked or expired since the last event
			return
		}
		if _, err := w.Write(raw); err != nil {
			return
		}
		rc.Flush()
	}
}

// dropResponse drops a response that answers no request of the agent's
// on this stream, counted and logged.
func (g *Gateway) dropResponse(x *exchange, data []byte) {
	g.dropped.Add(1)
	method := ""
	if x.msg != nil {
		method = x.msg.Method
	}
	g.log.Warn("mcp gateway: dropped a message from the upstream that answers no request of the agent's", "method", method, "bytes", len(data))
}

// answerJSON passes on a call's answer sent as one JSON body, with the
// agent's id, and filters a list. An answer not known as the answer to
// the call becomes an error, but for another call's non-200 answer,
// passed on as sent (an error about the request, such as HTTP 400 or
// 404, whose id may be null).
func (g *Gateway) answerJSON(w http.ResponseWriter, ctx context.Context, resp *http.Response, x *exchange, list bool, refused func() bool) {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamMessage+1))
	if refused() { // the body may come long after the headers
		return
	}
	if err != nil || len(data) > maxUpstreamMessage {
		g.upstreamError(w, x, "the upstream's answer could not be read")
		return
	}
	switch {
	case x.ours(data) && list:
		data = g.filterMessage(ctx, x, data)
	case x.ours(data):
		data = x.answer(data)
	case list || resp.StatusCode == http.StatusOK:
		g.dropResponse(x, data)
		g.upstreamError(w, x, "the upstream's answer to "+x.msg.Method+" could not be read")
		return
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(data)
}

// isResponseTo reports whether msg is the JSON-RPC response to the
// string id.
func isResponseTo(msg []byte, id string) bool {
	request, got, isString, ok := messageKindBytes(msg)
	return ok && !request && isString && string(got) == id
}

// listKey is the result field of a list method ("" for other methods).
func listKey(method string) string {
	switch method {
	case "tools/list":
		return "tools"
	case "prompts/list":
		return "prompts"
	case "resources/list":
		return "resources"
	case "resources/templates/list":
		return "resourceTemplates"
	}
	return ""
}

// filterMessage keeps the list entries the peer could use (as
// mcpauth's middleware does): each is decided as the call it names, with
// the arguments unknown. msg is the upstream's answer to x (x.ours); the
// result carries the agent's id. An answer that cannot be read is
// replaced by an error: the gateway fails closed.
func (g *Gateway) filterMessage(ctx context.Context, x *exchange, msg []byte) []byte {
	var a listAnswer
	if err := json.Unmarshal(msg, &a); err != nil {
		return errorMessage(x.id(), CodeUpstream, "agentid gateway: the upstream's answer to "+x.msg.Method+" could not be read")
	}
	if a.Result == nil {
		return x.answer(msg) // an error answer
	}
	res, err := g.filter(ctx, x, a.Result)
	if err != nil {
		g.log.Warn("mcp gateway: list answer not filtered", "method", x.msg.Method, "err", err)
		return errorMessage(x.id(), CodeUpstream, "agentid gateway: "+err.Error())
	}
	return res
}

// listAnswer is a JSON-RPC answer as the filter reads it: the result's
// fields kept as sent.
type listAnswer struct {
	Result map[string]json.RawMessage `json:"result"`
}

// filter is the answer with the result's list filtered (or the peer's
// refusal).
func (g *Gateway) filter(ctx context.Context, x *exchange, res map[string]json.RawMessage) ([]byte, error) {
	key := listKey(x.msg.Method)
	var items [][]byte
	if raw, ok := res[key]; ok {
		var isList bool
		if items, isList = arrayItems(raw); !isList {
			return nil, fmt.Errorf("the upstream's %s result has no %s list", x.msg.Method, key)
		}
	}
	names := entryNames(key, items)
	if key == "tools" {
		g.tools.add(names)
		raw := make([]json.RawMessage, len(items))
		for i, it := range items {
			raw[i] = it
		}
		g.params.record(raw)
	}
	method := map[string]string{"tools": policies.MCPToolsCall, "prompts": policies.MCPPromptsGet, "resources": policies.MCPResourceRead, "resourceTemplates": policies.MCPResourceRead}[key]
	acts := make([]verifier.Action, len(items))
	for i, n := range names {
		acts[i] = verifier.Action{Kind: policies.KindMCP, Method: method, Name: n}
	}
	vis, r := g.v.Visible(ctx, x.q, acts)
	if vis == nil {
		return messageWithID(map[string]any{"jsonrpc": "2.0", "id": nil, "error": mcpauth.RefusalError(&r)}, x.id())
	}
	n := 2
	for _, it := range items {
		n += len(it) + 1
	}
	kept := append(make([]byte, 0, n), '[') // the entries as sent (validated by filterMessage's Unmarshal)
	for i, it := range items {
		if vis[i] && names[i] != "" {
			if len(kept) > 1 {
				kept = append(kept, ',')
			}
			kept = append(kept, it...)
		}
	}
	res[key] = append(kept, ']')
	return resultMessage(x.id(), res), nil
}

// resultMessage is the JSON-RPC answer with id (as the agent spelled it)
// and the result's fields (valid JSON, as read by encoding/json), written
// out without encoding/json's second validation of every value.
func resultMessage(id []byte, res map[string]json.RawMessage) []byte {
	keys := make([]string, 0, len(res))
	n := len(id) + 40
	for k, v := range res {
		keys = append(keys, k)
		n += len(k) + len(v) + 8
	}
	slices.Sort(keys) // as json.Marshal orders a map
	out := make([]byte, 0, n)
	out = append(out, `{"jsonrpc":"2.0","id":`...)
	out = append(out, id...)
	out = append(out, `,"result":{`...)
	for i, k := range keys {
		if i > 0 {
			out = append(out, ',')
		}
		kj, _ := json.Marshal(k) // a string always marshals
		out = append(append(append(out, kj...), ':'), res[k]...)
	}
	return append(out, "}}"...)
}

// arrayItems are the values of the JSON array raw (valid JSON), as
// slices of it; null is an empty list; false for another value.
func arrayItems(raw []byte) ([][]byte, bool) {
	i := skipSpace(raw, 0)
	switch {
	case bytes.HasPrefix(raw[i:], []byte("null")):
		return nil, true
	case i >= len(raw) || raw[i] != '[':
		return nil, false
	}
	var items [][]byte
	i++
	for {
		i = skipSpace(raw, i)
		if i >= len(raw) {
			return nil, false
		}
		switch raw[i] {
		case ']':
			return items, true
		case ',':
			i = skipSpace(raw, i+1)
		}
		e := valueEnd(raw, i)
		if e <= i {
			return nil, false
		}
		items = append(items, raw[i:e])
		i = e
	}
}

// messageWithID marshals msg (whose "id" is nil) with the id set to id
// as the agent spelled it (json.Marshal would compact and escape it).
func messageWithID(msg map[string]any, id []byte) ([]byte, error) {
	b, err := json.Marshal(msg)
	if err != nil {
		return nil, err
	}
	out, _, ok := replaceTopLevel(b, "id", id)
	if !ok {
		return nil, errors.New("internal error: no id to set")
	}
	return out, nil
}

// entryNames reads each list entry's name (tools, prompts) or URI
// (resources), by its exact key as a case-sensitive client reads it; ""
// for an entry without one (or not an object), which is dropped.
func entryNames[T ~[]byte](key string, items []T) []string {
	field := "name"
	switch key {
	case "resources":
		field = "uri"
	case "resourceTemplates": // decided as reading the template as written
		field = "uriTemplate"
	}
	names := make([]string, len(items))
	for i, it := range items {
		if s, ok := topLevelString(it, field); ok && len(s) <= verifier.MaxNameLen {
			names[i] = s
		}
	}
	return names
}

// checkTool asks the upstream for its tools (all pages, in the caller's
// session) and refuses a name it does not list.
func (g *Gateway) checkTool(ctx context.Context, r *http.Request, body []byte, name string) *verifier.InputError {
	names, err := g.fetchTools(ctx, r.Header, body)
	if err != nil {
		g.log.Warn("mcp gateway: the upstream's tools could not be listed", "err", err)
		return &verifier.InputError{What: "MCP tool", Detail: fmt.Sprintf("the upstream MCP server's tools could not be listed to check %q: %v", name, err)}
	}
	g.tools.add(names)
	for _, n := range names {
		if n == name {
			return nil
		}
	}
	return &verifier.InputError{What: "MCP tool", Detail: fmt.Sprintf("%q is not a tool of the upstream MCP server", name)}
}

// maxToolPages bounds the pages of tools/list the gateway reads.
const maxToolPages = 100

func (g *Gateway) fetchTools(ctx context.Context, in http.Header, call []byte) ([]string, error) {
	meta := callMeta(call)
	hdr := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}}
	for _, k := range []string{headerSessionID, headerVersion} {
		if v := in.Get(k); v != "" {
			hdr.Set(k, v)
		}
	}
	if in.Get(headerMethod) != "" {
		hdr.Set(headerMethod, "tools/list")
	}
	var names []string
	cursor := ""
	for range maxToolPages {
		params := map[string]any{}
		if meta != nil {
			params["_meta"] = meta
		}
		if cursor != "" {
			params["cursor"] = cursor
		}
		id := fmt.Sprintf("agentid-gateway-%d", g.seq.Add(1))
		msg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": id, "method": "tools/list", "params": params})
		resp, err := g.rt.RoundTrip(g.upstreamRequest(ctx, http.MethodPost, hdr, msg))
		if err != nil {
			return nil, err
		}
		answer, err := readAnswer(resp, id)
		if err != nil {
			return nil, err
		}
		var env struct {
			Result *struct {
				Tools      []json.RawMessage `json:"tools"`
				NextCursor string            `json:"nextCursor"`
			} `json:"result"`
			Error *struct {
				Message string `json:"message"`
			} `json:"error"`
		}
		if err := json.Unmarshal(answer, &env); err != nil || (env.Result == nil && env.Error == nil) {
			return nil, errors.New("tools/list: not a JSON-RPC response")
		}
		if env.Error != nil {
			return nil, fmt.Errorf("tools/list: %s", env.Error.Message)
		}
		names = append(names, entryNames("tools", env.Result.Tools)...)
		g.params.record(env.Result.Tools)
		if cursor = env.Result.NextCursor; cursor == "" {
			return names, nil
		}
	}
	return nil, fmt.Errorf("tools/list: more than %d pages", maxToolPages)
}

// callMeta is the _meta of a call's params without its progress token:
// what a 2026-07-28 request carries (protocol version, client info), for
// the gateway's own tools/list.
func callMeta(body []byte) map[string]json.RawMessage {
	var env struct {
		Params struct {
			Meta map[string]json.RawMessage `json:"_meta"`
		} `json:"params"`
	}
	if json.Unmarshal(body, &env) != nil || env.Params.Meta == nil {
		return nil
	}
	delete(env.Params.Meta, "progressToken")
	return env.Params.Meta
}

// readAnswer reads the response to id from a JSON or SSE answer.
func readAnswer(resp *http.Response, id string) ([]byte, error) {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("tools/list: HTTP %d", resp.StatusCode)
	}
	if ct := mediaType(resp.Header.Get("Content-Type")); ct != "text/event-stream" {
		data, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamMessage))
		if err != nil {
			return nil, err
		}
		return data, nil
	}
	rd := newSSEReader(resp.Body, maxUpstreamMessage)
	defer rd.release()
	for {
		ev, err := rd.next()
		if err != nil {
			return nil, fmt.Errorf("tools/list: the stream ended before the answer: %w", err)
		}
		if ev.hasData && isResponseTo(ev.data, id) {
			return ev.data, nil
		}
	}
}

// mediaType is the media type of a Content-Type value as
// mime.ParseMediaType reads it, without its work for the two types MCP
// servers send without parameters.
func mediaType(v string) string {
	switch v {
	case "text/event-stream", "application/json":
		return v
	}
	ct, _, err := mime.ParseMediaType(v)
	if err != nil {
		return "" // malformed: read as no type (a 2xx answer with a body fails closed)
	}
	return ct
}

// sseMessage is one SSE message event carrying data.
func sseMessage(data []byte) []byte {
	return []byte("event: message\ndata: " + strings.ReplaceAll(string(data), "\n", "\ndata: ") + "\n\n")
}
