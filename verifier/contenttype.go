package verifier

import (
	"mime"
	"strings"
)

// A body the verifier decides on — an MCP message, a form or JSON POST
// body read for its "_method" field — is decided as the bytes that
// arrived, read as UTF-8. A server that honours the Content-Type's charset
// would read other content from the same bytes: Express's express.json()
// (the TypeScript MCP SDK's createMcpExpressApp) decodes the body with
// iconv-lite in any "utf-*" charset it names, so with
// "charset=utf-7" a "+…-" run inside a string the verifier reads as text
// becomes `"},"name":"shell",…` to the server; Spring's message converters
// honour the charset too. A Content-Encoding does the same (express.json()
// inflates gzip, deflate and br). So such a request must say, in one way
// that every parser reads alike, that its bytes are what was decided:
//
//   - at most one Content-Type header, which mime.ParseMediaType reads;
//   - its charset parameter, if any, is "utf-8" in any case, quoted or
//     not. Aliases ("utf8", "unicode-1-1-utf-8") and RFC 2231 forms
//     ("charset*=") are refused rather than guessed at: clients send
//     "utf-8" or no charset;
//   - no other parameter (but a multipart body's boundary), no backslash,
//     and "charset" nowhere but as that parameter's name: servers find a
//     charset their own way — Jetty's scan ignores backslash escapes, so
//     it reads `charset=utf-16le` inside what mime.ParseMediaType reads
//     as the quoted value of another parameter (`x="\";charset=utf-16le;\""`,
//     review 18), and Tomcat looks for "charset=" anywhere in the value;
//   - no Content-Encoding other than identity.
//
// Anything else is refused as bad_request with HTTP 415 Unsupported Media
// Type (ext_authz: INVALID_ARGUMENT with 415; a JSON-RPC error on MCP
// paths), audited like every other input that cannot be decided.

// What an InputError names for a refused Content-Type or Content-Encoding
// (both answered 415: Result.HTTPStatus).
const (
	whatContentType     = "Content-Type"
	whatContentEncoding = "Content-Encoding"
)

// checkBodyHeaders applies the rule above to a request's headers, given as
// Request gives them (headers in any case, or ext_authz's single-valued
// map). It does not allocate for an accepted request.
func checkBodyHeaders(headers map[string][]string, headerMap map[string]string) *InputError {
	var ct string
	n := 0
	for k, vs := range headers {
		switch {
		case strings.EqualFold(k, whatContentType):
			if n += len(vs); len(vs) > 0 {
				ct = vs[0]
			}
		case strings.EqualFold(k, whatContentEncoding):
			for _, v := range vs {
				if err := checkContentEncoding(v); err != nil {
					return err
				}
			}
		}
	}
	if len(headers) == 0 {
		for k, v := range headerMap {
			switch {
			case strings.EqualFold(k, whatContentType):
				n, ct = n+1, v
			case strings.EqualFold(k, whatContentEncoding):
				if err := checkContentEncoding(v); err != nil {
					return err
				}
			}
		}
	}
	switch n {
	case 0:
		return nil
	case 1:
		return checkContentType(ct)
	}
	return badInput(whatContentType, "sent %d times: servers differ on which one they read (send one)", n)
}

// checkContentType accepts one Content-Type value whose charset, if any,
// is UTF-8.
func checkContentType(v string) *InputError {
	switch v { // the common forms, without mime.ParseMediaType's map
	case "application/json", "application/json; charset=utf-8", "application/json; charset=UTF-8",
		"application/x-www-form-urlencoded", "application/x-www-form-urlencoded; charset=UTF-8":
		return nil
	}
	mt, params, err := mime.ParseMediaType(v)
	if err != nil {
		return badInput(whatContentType, "%q cannot be read (%v): the body is decided as UTF-8, and a server may read a malformed Content-Type's charset otherwise (send one media type, with charset=utf-8 or no charset)", truncate(v), err)
	}
	if strings.Contains(strings.ToLower(v), "charset*") {
		return badInput(whatContentType, "%q names its charset in RFC 2231 form, which servers read differently (send charset=utf-8 or no charset)", truncate(v))
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") {
		return badInput(whatContentType, "charset %q is refused: the body is decided as UTF-8, and a server that honours the charset (Express's express.json() decodes utf-7 and utf-16) would read another message from the same bytes (send charset=utf-8 or no charset)", truncate(cs))
	}
	return checkContentTypeSpelling(v, mt, params)
}

// checkContentTypeSpelling refuses what servers that find the charset
// their own way could read as one: a parameter other than charset (and a
// multipart boundary), a backslash, "charset" anywhere but as the charset
// parameter's name.
func checkContentTypeSpelling(v, mt string, params map[string]string) *InputError {
	for name := range params {
		if name != "charset" && (name != "boundary" || !strings.HasPrefix(mt, "multipart/")) {
			return badInput(whatContentType, "%q: parameter %q is refused: servers find the charset in a Content-Type their own way (Jetty reads one inside a quoted parameter, Tomcat anywhere), so a body decided as UTF-8 carries charset=utf-8 or nothing (and a multipart body its boundary)", truncate(v), truncate(name))
		}
	}
	if strings.IndexByte(v, '\\') >= 0 {
		return badInput(whatContentType, "%q: a backslash is refused: servers read quoted-pair escapes differently (Jetty does not), and so the charset", truncate(v))
	}
	want := 0
	if _, ok := params["charset"]; ok {
		want = 1
	}
	if n := countFold(v, "charset"); n != want {
		return badInput(whatContentType, "%q: \"charset\" appears %d times where the charset parameter names it %d: Tomcat takes the first \"charset=\" anywhere in the value", truncate(v), n, want)
	}
	return nil
}

// countFold counts the ASCII case-insensitive occurrences of sub in s.
func countFold(s, sub string) int {
	n := 0
	for i := 0; i+len(sub) <= len(s); i++ {
		if strings.EqualFold(s[i:i+len(sub)], sub) {
			n++
		}
	}
	return n
}

// checkContentEncoding accepts one Content-Encoding value that is
// identity (or empty).
func checkContentEncoding(v string) *InputError {
	if t := strings.TrimSpace(v); t == "" || strings.EqualFold(t, "identity") {
		return nil
	}
	return badInput(whatContentEncoding, "%q is refused: the body is decided as it arrives, and a server that decodes it (express.json() inflates gzip, deflate and br) would read other content (send it uncompressed)", truncate(v))
}
