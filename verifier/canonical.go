package verifier

import (
	"errors"
	"fmt"
	"strings"

	"github.com/agentid/agentid/policies"
)

// Input limits, checked before anything is matched. A request over one is
// refused: HTTP 414 for a path, 413 for an MCP body, 400 otherwise; ext_authz
// answers the same status with INVALID_ARGUMENT.
const (
	// MaxPathLen bounds an HTTP path (without the query): the policy
	// engine's policies.MaxPathLen.
	MaxPathLen = policies.MaxPathLen
	// MaxGRPCMethodLen bounds a gRPC full method name (policies.MaxMethodLen).
	MaxGRPCMethodLen = policies.MaxMethodLen
	// MaxMethodLen bounds an HTTP method.
	MaxMethodLen = 32
	// MaxNameLen bounds an MCP method, tool, prompt or resource name and a
	// generic action's kind and name (policies.MaxNameLen).
	MaxNameLen = policies.MaxNameLen
)

// InputError says why an action cannot be decided as sent. TooLarge marks
// a limit (413/414) rather than a malformed input (400).
type InputError struct {
	What     string
	Detail   string
	TooLarge bool
}

func (e *InputError) Error() string { return e.What + ": " + e.Detail }

func badInput(what, format string, args ...any) *InputError {
	return &InputError{What: what, Detail: fmt.Sprintf(format, args...)}
}

func tooLarge(what string, n, max int) *InputError {
	return &InputError{What: what, Detail: fmt.Sprintf("%d bytes exceed the limit of %d", n, max), TooLarge: true}
}

// canonicalAction turns the front-end's action into the one the policy
// decides, or says why it cannot.
func canonicalAction(q *Query) (Action, []byte, error) {
	a, id, err := canonicalActionOf(q)
	if err != nil {
		return a, id, err
	}
	// What the engine would refuse anyway, refused here in protocol terms.
	if err := a.CheckLimits(); err != nil {
		var le *policies.LimitError
		if errors.As(err, &le) { // only here: its target escapes
			return Action{}, id, &InputError{What: le.Field, Detail: le.Error(), TooLarge: true}
		}
	}
	return a, id, nil
}

