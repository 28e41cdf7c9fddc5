package httpsig

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/dunglas/httpsfv"
)

// Message is what a signature covers: a request (Method, TargetURI,
// Header) or a response (Status, Header). TargetURI is the absolute
// target URI as the request was sent: scheme, authority as in the Host
// header, and the request-target exactly as on the wire.
type Message struct {
	Method    string
	TargetURI string
	Status    int
	Header    http.Header
}

// Params are a signature's parameters (RFC 9421 §2.3). Zero values are
// absent: Created and Expires are Unix seconds.
type Params struct {
	Created, Expires int64
	Nonce, KeyID     string
	Alg, Tag         string
}

// Input is one signature's covered components and parameters: the value
// of its Signature-Input member.
type Input struct {
	Components httpsfv.InnerList
}

// NewInput is the Input covering components (identifiers such as
// "@method" or "content-digest", lower-case) with p.
func NewInput(components []string, p Params) Input {
	il := httpsfv.InnerList{Params: httpsfv.NewParams()}
	for _, c := range components {
		il.Items = append(il.Items, httpsfv.NewItem(c))
	}
	add := func(k string, v any, ok bool) {
		if ok {
			il.Params.Add(k, v)
		}
	}
	add("created", p.Created, p.Created != 0)
	add("expires", p.Expires, p.Expires != 0)
	add("nonce", p.Nonce, p.Nonce != "")
	add("keyid", p.KeyID, p.KeyID != "")
	add("alg", p.Alg, p.Alg != "")
	add("tag", p.Tag, p.Tag != "")
	return Input{Components: il}
}

// String is the serialized inner list: the @signature-params value.
func (in Input) String() string {
	s, err := httpsfv.Marshal(httpsfv.List{in.Components})
	if err != nil {
		return ""
	}
	return s
}

// Covers reports whether in covers the component identifier c (without
// component parameters).
func (in Input) Covers(c string) bool {
	for _, it := range in.Components.Items {
		if name, ok := it.Value.(string); ok && name == c && len(it.Params.Names()) == 0 {
			return true
		}
	}
	return false
}

// Params reads the signature parameters, checking their types.
func (in Input) Params() (Params, error) {
	var p Params
	ps := in.Components.Params
	if ps == nil {
		return p, nil
	}
	for _, k := range ps.Names() {
		v, _ := ps.Get(k)
		var ok bool
		switch k {
		case "created":
			p.Created, ok = v.(int64)
		case "expires":
			p.Expires, ok = v.(int64)
		case "nonce":
			p.Nonce, ok = v.(string)
		case "keyid":
			p.KeyID, ok = v.(string)
		case "alg":
			p.Alg, ok = v.(string)
		case "tag":
			p.Tag, ok = v.(string)
		default:
			ok = true // other parameters are covered by @signature-params, not interpreted
		}
		if !ok {
			return p, fail(ReasonMalformed, "parameter %s has the wrong type", k)
		}
	}
	return p, nil
}

// Base is the signature base of m for in (RFC 9421 §2.5): one line per
// covered component, then the @signature-params line.
func Base(m *Message, in Input) ([]byte, error) {
	var b strings.Builder
	seen := make(map[string]bool, len(in.Components.Items))
	for _, it := range in.Components.Items {
		id, err := httpsfv.Marshal(it)
		if err != nil {
			return nil, fail(ReasonMalformed, "component identifier: %v", err)
		}
		if seen[id] {
			return nil, fail(ReasonMalformed, "component %s is listed twice", id)
		}
		seen[id] = true
		v, err := m.component(it)
		if err != nil {
			return nil, err
		}
		b.WriteString(id)
		b.WriteString(": ")
		b.WriteString(v)
		b.WriteByte('\n')
	}
	b.WriteString(`"@signature-params": `)
	b.WriteString(in.String())
	return []byte(b.String()), nil
}

