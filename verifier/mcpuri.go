package verifier

import (
	"net/netip"
	"strconv"
	"strings"

	"github.com/agentid/agentid/policies"
)

// CheckResourceURI accepts an MCP resource URI (resources/read,
// resources/subscribe, resources/unsubscribe, a completion's ref/resource,
// the upstream's notifications/resources/updated) only in a form that a
// server resolving it reads as the same resource the policy matched.
//
// A hierarchical URI — scheme file, http or https, any scheme followed by
// "/" ("s3://…", "custom:/…"), or no scheme at all — must be canonical: a
// lower-case scheme and authority (printable ASCII, no "%" or "\"), and a
// path with no dot segments ("." or "..", also before a ";parameter"), no
// empty segments ("//"; a final "/" is allowed), no percent-encoded
// unreserved characters ("%2e", "%61") or characters a path holds
// literally (":", "@", "+", ";", … : "%3A"), no encoded "/", "\" or NUL, hex
// escapes in upper case, no backslash, nothing outside printable ASCII,
// and no fragment. Otherwise "file:///srv/../etc/shadow" or
// "file:///srv/%2e%2e/etc/shadow" would be matched by "file:///srv/**" and
// read, by a server that parses and cleans the URI, as /etc/shadow. A
// refused URI is a bad request (an *InputError).
//
// An opaque URI ("urn:…", "mailto:…", a custom scheme not followed by "/")
// has no path to resolve: it is matched as sent. URI templates (RFC 6570,
// "file:///srv/{+path}") pass the same check as URIs.
func CheckResourceURI(uri string) error {
	if len(uri) > MaxNameLen {
		return tooLarge("MCP resource URI", len(uri), MaxNameLen)
	}
	if uri == "" {
		return badInput("MCP resource URI", "empty")
	}
	scheme, rest, ok := policies.SplitScheme(uri)
	if !ok { // no scheme: a relative reference, read as a path
		if strings.HasPrefix(uri, "//") {
			return checkHierURI(uri, uri)
		}
		if !strings.HasPrefix(uri, "/") {
			return checkHierURI(uri, "/"+uri)
		}
		return checkHierURI(uri, uri)
	}
	lower := strings.ToLower(scheme)
	if scheme != lower {
		return uriError(uri, "the scheme %q is not lower case: send %q", scheme, lower)
	}
	_, special := policies.SpecialScheme(lower)
	if !special && !strings.HasPrefix(rest, "/") {
		return nil // opaque
	}
	if !strings.HasPrefix(rest, "/") {
		return uriError(uri, "a %s: URI needs a path starting with \"/\"", lower)
	}
	switch lower {
	case "file":
		// file:/x, file://localhost/x and file://host/x name the file
		// file:///x names (Node's URL parser, go-sdk handlers ignoring the
		// host), and a query is dropped before the file is read.
		if !strings.HasPrefix(rest, "///") {
			return uriError(uri, "a file: URI is file:///path, without a host (file:/x and file://localhost/x are the same file)")
		}
		if strings.IndexByte(rest, '?') >= 0 {
			return uriError(uri, "a query on a file: URI is refused (servers drop it and read the file)")
		}
	case "http", "https", "ws", "wss", "ftp":
		if err := checkHTTPAuthority(uri, lower, rest); err != nil {
			return err
		}
	}
	return checkHierURI(uri, rest)
}