func canonicalActionOf(q *Query) (Action, []byte, error) {
	a := q.Action
	grpcCall := q.GRPC
	if a.Kind == policies.KindHTTP && a.Method == "POST" && !q.MCP {
		// Whatever the front-end saw (the check API sets no GRPC): the
		// request's own Content-Type says whether gRPC servers run it.
		named, err := grpcContentType(requestContentType(&q.Request))
		if err != nil {
			return Action{}, nil, err
		}
		grpcCall = grpcCall || named
	}
	if a.Kind != policies.KindGRPC && !grpcCall {
		if h := underscoreHeader(&q.Request); h != "" {
			return Action{}, nil, underscoreError(h)
		}
	}
	switch a.Kind {
	case policies.KindHTTP:
		if err := CheckMethod(a.Method); err != nil {
			return Action{}, nil, err
		}
		if err := CheckPath(a.Path); err != nil {
			return Action{}, nil, err
		}
		if h := methodOverride(&q.Request); h != "" {
			return Action{}, nil, badInput("method", "the %s header is refused: frameworks that honour it run another method than the one decided (send the method itself)", h)
		}
		if s := q.Signed; s != nil { // the request a service received (check API)
			target, _, _ := strings.Cut(s.Message.TargetURI, "#")
			if _, query, ok := strings.Cut(target, "?"); ok && methodOverrideParam(query) {
				return Action{}, nil, badInput("method", "a \"_method\" query parameter is refused: frameworks that honour it run another method than the one decided (send the method itself)")
			}
			// and its form or JSON body, as the front-ends that read one
			if ct := requestContentType(&q.Request); !q.Form && !grpcCall && a.Method == "POST" && s.BodyKnown && formKindOf(ct) != formNone {
				if len(s.Body) > MaxFormBody {
					return Action{}, nil, tooLarge(formBodyWhat, len(s.Body), MaxFormBody)
				}
				if err := checkForm(ct, s.Body); err != nil {
					return Action{}, nil, err
				}
				if err := checkBodyHeaders(q.Request.Headers, q.Request.HeaderMap); err != nil {
					return Action{}, nil, err // read as UTF-8, as it arrived: the service must too
				}
			}
		}
		if q.Form && !q.MCP {
			if err := checkForm(requestContentType(&q.Request), q.Body); err != nil {
				return Action{}, nil, err
			}
			// what checkForm read, as UTF-8 and as it arrived, is what the
			// upstream must read: no other charset, no Content-Encoding
			if err := checkBodyHeaders(q.Request.Headers, q.Request.HeaderMap); err != nil {
				return Action{}, nil, err
			}
		}
		if q.MCP {
			m, err := ParseMCP(q.Body, q.Request.Headers)
			if err != nil {
				return Action{}, m.ID, err
			}
			if m.Method == MCPMethodListen {
				return listenAction(q.Body, a.Path, m.ID)
			}
			return m.Action(a.Path), m.ID, nil
		}
		if grpcCall {
			return Action{Kind: policies.KindGRPC, Path: a.Path}, nil, checkGRPCMethod(a.Path)
		}
		return Action{Kind: a.Kind, Method: a.Method, Path: a.Path}, nil, nil
	case policies.KindGRPC:
		return a, nil, checkGRPCMethod(a.Path)
	case "":
		return Action{}, nil, badInput("action", "no kind")
	}
	if len(a.Kind) > MaxNameLen {
		return Action{}, nil, tooLarge("action kind", len(a.Kind), MaxNameLen)
	}
	if len(a.Name) > MaxNameLen {
		return Action{}, nil, tooLarge("action name", len(a.Name), MaxNameLen)
	}
	if a.Kind == policies.KindMCP && a.Path != "" {
		if err := CheckPath(a.Path); err != nil {
			return Action{}, nil, err
		}
	}
	if a.Arguments != "" {
		if a.Kind != policies.KindMCP || a.Method != policies.MCPToolsCall {
			return Action{}, nil, badInput("arguments", "only an MCP tool call (tools/call) has arguments")
		}
		if len(a.Arguments) > policies.MaxArgumentsLen {
			return Action{}, nil, tooLarge("MCP arguments", len(a.Arguments), policies.MaxArgumentsLen)
		}
		if err := policies.CheckArguments(a.Arguments); err != nil {
			return Action{}, nil, badInput("MCP arguments", "%v", err)
		}
	}
	return a, nil, nil
}

// CheckMethod accepts an HTTP method that is an RFC 9110 token without
// lower-case letters: "DELETE", not "delete" (which Envoy and Go pass on
// and some frameworks route to the DELETE handler, past a deny on DELETE).
func CheckMethod(m string) error {
	if m == "" {
		return badInput("method", "empty")
	}
	if len(m) > MaxMethodLen {
		return tooLarge("method", len(m), MaxMethodLen)
	}
	for i := 0; i < len(m); i++ {
		c := m[i]
		if c >= 'a' && c <= 'z' {
			return badInput("method", "%q is not upper case: send %q", m, strings.ToUpper(m))
		}
		if !isTchar(c) {
			return badInput("method", "%q is not an RFC 9110 token", m)
		}
	}
	return nil
}

