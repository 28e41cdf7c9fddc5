package verifier

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"mime/multipart"
	"net/textproto"
	"regexp"
	"strings"
)

// MaxFormBody bounds the body of a form or JSON POST (see Query.Form): a
// larger one is refused (413), never forwarded unread.
const MaxFormBody = 1 << 20

// Frameworks run a POST whose form body has a "_method" field as the
// method that field names:
//
//   - Rack::MethodOverride (Rack 2.2 lib/rack/method_override.rb, in
//     every non-API Rails app's middleware stack) reads req.POST["_method"]
//     for a POST only. Rack::Request#POST (lib/rack/request.rb, form_data?
//     and parseable_data?) parses the body when the media type — the
//     Content-Type up to its first ";" or ",", lower-cased
//     (lib/rack/media_type.rb) — is application/x-www-form-urlencoded,
//     multipart/form-data, multipart/related or multipart/mixed, or when a
//     POST has no Content-Type at all; a multipart part's name is the first
//     `;\s*name=` of its Content-Disposition, wherever it stands, else its
//     Content-ID (lib/rack/multipart.rb MULTIPART_CONTENT_DISPOSITION,
//     multipart/parser.rb get_current_head_and_filename_and_content_type_and_name_and_body).
//   - Symfony's Request::getMethod, with the method parameter override
//     that Laravel turns on, reads $request->request->get('_method') —
//     PHP's $_POST (urlencoded and multipart/form-data bodies, PHP's name
//     rules) — before the query's. Laravel's Request::createFromBase
//     replaces those parameters with the JSON body's top-level members
//     when the Content-Type contains "/json" or "+json" (isJson), so a
//     JSON POST's top-level "_method" is run too.
//
// So a POST that such an upstream would parse as a form, or Laravel as
// JSON, has its body read (up to MaxFormBody), and a field (a JSON
// object's top-level member) named "_method" under the rules of
// methodOverrideParam is refused, as the query parameter is. What is read
// is broader than any one framework reads (every multipart/* type, names
// in any case, both field separators): a request a framework could read
// differently from Go is refused, not guessed.

// formBodyWhat names a form or JSON body read for its "_method" field in
// refusals (413 when over MaxFormBody).
const formBodyWhat = "POST body (read for a \"_method\" field)"

// formKind is how a POST's body would be read as a form.
type formKind uint8

const (
	formNone formKind = iota
	formURLEncoded
	formMultipart
	formAmbiguous // several media types, one of them a form
	formJSON      // a Content-Type with "/json" or "+json" (Laravel's isJson)
)

// formKindOf classifies a POST by its Content-Type (the values of every
// Content-Type line, joined by ","): a POST without one is form data to
// Rack.
func formKindOf(contentType string) formKind {
	if strings.TrimSpace(contentType) == "" {
		return formURLEncoded
	}
	kind, n := formNone, 0
	for elem := range strings.SplitSeq(contentType, ",") {
		n++
		t, _, _ := strings.Cut(elem, ";")
		t = strings.TrimSpace(t)
		if i := strings.IndexAny(t, " \t"); i >= 0 {
			t = t[:i] // PHP takes the type up to the first ";", "," or space
		}
		switch {
		case strings.EqualFold(t, "application/x-www-form-urlencoded"):
			kind = formURLEncoded
		case hasFoldPrefix(t, "multipart/"):
			kind = formMultipart
		}
	}
	if n > 1 && kind != formNone {
		return formAmbiguous
	}
	if kind == formNone && isLaravelJSON(contentType) {
		return formJSON
	}
	return kind
}

// isLaravelJSON tells whether Laravel reads a body with this Content-Type
// as JSON parameters (Request::isJson: it contains "/json" or "+json";
// here in any case).
func isLaravelJSON(contentType string) bool {
	for i := 0; i+5 <= len(contentType); i++ {
		if c := contentType[i]; (c == '/' || c == '+') && strings.EqualFold(contentType[i+1:i+5], "json") {
			return true
		}
	}
	return false
}

// formContentType is the Content-Type of an HTTP request as formKindOf
// reads it (one line without allocating).
func formContentType(values []string) string {
	if len(values) == 1 {
		return values[0]
	}
	return strings.Join(values, ",")
}