// checkHTTPAuthority accepts the authority of an http(s) URI rest
// ("//host[:port]/…") only in the one form URL parsers keep as it is: a
// lower-case DNS name without a trailing dot, a dotted-decimal IPv4
// address or a bracketed IPv6 address in their canonical text, an
// explicit port only when not the scheme's default, no userinfo, and a
// "/" right after it (so "https://evil.com?.example.org/x" is not matched
// as a host under example.org).
func checkHTTPAuthority(uri, scheme, rest string) error {
	auth, ok := strings.CutPrefix(rest, "//")
	if !ok {
		return uriError(uri, "an %s: URI needs a host (%s://host/path)", scheme, scheme)
	}
	end := strings.IndexAny(auth, "/?#")
	if end < 0 {
		end = len(auth)
	}
	if end == len(auth) || auth[end] != '/' {
		return uriError(uri, "the host must be followed by a path starting with \"/\" (URL parsers add it: %s://%s/…)", scheme, truncate(auth[:end]))
	}
	auth = auth[:end]
	if strings.IndexByte(auth, '@') >= 0 {
		return uriError(uri, "userinfo (\"user@\") in the authority is refused")
	}
	host, port := auth, ""
	if strings.HasPrefix(auth, "[") {
		i := strings.IndexByte(auth, ']')
		if i < 0 {
			return uriError(uri, "unclosed \"[\" in the host")
		}
		host, port = auth[:i+1], auth[i+1:]
		if a, err := netip.ParseAddr(host[1 : len(host)-1]); err != nil || !a.Is6() || a.Is4In6() || a.Zone() != "" || "["+a.String()+"]" != host {
			return uriError(uri, "the IPv6 host %q is not in canonical form", truncate(host))
		}
	} else if i := strings.IndexByte(auth, ':'); i >= 0 {
		host, port = auth[:i], auth[i:]
		if err := checkDNSOrIPv4(uri, host); err != nil {
			return err
		}
	} else if err := checkDNSOrIPv4(uri, host); err != nil {
		return err
	}
	if port != "" {
		p := strings.TrimPrefix(port, ":")
		n, err := strconv.Atoi(p)
		switch {
		case !strings.HasPrefix(port, ":") || p == "" || err != nil || n <= 0 || n > 65535 || strconv.Itoa(n) != p:
			return uriError(uri, "the port %q is not a port number in canonical form", truncate(port))
		case n == defaultPort(scheme):
			return uriError(uri, "the default port %d is written out: leave it out", n)
		}
	}
	return nil
}

// checkDNSOrIPv4 accepts a lower-case DNS name (letters, digits, "-",
// non-empty labels, no trailing dot) whose last label is not numeric, or a
// dotted-decimal IPv4 address as netip prints it (URL parsers read
// "0x7f.1", "127.1" and "2130706433" as 127.0.0.1).
func checkDNSOrIPv4(uri, host string) error {
	if host == "" {
		return uriError(uri, "an empty host is refused")
	}
	for i := 0; i < len(host); i++ {
		if c := host[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return uriError(uri, "byte %q in the host %q is refused (lower-case letters, digits, \"-\" and \".\")", c, truncate(host))
		}
	}
	if host[0] == '.' || host[len(host)-1] == '.' || strings.Contains(host, "..") {
		return uriError(uri, "the host %q has an empty label (or a trailing dot)", truncate(host))
	}
	last := host[strings.LastIndexByte(host, '.')+1:]
	if strings.HasPrefix(last, "0x") || strings.Trim(last, "0123456789") == "" {
		if a, err := netip.ParseAddr(host); err != nil || !a.Is4() || a.String() != host {
			return uriError(uri, "the host %q is read as an IPv4 address: write it as four decimal numbers", truncate(host))
		}
	}
	return nil
}

func defaultPort(scheme string) int {
	p, _ := policies.SpecialScheme(scheme)
	return p
}

// checkHierURI checks the hierarchical part rest ("//authority/path?query"
// or "/path?query") of uri.
func checkHierURI(uri, rest string) error {
	if strings.IndexByte(rest, '#') >= 0 {
		return uriError(uri, "a fragment (\"#\") is refused")
	}
	p, query, _ := strings.Cut(rest, "?")
	if auth, ok := strings.CutPrefix(p, "//"); ok {
		end := strings.IndexByte(auth, '/')
		if end < 0 {
			end = len(auth)
		}
		auth, p = auth[:end], auth[end:]
		for i := 0; i < len(auth); i++ {
			switch c := auth[i]; {
			case c >= 'A' && c <= 'Z':
				return uriError(uri, "the authority %q is not lower case", truncate(auth))
			case c <= ' ' || c >= 0x7f || c == '\\' || c == '%':
				return uriError(uri, "byte 0x%02x in the authority is refused", c)
			}
		}
		if p == "" {
			return checkURIBytes(uri, query, "query")
		}
	}
	if err := checkURIPath(uri, p); err != nil {
		return err
	}
	return checkURIBytes(uri, query, "query")
}