func isTchar(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// CheckPath accepts only a canonical path: the one form that the policy,
// Envoy, the proxy and every upstream read alike. Canonical means: the
// characters a path segment may carry literally (RFC 3986 pchar:
// unreserved, sub-delims, ":" and "@") never percent-encoded ("%61" for
// "a", "%3A" for ":" are refused), every other byte percent-encoded with
// upper-case hex (a literal "{" is refused: send "%7B"), no ";" (path
// parameters: Tomcat, Spring and Jetty drop ";…" from a segment before
// mapping it; "%3B" is a ";" in a name), no encoded "/", "\" or NUL at
// all, no dot segments and no empty segments ("//"). A refusal names the
// canonical form where there is one.
func CheckPath(p string) error {
	if isPlainCanonical(p) {
		return nil // the common case, without allocating
	}
	c, err := CanonicalPath(p)
	if err != nil {
		return err
	}
	if c != p {
		return badInput("path", "%q is not canonical: send %q", truncate(p), truncate(c))
	}
	return nil
}

// CanonicalPath returns the canonical form of an absolute request path
// (without its query): escapes of characters a segment may carry
// literally (unreserved, sub-delims but ";", ":", "@") decoded, other
// escapes in upper-case hex, the printable ASCII bytes a path must escape
// (`"<>?[]^` + "`{|}") escaped, dot segments removed (RFC 3986 5.2.4) and
// runs of slashes merged. Encoded "/", "\" and NUL, a literal "\" or ";",
// bytes outside printable ASCII and malformed escapes are errors: they
// mean different paths to different servers.
func CanonicalPath(p string) (string, error) {
	if len(p) > MaxPathLen {
		return "", tooLarge("path", len(p), MaxPathLen)
	}
	if p == "" || p[0] != '/' {
		return "", badInput("path", "%q does not start with /", truncate(p))
	}
	dec := make([]byte, 0, len(p))
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || unhex(p[i+1]) < 0 || unhex(p[i+2]) < 0 {
				return "", badInput("path", "malformed percent-encoding at byte %d", i)
			}
			d := byte(unhex(p[i+1])<<4 | unhex(p[i+2]))
			switch {
			case d == '/' || d == '\\' || d == 0:
				return "", badInput("path", "encoded %q (%s) is refused", d, p[i:i+3])
			case isUnreserved(d) || isLiteralReserved(d):
				dec = append(dec, d)
			default:
				dec = append(dec, '%', upperHex[d>>4], upperHex[d&15])
			}
			i += 2
		case c == '\\':
			return "", badInput("path", "a backslash is refused")
		case c == '#':
			return "", badInput("path", "a \"#\" is refused (a request-target has no fragment)")
		case c == ';':
			return "", badInput("path", "a \";\" is refused: servers such as Tomcat, Spring and Jetty drop \";…\" from a segment before mapping it (send %%3B for a \";\" in a name)")
		case c <= ' ' || c >= 0x7f:
			return "", badInput("path", "byte 0x%02x at %d must be percent-encoded", c, i)
		case mustEscape(c):
			dec = append(dec, '%', upperHex[c>>4], upperHex[c&15])
		default:
			dec = append(dec, c)
		}
	}
	return removeDotSegments(string(dec)), nil
}

// isPlainCanonical reports, without allocating, whether p is canonical
// and has no escapes: printable ASCII without "%", "\\", "#" or ";", starting with
// "/", with no empty, "." or ".." segment (a final "/" is allowed).
func isPlainCanonical(p string) bool {
	if len(p) == 0 || len(p) > MaxPathLen || p[0] != '/' {
		return false
	}
	segStart := 1
	for i := 1; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			if !plainPathByte[c] {
				return false
			}
			if c != '/' {
				continue
			}
		}
		switch seg := p[segStart:i]; seg {
		case "":
			if i < len(p) || (i == len(p) && len(p) > 1 && p[len(p)-1] != '/') {
				return false
			}
		case ".", "..":
			return false
		}
		segStart = i + 1
	}
	return true
}

const upperHex = "0123456789ABCDEF"

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// plainPathByte: the bytes a canonical path carries as they are (pchar
// and "/"): printable ASCII but "%", "\\", "#", ";" and mustEscape's.
var plainPathByte = func() (t [256]bool) {
	for c := '!'; c < 0x7f; c++ {
		t[c] = c != '%' && c != '\\' && c != '#' && c != ';' && !mustEscape(byte(c))
	}
	return t
}()

// isLiteralReserved: the reserved characters a path segment carries
// literally (RFC 3986 pchar: sub-delims, ":" and "@"), but ";".
func isLiteralReserved(c byte) bool {
	return strings.IndexByte(literalReserved, c) >= 0
}

// literalReserved are isLiteralReserved's characters.
const literalReserved = "!$&'()*+,=:@"