// component is the value of one covered component.
func (m *Message) component(it httpsfv.Item) (string, error) {
	name, ok := it.Value.(string)
	if !ok {
		return "", fail(ReasonMalformed, "a component identifier is not a string")
	}
	params := it.Params.Names()
	if name == "@query-param" {
		if len(params) != 1 || params[0] != "name" {
			return "", fail(ReasonMalformed, "@query-param takes exactly the name parameter")
		}
		n, _ := it.Params.Get("name")
		s, ok := n.(string)
		if !ok {
			return "", fail(ReasonMalformed, "@query-param name is not a string")
		}
		return m.queryParam(s)
	}
	if len(params) > 0 {
		return "", fail(ReasonMalformed, "component %s: parameters %v are not supported", name, params)
	}
	if strings.HasPrefix(name, "@") {
		return m.derived(name)
	}
	if name != strings.ToLower(name) || name == "" {
		return "", fail(ReasonMalformed, "field name %q is not lower-case", name)
	}
	vals := m.Header.Values(name)
	if len(vals) == 0 {
		return "", fail(ReasonComponents, "covered field %s is not in the message", name)
	}
	return fieldValue(vals), nil
}

// fieldValue combines field lines (RFC 9421 §2.1): each trimmed, obs-fold
// replaced, joined with ", ".
func fieldValue(vals []string) string {
	if len(vals) == 1 && !strings.ContainsAny(vals[0], "\r\n") && strings.TrimSpace(vals[0]) == vals[0] {
		return vals[0]
	}
	out := make([]string, len(vals))
	for i, v := range vals {
		v = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(v)
		out[i] = strings.Trim(v, " \t")
	}
	return strings.Join(out, ", ")
}

// targetParts splits the target URI: scheme, authority, path, query
// (without "?"), and whether there was a query.
func (m *Message) targetParts() (scheme, authority, path, query string, hasQuery bool, err error) {
	scheme, rest, ok := strings.Cut(m.TargetURI, "://")
	if !ok || scheme == "" {
		return "", "", "", "", false, fail(ReasonMalformed, "target URI %q is not absolute", m.TargetURI)
	}
	i := strings.IndexAny(rest, "/?")
	if i < 0 {
		i = len(rest)
	}
	authority, pq := rest[:i], rest[i:]
	path, query, hasQuery = strings.Cut(pq, "?")
	if path == "" {
		path = "/"
	}
	return strings.ToLower(scheme), strings.ToLower(authority), path, query, hasQuery, nil
}

func (m *Message) derived(name string) (string, error) {
	if name == "@status" {
		if m.Status == 0 {
			return "", fail(ReasonComponents, "@status in a request")
		}
		return strconv.Itoa(m.Status), nil
	}
	if name == "@method" {
		return m.Method, nil
	}
	if name == "@target-uri" {
		return m.TargetURI, nil
	}
	scheme, authority, path, query, hasQuery, err := m.targetParts()
	if err != nil {
		return "", err
	}
	switch name {
	case "@scheme":
		return scheme, nil
	case "@authority":
		return authority, nil
	case "@path":
		return path, nil
	case "@query":
		return "?" + query, nil
	case "@request-target":
		if hasQuery {
			return path + "?" + query, nil
		}
		return path, nil
	}
	return "", fail(ReasonMalformed, "derived component %s is not supported", name)
}

func (m *Message) queryParam(name string) (string, error) {
	_, _, _, query, _, err := m.targetParts()
	if err != nil {
		return "", err
	}
	vals, err := url.ParseQuery(query)
	if err != nil {
		return "", fail(ReasonMalformed, "query: %v", err)
	}
	v, ok := vals[name]
	switch {
	case !ok:
		return "", fail(ReasonComponents, "query parameter %q is not in the target URI", name)
	case len(v) > 1:
		return "", fail(ReasonMalformed, "query parameter %q is repeated", name)
	}
	return url.QueryEscape(v[0]), nil
}