// checkForm refuses a form body (Query.Form) that cannot be read as its
// Content-Type says, or one with a "_method" field (its size is the
// front-end's to bound: Verifier.MaxFormBody).
func checkForm(contentType string, body []byte) *InputError {
	kind := formKindOf(contentType)
	if kind != formJSON && kind != formAmbiguous && isLaravelJSON(contentType) {
		// A form type naming "/json" too: Laravel reads the body as JSON.
		if bad := checkJSONParams(body); bad != nil {
			return bad
		}
	}
	switch kind {
	case formURLEncoded:
		if formOverrideParam(string(body)) {
			return formOverrideError()
		}
	case formMultipart:
		return checkMultipart(contentType, body)
	case formJSON:
		return checkJSONParams(body)
	case formAmbiguous:
		return badInput("form body", "the Content-Type %q names several media types: frameworks read such a body differently (send one, so that its \"_method\" field, if any, can be refused)", truncate(contentType))
	}
	return nil
}

// checkJSONParams refuses a JSON object with a top-level member named
// "_method" (keys unescaped, as PHP's json_decode reads them; any of
// duplicates). A body that is no JSON object gives Laravel no parameters;
// one that Go cannot read is refused when it could spell the name (it
// holds "method" in any case, or a \u escape). Only bodies that could
// spell it are parsed at all.
func checkJSONParams(body []byte) *InputError {
	if !containsFold(body, "method") && !bytes.Contains(body, []byte(`\u`)) {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return badJSON(err)
	}
	if tok != json.Delim('{') {
		return nil
	}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return badJSON(err)
		}
		if k, _ := tok.(string); isOverrideKey(k) {
			return badInput("method", "a top-level \"_method\" member in a JSON body is refused: Laravel runs the POST as the method it names, not the one decided (send the method itself)")
		}
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return badJSON(err)
		}
	}
	if _, err := dec.Token(); err != nil {
		return badJSON(err)
	}
	return nil
}

func badJSON(err error) *InputError {
	return badInput("JSON body", "it cannot be read (%v) and may name a \"_method\" member, which Laravel would run as the method", err)
}

// containsFold tells whether b contains the lower-case ASCII word in any
// ASCII case.
func containsFold(b []byte, word string) bool {
	for i := 0; i+len(word) <= len(b); i++ {
		if b[i]|0x20 == word[0] && strings.EqualFold(string(b[i:i+len(word)]), word) {
			return true
		}
	}
	return false
}

func formOverrideError() *InputError {
	return badInput("method", "a \"_method\" field in a form body is refused: Rails (Rack::MethodOverride) and Laravel run the POST as the method it names, not the one decided (send the method itself)")
}

// checkMultipart reads every part of a multipart body.
func checkMultipart(contentType string, body []byte) *InputError {
	_, params, err := mime.ParseMediaType(contentType)
	if err != nil {
		return badInput("form body", "the multipart Content-Type cannot be read: %v", err)
	}
	boundary := params["boundary"]
	if boundary == "" {
		return badInput("form body", "the multipart Content-Type has no boundary")
	}
	if rack, php := looseBoundaries(contentType); rack != boundary || php != boundary {
		return badInput("form body", "the multipart boundary %q is read differently by Rack (%q) or PHP (%q)", truncate(boundary), truncate(rack), truncate(php))
	}
	if strayDelimiter(body, boundary) {
		return badInput("form body", "the multipart boundary appears in the body other than as a delimiter line: parsers split such a body differently")
	}
	if bad := checkRackHeads(body, boundary); bad != nil {
		return bad
	}
	mr := multipart.NewReader(bytes.NewReader(body), boundary)
	for parts := 0; ; parts++ {
		p, err := mr.NextRawPart()
		if errors.Is(err, io.EOF) && parts > 0 {
			return nil
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = errors.New("no part")
			}
			return badInput("form body", "the multipart body cannot be read: %v", err)
		}
		if bad := checkPartNames(p.Header); bad != nil {
			return bad
		}
		if _, err := io.Copy(io.Discard, p); err != nil {
			return badInput("form body", "the multipart body cannot be read: %v", err)
		}
	}
}