// mustEscape: the printable ASCII bytes that are not pchar, "/", "%",
// "#", ";" or "\\" (which have their own rules): a URL path carries them
// escaped (Go's URL encoder escapes them, so the proxy would forward "%7B"
// for "{"; a "?" would start the query).
func mustEscape(c byte) bool {
	return strings.IndexByte(`"<>?[]^`+"`{|}", c) >= 0
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// removeDotSegments resolves "." and ".." and merges empty segments; a path
// that ended in "/", "." or ".." keeps a trailing slash.
func removeDotSegments(p string) string {
	segs := strings.Split(p[1:], "/")
	out := make([]string, 0, len(segs))
	trailing := false
	for i, s := range segs {
		last := i == len(segs)-1
		switch s {
		case "", ".":
			trailing = last
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
			trailing = last
		default:
			out = append(out, s)
			trailing = false
		}
	}
	c := "/" + strings.Join(out, "/")
	if trailing && len(out) > 0 {
		c += "/"
	}
	return c
}

// checkGRPCMethod accepts a gRPC method name as protobuf spells one:
// "/" service "/" method, the service a full name (identifiers joined by
// single dots: "kb.v1.KB") and the method an identifier, an identifier
// being [A-Za-z_][A-Za-z0-9_]* (protobuf's; protoreflect.Name.IsValid).
// Anything else ("%44elete", "Delete?x=1", "Delete#x") is refused: grpc-go
// takes :path as sent, so the interceptors would decide it as a method of
// its own, and a net/http gRPC server behind a proxy (grpc-go's
// ServeHTTP, connect-go) decodes it and drops its query — runs "Delete".
func checkGRPCMethod(m string) error {
	if len(m) > MaxGRPCMethodLen {
		return tooLarge("gRPC method", len(m), MaxGRPCMethodLen)
	}
	svc, meth, ok := strings.Cut(strings.TrimPrefix(m, "/"), "/")
	if !strings.HasPrefix(m, "/") || !ok || svc == "" || meth == "" || strings.Contains(meth, "/") {
		return badInput("gRPC method", "%q is not /package.Service/Method", truncate(m))
	}
	for _, part := range strings.Split(svc, ".") {
		if !isProtoIdent(part) {
			return badInput("gRPC method", "%q: the service %q is not a protobuf full name (identifiers [A-Za-z_][A-Za-z0-9_]* joined by \".\")", truncate(m), truncate(svc))
		}
	}
	if !isProtoIdent(meth) {
		return badInput("gRPC method", "%q: the method %q is not a protobuf identifier ([A-Za-z_][A-Za-z0-9_]*)", truncate(m), truncate(meth))
	}
	return nil
}

// isProtoIdent tells whether s is a protobuf identifier.
func isProtoIdent(s string) bool {
	if s == "" || '0' <= s[0] && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// listenAction is the action of a subscriptions/listen outside the MCP
// gateway and mcpauth (which decide each URI): resources/subscribe of its
// one resource, {mcp, subscriptions/listen} without any, refused with more
// than one (one decision per request here).
func listenAction(body []byte, path string, id []byte) (Action, []byte, error) {
	uris, err := MCPListenURIs(body)
	switch {
	case err != nil:
		return Action{}, id, err
	case len(uris) > 1:
		return Action{}, id, badInput("MCP subscriptions", "a subscriptions/listen naming %d resources is decided only by the MCP gateway and mcpauth: here, send one per request", len(uris))
	case len(uris) == 1:
		return Action{Kind: policies.KindMCP, Method: "resources/subscribe", Name: uris[0], Path: path}, id, nil
	}
	return Action{Kind: policies.KindMCP, Method: MCPMethodListen, Path: path}, id, nil
}

// methodOverrideHeaders are the headers with which frameworks (Express's
// method-override, Symfony, Laravel, ASP.NET…) let a POST run as another
// method, in Go's canonical and in lower case (Envoy's) form.
var methodOverrideHeaders = [...][2]string{
	{"X-Http-Method-Override", "x-http-method-override"},
	{"X-Http-Method", "x-http-method"},
	{"X-Method-Override", "x-method-override"},
}

// underscoreHeader names the first (in byte order) header of r whose
// name holds a byte other than a letter, a digit or "-" (a leading ":",
// Envoy's pseudo-headers, aside), or "". Go and Envoy (by default) keep
// such a header apart from its "-" spelling; Rack, PHP, CGI and Django
// read it as another header's variable: "_" as "-" (X_AGENTID_CLAIMS and
// X-Agentid-Claims are both HTTP_X_AGENTID_CLAIMS), and PHP turns "." and
// " " into "_" too (X-Http-Method.Override is the override, Content.Type
// the Content-Type). An identity, method-override or policy header would
// pass the verifier under one name and be read under the other. gRPC
// metadata is left alone: gRPC servers do not fold names.
func underscoreHeader(r *Request) string {
	first := ""
	for k := range r.Headers {
		if oddHeaderName(k) && (first == "" || k < first) {
			first = k
		}
	}
	if len(r.Headers) == 0 {
		for k := range r.HeaderMap {
			if oddHeaderName(k) && (first == "" || k < first) {
				first = k
			}
		}
	}
	return first
}

// oddHeaderName tells whether a header name holds a byte other than an
// ASCII letter, digit or "-" (a leading ":" aside).
func oddHeaderName(k string) bool {
	for i := 0; i < len(k); i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == ':' && i == 0) {
			return true
		}
	}
	return false
}