// checkURIPath checks an absolute path p of uri.
func checkURIPath(uri, p string) error {
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '%':
			if i+2 >= len(p) || unhex(p[i+1]) < 0 || unhex(p[i+2]) < 0 {
				return uriError(uri, "malformed percent-encoding at byte %d of the path", i)
			}
			switch d := byte(unhex(p[i+1])<<4 | unhex(p[i+2])); {
			case d == '/' || d == '\\' || d == 0:
				return uriError(uri, "encoded %q (%s) is refused", d, p[i:i+3])
			case isUnreserved(d), strings.IndexByte(uriLiterals, d) >= 0:
				return uriError(uri, "%s is an encoded %q: send %q", p[i:i+3], d, d)
			case p[i+1] >= 'a' || p[i+2] >= 'a':
				return uriError(uri, "%s: hex escapes are upper case: send %s", p[i:i+3], strings.ToUpper(p[i:i+3]))
			}
			i += 2
		case c == '\\':
			return uriError(uri, "a backslash is refused")
		case c <= ' ' || c >= 0x7f:
			return uriError(uri, "byte 0x%02x at %d of the path must be percent-encoded", c, i)
		case strings.IndexByte(uriEscaped, c) >= 0:
			return uriError(uri, "a literal %q in the path is refused: send %%%02X", c, c)
		}
	}
	for rest := p[1:]; ; {
		seg, more, found := strings.Cut(rest, "/")
		name, _, _ := strings.Cut(seg, ";")
		switch {
		case seg == "" && found:
			return uriError(uri, "an empty path segment (\"//\") is refused")
		case name == "." || name == "..":
			return uriError(uri, "the dot segment %q is refused: servers resolve it", truncate(seg))
		}
		if !found {
			return nil
		}
		rest = more
	}
}

// pathLiterals are the reserved characters a path segment holds as they
// are (RFC 3986 pchar: sub-delims, ":" and "@"): their escapes are a
// second spelling of the same name to a server that decodes the path, so
// only the literal is accepted ("a:b", not "a%3Ab").
const pathLiterals = literalReserved + ";"

// uriLiterals are the characters a resource URI's path holds only
// literally: pathLiterals, and "{" "}" (literal in URI templates, RFC
// 6570, so a concrete URI writes them literally too).
const uriLiterals = pathLiterals + "{}"

// uriEscaped are the printable ASCII bytes a resource URI's path holds
// only percent-encoded (each has one spelling: "%5B", not "[").
const uriEscaped = "\"<>[]^`|"

func checkURIBytes(uri, s, where string) error {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '\\' {
			return uriError(uri, "byte 0x%02x in the %s is refused", c, where)
		}
	}
	return nil
}

func uriError(uri, format string, args ...any) *InputError {
	e := badInput("MCP resource URI", format, args...)
	e.Detail = quote(truncate(uri)) + ": " + e.Detail
	return e
}

// isResourceMethod reports whether an MCP action's name is a resource URI.
func isResourceMethod(method string) bool {
	return method == policies.MCPResourceRead || method == "resources/subscribe" || method == "resources/unsubscribe"
}

// checkResourceAction refuses an MCP resource action whose URI is not
// canonical (CheckResourceURI), whichever front-end built it.
func checkResourceAction(a *Action) error {
	if a.Kind != policies.KindMCP || !isResourceMethod(a.Method) {
		return nil
	}
	return CheckResourceURI(a.Name)
}
