package verifier

import (
	"net/http"
	"strings"
	"testing"
)

// TestBodyHeadersRule: which Content-Type and Content-Encoding headers a
// decided body (MCP, form, JSON) may come with; every refusal is a 415.
func TestBodyHeadersRule(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers http.Header
		want    string // "" accepted, else a substring of the refusal
	}{
		{"none", http.Header{}, ""},
		{"application/json", http.Header{"Content-Type": {"application/json"}}, ""},
		{"charset=utf-8", http.Header{"Content-Type": {"application/json; charset=utf-8"}}, ""},
		{"charset=UTF-8 quoted", http.Header{"Content-Type": {`application/json; charset="UTF-8"`}}, ""},
		{"charset=Utf-8 no space", http.Header{"Content-Type": {"application/json;charset=Utf-8"}}, ""},
		{"other parameter", http.Header{"Content-Type": {"application/json; profile=x"}}, `parameter "profile" is refused`},
		// review 18: Jetty's charset scan ignores backslash escapes, so
		// it reads a charset inside what mime.ParseMediaType reads as a
		// quoted other parameter; Tomcat finds "charset=" anywhere
		{"Jetty: charset in an escaped quote (form)", http.Header{"Content-Type": {`application/x-www-form-urlencoded; x="\";charset=utf-16le;\""`}}, "refused"},
		{"Jetty: charset in an escaped quote (JSON)", http.Header{"Content-Type": {`application/json; x="\";charset=shift_jis;\""`}}, "refused"},
		{"Tomcat: xcharset", http.Header{"Content-Type": {"application/json; xcharset=utf-16le"}}, "refused"},
		{"Tomcat: charset= in a boundary", http.Header{"Content-Type": {`multipart/form-data; boundary="charset=utf-16le"`}}, `"charset" appears`},
		{"Tomcat: charset= in a quoted charset", http.Header{"Content-Type": {`application/json; charset="utf-8"; x="charset=utf-7"`}}, "refused"},
		{"backslash in a quoted charset", http.Header{"Content-Type": {`application/json; charset="utf\-8"`}}, "refused"},
		{"backslash in a quoted boundary", http.Header{"Content-Type": {`multipart/form-data; boundary="a\\b"`}}, "backslash"},
		{"boundary on JSON", http.Header{"Content-Type": {"application/json; boundary=x"}}, `parameter "boundary" is refused`},
		{"multipart with charset and boundary", http.Header{"Content-Type": {"multipart/form-data; charset=utf-8; boundary=----x"}}, ""},
		{"form", http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=UTF-8"}}, ""},
		{"multipart", http.Header{"Content-Type": {"multipart/form-data; boundary=x"}}, ""},
		{"identity", http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"identity"}}, ""},
		{"charset=utf-7", http.Header{"Content-Type": {"application/json; charset=utf-7"}}, `charset "utf-7" is refused`},
		{"charset=UTF-7 upper", http.Header{"Content-Type": {"application/json; CHARSET=UTF-7"}}, `charset "UTF-7" is refused`},
		{"charset=utf-16", http.Header{"Content-Type": {"application/json; charset=utf-16"}}, `charset "utf-16" is refused`},
		{"charset=utf-16le", http.Header{"Content-Type": {"application/json; charset=utf-16le"}}, `charset "utf-16le" is refused`},
		{"charset=utf8 alias", http.Header{"Content-Type": {"application/json; charset=utf8"}}, `charset "utf8" is refused`},
		{"charset=iso-8859-1 form", http.Header{"Content-Type": {"application/x-www-form-urlencoded; charset=iso-8859-1"}}, `charset "iso-8859-1" is refused`},
		{"charset empty quoted", http.Header{"Content-Type": {`application/json; charset=""`}}, `charset "" is refused`},
		{"two Content-Type headers", http.Header{"Content-Type": {"application/json", "application/json; charset=utf-7"}}, "sent 2 times"},
		{"two Content-Type keys", http.Header{"Content-Type": {"application/json"}, "content-type": {"application/json"}}, "sent 2 times"},
		{"two values on one line", http.Header{"Content-Type": {"application/json, application/json; charset=utf-7"}}, "cannot be read"},
		{"charset without value", http.Header{"Content-Type": {"application/json; charset"}}, "cannot be read"},
		{"charset= empty", http.Header{"Content-Type": {"application/json; charset="}}, "cannot be read"},
		{"duplicate charset", http.Header{"Content-Type": {"application/json; charset=utf-8; charset=utf-7"}}, "cannot be read"},
		{"unterminated quote", http.Header{"Content-Type": {`application/json; charset="utf-8`}}, "cannot be read"},
		{"no media type", http.Header{"Content-Type": {"; charset=utf-8"}}, "cannot be read"},
		{"empty value", http.Header{"Content-Type": {""}}, "cannot be read"},
		{"RFC 2231 charset", http.Header{"Content-Type": {"application/json; charset*=utf-8''utf-8"}}, "RFC 2231"},
		{"gzip", http.Header{"Content-Type": {"application/json"}, "Content-Encoding": {"gzip"}}, `Content-Encoding: "gzip" is refused`},
		{"identity then gzip", http.Header{"Content-Encoding": {"identity", "gzip"}}, `"gzip" is refused`},
		{"identity, br on one line", http.Header{"Content-Encoding": {"identity, br"}}, `"identity, br" is refused`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := checkBodyHeaders(tc.headers, nil)
			// ext_authz's map: one value per lower-case name (Envoy joins
			// repeated headers with ",")
			m := map[string]string{}
			for k, vs := range tc.headers {
				k = strings.ToLower(k)
				if m[k] != "" {
					m[k] += ","
				}
				m[k] += strings.Join(vs, ",")
			}
			errMap := checkBodyHeaders(nil, m)
			if tc.want == "" {
				if err != nil || errMap != nil {
					t.Fatalf("refused: %v / as ext_authz's map: %v", err, errMap)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want a refusal with %q", err, tc.want)
			}
			if errMap == nil {
				t.Fatalf("accepted as ext_authz's map %q", m)
			}
			r := &Result{Outcome: BadRequest, input: err.What}
			if r.HTTPStatus() != http.StatusUnsupportedMediaType {
				t.Fatalf("%v answered %d, want 415", err, r.HTTPStatus())
			}
		})
	}
}

// TestBodyHeadersNoAllocation: the common forms are checked without
// allocating.
func TestBodyHeadersNoAllocation(t *testing.T) {
	for _, h := range []http.Header{
		{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"}, "Authorization": {"Bearer x"}},
		{"Content-Type": {"application/json; charset=utf-8"}},
		{},
	} {
		if n := testing.AllocsPerRun(100, func() { checkBodyHeaders(h, nil) }); n != 0 {
			t.Fatalf("%v: %v allocations", h, n)
		}
	}
}

func BenchmarkBodyHeaders(b *testing.B) {
	for _, bc := range []struct{ name, ct string }{
		{"json", "application/json"},
		{"json-params", `application/json; charset="utf-8"`},
	} {
		h := http.Header{"Content-Type": {bc.ct}, "Accept": {"application/json, text/event-stream"}, "Authorization": {"Bearer x"}, "Mcp-Session-Id": {"s"}, "User-Agent": {"x"}}
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				checkBodyHeaders(h, nil)
			}
		})
	}
}