// checkPartNames refuses a part that Rack or PHP may name "_method": the
// name (and any `;\s*name=` in the raw value, as Rack's pattern finds one
// inside a quoted parameter, and every name as PHP reads one:
// phpDispNames) of every Content-Disposition, whatever its type, and
// every Content-ID.
func checkPartNames(h textproto.MIMEHeader) *InputError {
	for _, v := range h["Content-Disposition"] {
		for _, name := range phpDispNames(v) {
			if isOverrideFieldName(name) {
				return formOverrideError()
			}
		}
		_, ps, err := mime.ParseMediaType(v)
		if err != nil {
			return badInput("form body", "a multipart Content-Disposition cannot be read: %v", err)
		}
		if isOverrideFieldName(ps["name"]) {
			return formOverrideError()
		}
		for rest := v; ; {
			i := strings.IndexByte(rest, ';')
			if i < 0 {
				break
			}
			rest = strings.TrimLeft(rest[i+1:], " \t\r\n")
			if hasFoldPrefix(rest, "name=") && isOverrideFieldName(dispValue(rest[len("name="):])) {
				return formOverrideError()
			}
		}
	}
	for _, v := range h["Content-Id"] {
		if isOverrideFieldName(strings.TrimSpace(v)) {
			return formOverrideError()
		}
	}
	return nil
}

// phpDispNames are the values of every "name" parameter of a
// Content-Disposition as PHP reads them (main/rfc1867.c: the value split
// at ";" outside '…' and "…" by php_ap_getword, a pair's key up to its
// first "=", any case, then php_ap_getword_conf: a value in single or
// double quotes up to its closing quote, \\ and \<quote> unescaped,
// else up to a space; PHP keeps the last). mime.ParseMediaType reads
// name='_method' as the token "'_method'"; PHP as the field "_method".
func phpDispNames(v string) (names []string) {
	cd := strings.TrimLeft(v, phpSpace)
	for cd != "" {
		var pair string
		pair, cd = phpGetword(cd, ';')
		cd = strings.TrimLeft(cd, phpSpace)
		if !strings.Contains(pair, "=") {
			continue
		}
		key, val := phpGetword(pair, '=')
		if strings.EqualFold(key, "name") {
			names = append(names, phpGetwordConf(val))
		}
	}
	return names
}

// phpSpace is C's isspace.
const phpSpace = " \t\n\v\f\r"

// phpGetword is PHP's php_ap_getword: s up to the first stop byte outside
// quotes (a backslash escaping the quote), and the rest after the run of
// stop bytes there.
func phpGetword(s string, stop byte) (word, rest string) {
	pos := 0
	for pos < len(s) && s[pos] != stop {
		if q := s[pos]; q == '"' || q == '\'' {
			pos++
			for pos < len(s) && s[pos] != q {
				if s[pos] == '\\' && pos+1 < len(s) && s[pos+1] == q {
					pos += 2
				} else {
					pos++
				}
			}
			if pos < len(s) {
				pos++
			}
		} else {
			pos++
		}
	}
	if pos >= len(s) {
		return s, ""
	}
	word = s[:pos]
	for pos < len(s) && s[pos] == stop {
		pos++
	}
	return word, s[pos:]
}