func underscoreError(h string) *InputError {
	return badInput("header", "the header name %s is refused: servers that read headers as CGI-style variables (Rack, PHP, CGI, Django) take a \"_\" (PHP also a \".\" or a space) in it for \"-\", so it could reach them as another header, which was not decided on (send header names of letters, digits and \"-\" only)", quote(h))
}

// CheckHeaderNames refuses request headers whose names contain "_", as
// the pipeline does for every HTTP and MCP action: a front-end that
// forwards requests it does not decide one by one (the MCP gateway's
// session requests) calls it itself.
func CheckHeaderNames(h map[string][]string) *InputError {
	if k := underscoreHeader(&Request{Headers: h}); k != "" {
		return underscoreError(k)
	}
	return nil
}

// methodOverride names a method-override header the request carries, or "".
func methodOverride(r *Request) string {
	for _, h := range methodOverrideHeaders {
		if len(r.Headers) > 0 {
			if _, ok := r.Headers[h[0]]; ok {
				return h[0]
			}
			if _, ok := r.Headers[h[1]]; ok {
				return h[0]
			}
		}
		if len(r.HeaderMap) > 0 {
			if _, ok := r.HeaderMap[h[1]]; ok {
				return h[0]
			}
		}
	}
	return ""
}

// methodOverrideParam tells whether a query carries a "_method"
// parameter, with which Symfony, Laravel (by default) and Rails run a
// request as another method: keys decoded as PHP decodes them (invalid
// escapes kept), compared without case, read as PHP reads them — up to a
// NUL, leading spaces dropped, "." and " " as "_", "_method[…]" as
// "_method".
func methodOverrideParam(rawQuery string) bool { return overrideParam(rawQuery, isOverrideName) }

// overrideParam tells whether an urlencoded query or body (split on "&"
// and ";") has a field whose decoded name isName takes for "_method".
func overrideParam(encoded string, isName func(string) bool) bool {
	for kv := range strings.FieldsFuncSeq(encoded, func(r rune) bool { return r == '&' || r == ';' }) {
		k, _, _ := strings.Cut(kv, "=")
		if isName(lenientUnescape(k)) {
			return true
		}
	}
	return false
}

// isOverrideName tells whether a decoded parameter or field name is
// "_method" as PHP reads names (methodOverrideParam): up to a NUL, leading
// spaces dropped, "." and " " as "_", "_method[…]" as "_method", any case.
func isOverrideName(k string) bool {
	if i := strings.IndexByte(k, 0); i >= 0 {
		k = k[:i] // PHP reads the name as a C string
	}
	if i := strings.IndexByte(k, '['); i >= 0 {
		k = k[:i]
	}
	for _, name := range []string{k, strings.TrimLeft(k, " ")} { // PHP drops leading spaces
		if len(name) == 7 && (name[0] == '_' || name[0] == '.' || name[0] == ' ') && strings.EqualFold(name[1:], "method") {
			return true
		}
	}
	return false
}

