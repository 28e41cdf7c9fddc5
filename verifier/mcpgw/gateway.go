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
	"strings"
	"sync/atomic"

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
	log      *slog.Logger
	seq      atomic.Uint64
}

// New returns a gateway deciding with v. With Config.Command it starts
// the child; Close stops it.
func New(v *verifier.Verifier, cfg Config) (*Gateway, error) {
	a, err := mcpauth.New(v, mcpauth.Options{Resource: cfg.Resource, ScopesSupported: cfg.ScopesSupported,
		ResourceName: cfg.ResourceName, AuthorizationServers: cfg.AuthorizationServers})
	if err != nil {
		return nil, fmt.Errorf("mcpgw: %w", err)
	}
	g := &Gateway{v: v, auth: a, meta: a.MetadataHandler(), cfg: cfg, path: cfg.Path, sessions: newSessions(), log: cfg.Log}
	if g.log == nil {
		g.log = slog.Default()
	}
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
}

func (x *exchange) isCall() bool { return x.msg != nil && len(x.msg.ID) > 0 && x.msg.Method != "" }

func (g *Gateway) serveMCP(w http.ResponseWriter, r *http.Request) {
	q := &verifier.Query{Frontend: Frontend, Credential: verifier.HTTPCredential(r), Audience: g.cfg.Resource, Request: mcpauth.HTTPRequest(r)}
	if n := len(r.Header.Values(headerSessionID)); n > 1 {
		// servers differ on which one they take: the gateway would check one
		// session and the upstream serve another
		q.Action = verifier.Action{Kind: policies.KindHTTP, Method: r.Method, Path: g.path}
		q.Reject = &verifier.InputError{What: headerSessionID, Detail: fmt.Sprintf("sent %d times", n)}
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
		g.forward(w, r, nil, &exchange{res: &res, q: q})
	default:
		w.Header().Set("Allow", "GET, POST, DELETE")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	}
}

// post decides one JSON-RPC message and forwards it.
func (g *Gateway) post(w http.ResponseWriter, r *http.Request, q *verifier.Query) {
	ctx := r.Context()
	body, err := readBody(r)
	if err != nil {
		http.Error(w, "reading the request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	m, perr := verifier.ParseMCP(body, r.Header)
	if perr != nil { // refused and audited by the pipeline, which reads the body the same way
		q.Action, q.MCP, q.Body = verifier.Action{Kind: policies.KindHTTP, Method: http.MethodPost, Path: g.path}, true, body
		res := g.v.Decide(ctx, q)
		g.refuse(w, &res, q)
		return
	}
	var res verifier.Result
	if mcpauth.Decided(m.Method) {
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
	g.forward(w, r, body, &exchange{msg: &m, res: &res, q: q})
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
	q.Action = m.Action("")
	q.WantScopes = q.Credential.Kind == verifier.CredentialJWT
	if m.Method == policies.MCPToolsCall && !g.tools.has(m.Name) {
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
	"Accept-Encoding": true, // Go's transport asks for gzip and decodes it: the gateway reads lists
	"Forwarded":       true, "X-Forwarded-For": true, "X-Forwarded-Host": true, "X-Forwarded-Proto": true,
}

var responseDrop = map[string]bool{
	"Connection": true, "Keep-Alive": true, "Te": true, "Trailer": true, "Transfer-Encoding": true,
	"Upgrade": true, "Proxy-Connection": true, "Content-Length": true, "Www-Authenticate": true,
}

func copyHeaders(dst, src http.Header, drop map[string]bool) {
	for k, vs := range src {
		if drop[http.CanonicalHeaderKey(k)] {
			continue
		}
		dst[k] = append([]string(nil), vs...)
	}
}

// upstreamRequest is a request to the upstream with the gateway's
// credential and none of the agent's.
func (g *Gateway) upstreamRequest(ctx context.Context, method string, in http.Header, body []byte) *http.Request {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	out, _ := http.NewRequestWithContext(ctx, method, g.upstream, rd) // g.upstream parsed in New
	out.ContentLength = int64(len(body))
	copyHeaders(out.Header, in, requestDrop)
	if g.cfg.UpstreamHeader != "" {
		out.Header.Set(g.cfg.UpstreamHeader, g.cfg.UpstreamValue)
	}
	return out
}

// forward sends the request upstream and streams the answer back,
// filtering list answers.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, body []byte, x *exchange) {
	out := g.upstreamRequest(r.Context(), r.Method, r.Header, body)
	verifier.SetIdentityHeaders(out.Header, &x.res.Peer, x.res.Decision)
	if g.cfg.UpstreamHeader != "" { // after the identity headers: an x-agentid-* name stays the operator's
		out.Header.Set(g.cfg.UpstreamHeader, g.cfg.UpstreamValue)
	}
	resp, err := g.rt.RoundTrip(out)
	if err != nil {
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
	copyHeaders(w.Header(), resp.Header, responseDrop)
	list := x.msg != nil && listKey(x.msg.Method) != "" && resp.StatusCode == http.StatusOK
	switch ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); {
	case ct == "text/event-stream":
		g.streamSSE(w, r.Context(), resp, x, list)
	case list && ct == "application/json":
		g.filterJSON(w, r.Context(), resp, x)
	default:
		w.WriteHeader(resp.StatusCode)
		copyFlushing(w, resp.Body)
	}
}

// upstreamError fails a request the upstream did not answer: a call gets
// its JSON-RPC error (HTTP 200, so that the client's session goes on),
// anything else 502.
func (g *Gateway) upstreamError(w http.ResponseWriter, x *exchange, msg string) {
	if x.isCall() {
		writeJSONRPCError(w, http.StatusOK, x.msg.ID, CodeUpstream, "agentid gateway: "+msg)
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
	b, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(id), "error": map[string]any{"code": code, "message": msg}})
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
func (g *Gateway) streamSSE(w http.ResponseWriter, ctx context.Context, resp *http.Response, x *exchange, list bool) {
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
				w.Write(sseMessage(errorMessage(x.msg.ID, CodeUpstream, "agentid gateway: the upstream MCP server's stream broke before it answered: "+err.Error())))
				rc.Flush()
			}
			return
		}
		raw := ev.raw
		switch {
		case !x.isCall() || !ev.hasData:
		case list: // filter reads the id itself: one decoding of a large answer fewer
			if out, ours := g.filterMessage(ctx, x, ev.data); ours {
				answered, raw = true, ev.withData(out)
			}
		case isResponseTo(ev.data, x.msg.ID):
			answered = true
		}
		if _, err := w.Write(raw); err != nil {
			return
		}
		rc.Flush()
	}
}