// phpGetwordConf is PHP's php_ap_getword_conf with substring_conf.
func phpGetwordConf(s string) string {
	s = strings.TrimLeft(s, phpSpace)
	var quote byte
	if s != "" && (s[0] == '"' || s[0] == '\'') {
		quote, s = s[0], s[1:]
	} else if end := strings.IndexAny(s, phpSpace); end >= 0 {
		s = s[:end]
	}
	if strings.IndexByte(s, '\\') < 0 {
		if end := strings.IndexByte(s, quote); quote != 0 && end >= 0 {
			return s[:end]
		}
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s) && (quote == 0 || s[i] != quote); i++ {
		if s[i] == '\\' && i+1 < len(s) && (s[i+1] == '\\' || (quote != 0 && s[i+1] == quote)) {
			i++
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// Rack 2.2's patterns for a part's name (lib/rack/multipart.rb
// MULTIPART_CONTENT_DISPOSITION, then MULTIPART_CONTENT_ID), searched in
// the part's raw head, inside any header's value too; \s is Ruby's.
var (
	rackDispositionName = regexp.MustCompile(`(?i)Content-Disposition:[^:]*;[ \t\r\n\f\v]*name=("(?:\\"|[^"])*"|[^ \t\r\n\f\v()<>,;:\\"/\[\]?=]+)`)
	rackContentID       = regexp.MustCompile(`(?i)Content-ID:[ \t\r\n\f\v]*([^\r\n]*)`)
)

// checkRackHeads reads every part's head as Rack 2.2 does
// (lib/rack/multipart/parser.rb): after a delimiter line, up to the first
// "\r\n\r\n" (@head_regex), where Go's textproto ends it at the first
// empty line ("\n\n" too). A head the two end at different places is
// refused (one would read as headers what the other reads as content);
// one in which Rack's patterns find a name "_method" — every match of
// either, not only the first — is refused. strayDelimiter has made sure
// every occurrence of the delimiter starts a delimiter line, so every
// head Rack reads starts after one of them.
func checkRackHeads(body []byte, boundary string) *InputError {
	delim := []byte("--" + boundary)
	for off := 0; ; {
		i := bytes.Index(body[off:], delim)
		if i < 0 {
			return nil
		}
		i += off + len(delim)
		off = i
		if bytes.HasPrefix(body[i:], []byte("--")) {
			continue // the close delimiter: no head after it
		}
		nl := bytes.IndexByte(body[i:], '\n')
		if nl < 0 {
			return nil // no head: Go's reader refuses it
		}
		start := i + nl + 1
		goEnd := goHeadEnd(body[start:])
		rackEnd := bytes.Index(body[start:], []byte("\r\n\r\n"))
		if rackEnd >= 0 {
			rackEnd += 4
		}
		if goEnd != rackEnd {
			return badInput("form body", "a multipart part's head ends at another place for Rack (at the first CRLF CRLF) than for Go (at the first empty line): they would read different parts")
		}
		if rackEnd < 0 {
			continue // neither ends it: Go's reader refuses the body
		}
		head := body[start : start+rackEnd-2]
		for _, m := range rackDispositionName.FindAllSubmatch(head, -1) {
			if v := string(m[1]); isOverrideFieldName(v) || isOverrideFieldName(rackDequote(v)) {
				return formOverrideError()
			}
		}
		if !containsFold(head, "content-id:") {
			continue
		}
		for _, m := range rackContentID.FindAllSubmatch(head, -1) {
			if isOverrideFieldName(string(m[1])) || isOverrideFieldName(strings.TrimSpace(string(m[1]))) {
				return formOverrideError()
			}
		}
	}
}

// goHeadEnd is where Go's textproto ends a MIME head that starts b: after
// its first empty line ("\n" or "\r\n"); -1 without one.
func goHeadEnd(b []byte) int {
	for pos := 0; ; {
		switch {
		case bytes.HasPrefix(b[pos:], []byte("\n")):
			return pos + 1
		case bytes.HasPrefix(b[pos:], []byte("\r\n")):
			return pos + 2
		}
		nl := bytes.IndexByte(b[pos:], '\n')
		if nl < 0 {
			return -1
		}
		pos += nl + 1
	}
}

// rackDequote is Rack::Auth::Digest::Params.dequote: the quotes around a
// value (on one line) removed, then every backslash escape undone.
func rackDequote(v string) string {
	if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' && !strings.Contains(v[1:len(v)-1], "\n") {
		v = v[1 : len(v)-1]
	}
	if strings.IndexByte(v, '\\') < 0 {
		return v
	}
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		if v[i] == '\\' && i+1 < len(v) && v[i+1] != '\n' {
			i++
		}
		b.WriteByte(v[i])
	}
	return b.String()
}

// dispValue reads a parameter value as Rack's VALUE pattern does: a
// quoted string (its quotes removed) or a token.
func dispValue(s string) string {
	if strings.HasPrefix(s, `"`) {
		if end := strings.IndexByte(s[1:], '"'); end >= 0 {
			return s[1 : 1+end]
		}
		return s[1:]
	}
	if end := strings.IndexAny(s, " \t;\","); end >= 0 {
		return s[:end]
	}
	return s
}

// isOverrideFieldName tells whether a multipart field name, as sent or
// URL-decoded, is "_method" under isOverrideKey's rules.
func isOverrideFieldName(name string) bool {
	return name != "" && (isOverrideKey(name) || isOverrideKey(lenientUnescape(name)))
}

// formOverrideParam is methodOverrideParam for a urlencoded body, with
// isOverrideKey's rules: fields split on "&" and ";", names URL-decoded.
func formOverrideParam(body string) bool { return overrideParam(body, isOverrideKey) }

// isOverrideKey tells whether a decoded field name is "_method" as PHP
// reads names (isOverrideName) or as Rack 2.2 does: normalize_params
// (lib/rack/query_parser.rb) takes /\A[\[\]]*([^\[\]]+)\]*/ of it — leading
// brackets dropped, cut at the next bracket — so "[_method]", "]_method",
// "[]_method" and "_method]" are "_method" to Rack::MethodOverride.
func isOverrideKey(k string) bool {
	return isOverrideName(k) || isOverrideName(rackParamName(k))
}

// rackParamName is the top-level name Rack's normalize_params gives k.
func rackParamName(k string) string {
	k = strings.TrimLeft(k, "[]")
	if i := strings.IndexAny(k, "[]"); i >= 0 {
		k = k[:i]
	}
	return k
}

// looseBoundaries are the boundary of a multipart Content-Type as Rack
// (lib/rack/multipart.rb MULTIPART: the first "boundary" in any case,
// then "=", an optional quote and the bytes up to `"`, ";" or ",") and PHP
// (main/rfc1867.c: the first "boundary", else the first in any case, the
// first "=" after it, then a quoted string or the bytes up to "," or ";")
// read it; "" when they find none.
func looseBoundaries(contentType string) (rack, php string) {
	folded := strings.Index(strings.ToLower(contentType), "boundary")
	if folded < 0 {
		return "", ""
	}
	if after := contentType[folded+len("boundary"):]; strings.HasPrefix(after, "=") {
		v := strings.TrimPrefix(after[1:], `"`)
		if end := strings.IndexAny(v, "\";,"); end >= 0 {
			v = v[:end]
		}
		rack = v
	}
	i := strings.Index(contentType, "boundary")
	if i < 0 {
		i = folded
	}
	if j := strings.IndexByte(contentType[i:], '='); j >= 0 {
		v := contentType[i+j+1:]
		if strings.HasPrefix(v, `"`) {
			if end := strings.IndexByte(v[1:], '"'); end >= 0 {
				php = v[1 : 1+end]
			}
		} else if end := strings.IndexAny(v, ",;"); end >= 0 {
			php = v[:end]
		} else {
			php = v
		}
	}
	return rack, php
}

// strayDelimiter finds an occurrence of "--"+boundary in body that is not
// a delimiter line as Go reads one (at a line's start, followed by "--",
// or by spaces and a line break), or one after the close delimiter. Rack
// and PHP end a part at such an occurrence where Go does not (PHP looks
// for "\n--boundary" alone), so a part could be hidden from Go in
// another's content; RFC 2046 forbids the boundary in any content. Once
// the first delimiter line ends with CRLF, Go ends a part only at
// "\r\n--boundary", so a later occurrence after a bare LF is stray too
// (PHP ends the part there: a part hidden from Go).
func strayDelimiter(body []byte, boundary string) bool {
	delim := "--" + boundary
	closed, crlf := false, false
	for off, n := 0, 0; ; n++ {
		i := bytes.Index(body[off:], []byte(delim))
		if i < 0 {
			return false
		}
		i += off
		if closed || (i > 0 && body[i-1] != '\n') || (crlf && (i < 2 || body[i-2] != '\r')) {
			return true
		}
		rest := body[i+len(delim):]
		if bytes.HasPrefix(rest, []byte("--")) {
			closed = true
		} else {
			rest = bytes.TrimLeft(rest, " \t")
			if !bytes.HasPrefix(rest, []byte("\r\n")) && !bytes.HasPrefix(rest, []byte("\n")) {
				return true
			}
			if n == 0 {
				crlf = rest[0] == '\r'
			}
		}
		off = i + len(delim)
	}
}

// requestContentType is the Content-Type of r as formKindOf reads it.
func requestContentType(r *Request) string {
	if v, ok := r.HeaderMap["content-type"]; ok {
		return v
	}
	if vs, ok := r.Headers["Content-Type"]; ok {
		return formContentType(vs)
	}
	for k, vs := range r.Headers {
		if strings.EqualFold(k, "Content-Type") {
			return formContentType(vs)
		}
	}
	return ""
}