// lenientUnescape decodes as PHP's urldecode: '+' is a space, valid
// escapes decoded, invalid ones kept.
func lenientUnescape(s string) string {
	if strings.IndexByte(s, '%') < 0 && strings.IndexByte(s, '+') < 0 {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && unhex(s[i+1]) >= 0 && unhex(s[i+2]) >= 0:
			b.WriteByte(byte(unhex(s[i+1])<<4 | unhex(s[i+2])))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// isGRPCContentType tells whether one of the Content-Type values (each
// possibly a comma-joined list, as Envoy joins repeated headers) names,
// in any line or comma-separated piece, a media type that gRPC or Connect
// servers (grpc-go, connect-go) serve as an RPC (isGRPCMediaType). The
// front-ends then mark the POST as gRPC (Query.GRPC: its body is not read
// as a form); Decide refuses it unless the Content-Type is exactly that
// one type (grpcContentType).
func isGRPCContentType(values ...string) bool {
	for _, v := range values {
		if namesGRPC(v) {
			return true
		}
	}
	return false
}

// grpcContentType classifies a POST's Content-Type (its lines joined by
// ",", as requestContentType and Envoy join them). One line naming one
// gRPC media type is a gRPC call. A gRPC type beside anything else — a
// second line, or a comma, even inside a parameter ("application/grpc;
// v=a,b") — is refused: grpc-go's HTTP/2 transport takes any line it
// accepts, its ServeHTTP the first, and reads "application/grpc;…" as
// gRPC whatever follows, while other servers read another line; neither
// reading can be decided for all of them, so the request is neither a
// gRPC call nor an HTTP one here. Otherwise it is not a gRPC call.
func grpcContentType(ct string) (bool, error) {
	if !namesGRPC(ct) {
		return false, nil
	}
	if strings.IndexByte(ct, ',') < 0 {
		return true, nil
	}
	return false, badInput("content-type", "%q names a gRPC media type beside another (two Content-Type lines, or a comma): gRPC servers read one, other servers another, so it is decided neither as a gRPC call nor as HTTP (send one Content-Type, without a comma)", truncate(ct))
}

// namesGRPC tells whether a Content-Type value, read as a comma-separated
// list, has a piece that is a gRPC media type.
func namesGRPC(v string) bool {
	for {
		piece, rest, more := strings.Cut(v, ",")
		if isGRPCMediaType(piece) {
			return true
		}
		if !more {
			return false
		}
		v = rest
	}
}

// isGRPCMediaType tells whether one media type (with its parameters) is
// one that gRPC or Connect servers serve as an RPC: application/grpc,
// application/grpc+proto, application/grpc-web…, application/connect+…,
// application/proto — read as mime.ParseMediaType reads it
// (case-insensitive, parameters and the spaces around the type ignored),
// which accepts more than grpc-go (exactly "application/grpc", or it
// followed by "+" or ";"). Connect's unary JSON (application/json) and GET
// forms are plain HTTP here (docs/verifier.md).
func isGRPCMediaType(v string) bool {
	t, _, _ := strings.Cut(v, ";")
	t = strings.TrimSpace(t)
	if hasFoldPrefix(t, "application/grpc") {
		if rest := t[len("application/grpc"):]; rest == "" || rest[0] == '+' || rest[0] == '-' {
			return true
		}
	}
	return hasFoldPrefix(t, "application/connect+") || strings.EqualFold(t, "application/proto")
}

func hasFoldPrefix(s, prefix string) bool {
	return len(s) >= len(prefix) && strings.EqualFold(s[:len(prefix)], prefix)
}

func truncate(s string) string {
	if len(s) > 128 {
		return s[:128] + "…"
	}
	return s
}