// filterJSON filters a list answered as one JSON body.
func (g *Gateway) filterJSON(w http.ResponseWriter, ctx context.Context, resp *http.Response, x *exchange) {
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxUpstreamMessage+1))
	if err != nil || len(data) > maxUpstreamMessage {
		g.upstreamError(w, x, "the upstream's list answer could not be read")
		return
	}
	if out, ours := g.filterMessage(ctx, x, data); ours {
		data = out
	}
	w.WriteHeader(resp.StatusCode)
	w.Write(data)
}

// isResponseTo reports whether msg is the JSON-RPC response to id.
func isResponseTo(msg, id []byte) bool {
	var env struct {
		ID     json.RawMessage `json:"id"`
		Method *string         `json:"method"`
	}
	if json.Unmarshal(msg, &env) != nil || env.Method != nil {
		return false
	}
	return bytes.Equal(bytes.TrimSpace(env.ID), id)
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
	}
	return ""
}

// filterMessage keeps the list entries the peer could use (as
// mcpauth's middleware does): each is decided as the call it names, with
// the arguments unknown. An answer that cannot be read is replaced by an
// error: the gateway fails closed.
// ours is false for a message that is not the answer to x (returned
// unchanged).
func (g *Gateway) filterMessage(ctx context.Context, x *exchange, msg []byte) (out []byte, ours bool) {
	var a listAnswer // one pass over the whole answer
	if err := json.Unmarshal(msg, &a); err != nil || a.Method != nil || !bytes.Equal(bytes.TrimSpace(a.ID), x.msg.ID) {
		return msg, false
	}
	if a.Result == nil {
		return msg, true // an error answer
	}
	res, err := g.filter(ctx, x, a.Result)
	if err != nil {
		g.log.Warn("mcp gateway: list answer not filtered", "method", x.msg.Method, "err", err)
		return errorMessage(x.msg.ID, CodeUpstream, "agentid gateway: "+err.Error()), true
	}
	return res, true
}

// listAnswer is a JSON-RPC answer as the filter reads it: the result's
// fields kept as sent.
type listAnswer struct {
	ID     json.RawMessage            `json:"id"`
	Method json.RawMessage            `json:"method"`
	Result map[string]json.RawMessage `json:"result"`
}

// filter is the answer with the result's list filtered (or the peer's
// refusal).
func (g *Gateway) filter(ctx context.Context, x *exchange, res map[string]json.RawMessage) ([]byte, error) {
	key := listKey(x.msg.Method)
	var items []json.RawMessage
	if raw, ok := res[key]; ok {
		if err := json.Unmarshal(raw, &items); err != nil {
			return nil, fmt.Errorf("the upstream's %s result has no %s list", x.msg.Method, key)
		}
	}
	names := entryNames(key, items)
	if key == "tools" {
		g.tools.add(names)
	}
	method := map[string]string{"tools": policies.MCPToolsCall, "prompts": policies.MCPPromptsGet, "resources": policies.MCPResourceRead}[key]
	acts := make([]verifier.Action, len(items))
	for i, n := range names {
		acts[i] = verifier.Action{Kind: policies.KindMCP, Method: method, Name: n}
	}
	vis, r := g.v.Visible(ctx, x.q, acts)
	if vis == nil {
		return json.Marshal(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(x.msg.ID), "error": mcpauth.RefusalError(&r)})
	}
	kept := []byte{'['} // the entries as sent (validated by the Unmarshal above)
	for i, it := range items {
		if vis[i] && names[i] != "" {
			if len(kept) > 1 {
				kept = append(kept, ',')
			}
			kept = append(kept, it...)
		}
	}
	res[key] = append(kept, ']')
	return json.Marshal(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(x.msg.ID), "result": res})
}

// entryNames reads each list entry's name (tools, prompts) or URI
// (resources), by its exact key as a case-sensitive client reads it; ""
// for an entry without one (or not an object), which is dropped.
func entryNames(key string, items []json.RawMessage) []string {
	field := "name"
	if key == "resources" {
		field = "uri"
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
		id, _ := json.Marshal(fmt.Sprintf("agentid-gateway-%d", g.seq.Add(1)))
		msg, _ := json.Marshal(map[string]any{"jsonrpc": "2.0", "id": json.RawMessage(id), "method": "tools/list", "params": params})
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
func readAnswer(resp *http.Response, id []byte) ([]byte, error) {
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
		return nil, fmt.Errorf("tools/list: HTTP %d", resp.StatusCode)
	}
	ct, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if ct != "text/event-stream" {
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

// sseMessage is one SSE message event carrying data.
func sseMessage(data []byte) []byte {
	return []byte("event: message\ndata: " + strings.ReplaceAll(string(data), "\n", "\ndata: ") + "\n\n")
}
