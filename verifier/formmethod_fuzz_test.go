package verifier

import (
	"bytes"
	"encoding/json"
	"mime"
	"mime/multipart"
	"testing"
)

// FuzzCheckForm: checkForm never panics, and a body it accepts becomes
// refused once a "_method" field is added to it — at the end of a
// urlencoded body, as a part right after a multipart body's first
// delimiter, as the first member of a JSON object; named as PHP or Rack
// reads names — so no accepted body hides its fields from the check. An
// accepted multipart body is read by Go as one part per delimiter
// occurrence (but the closing one): no part hidden in another's content.
func FuzzCheckForm(f *testing.F) {
	for _, s := range []struct{ ct, body string }{
		{"application/x-www-form-urlencoded", "a=1&b=2"},
		{"", "a=1;b"},
		{"multipart/form-data; boundary=XX", "--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n--XX--\r\n"},
		{"multipart/mixed; boundary=\"q r\"", "pre\r\n--q r\r\nContent-ID: a\r\n\r\nx\r\n--q r--\r\n"},
		{"multipart/form-data; boundary=XX", "--XX\nContent-Disposition: form-data; name=\"a\"; filename=\"f\"\n\nx\n--XX--"},
		{"multipart/form-data; boundary=zz", "--zz\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\n--zz\r\nContent-Disposition: form-data; name=\"b\"\r\n\r\ny\r\n--zz--\r\n"},
		{"multipart/form-data; boundary=zz", "--zz\r\nX-Note: x\n\nContent-Disposition: form-data; name=\"b\"\r\n\r\ny\r\n--zz--\r\n"},
		{"application/json", `{"a":{"_method":1},"m":"method"}`},
		{"application/vnd.x+json", ` {"\u0061":[1,"\u005f"]} `},
	} {
		f.Add(s.ct, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		if len(body) > 1<<16 {
			return
		}
		if checkForm(ct, body) != nil {
			return
		}
		switch formKindOf(ct) {
		case formURLEncoded:
			// PHP's and Rack's spellings of the name
			for _, name := range []string{"_method", ".method", "[_method]", "_method]", "%5B_method%5D"} {
				with := append(append([]byte{}, body...), "&"+name+"=DELETE"...)
				if checkForm(ct, with) == nil {
					t.Fatalf("%q with a %s field accepted", with, name)
				}
			}
		case formJSON:
			body = bytes.TrimLeft(body, " \t\r\n")
			if !json.Valid(body) || len(body) == 0 || body[0] != '{' {
				return
			}
			with := append([]byte(`{"_method":"DELETE",`), body[1:]...)
			if bytes.HasPrefix(bytes.TrimLeft(body[1:], " \t\r\n"), []byte("}")) {
				with = []byte(`{"_method":"DELETE"}`)
			}
			if checkForm(ct, with) == nil {
				t.Fatalf("%q with a _method member accepted", with)
			}
		case formMultipart:
			_, params, _ := mime.ParseMediaType(ct)
			delim := []byte("--" + params["boundary"])
			i := bytes.Index(body, delim)
			if i < 0 {
				t.Fatalf("an accepted multipart body without its delimiter: %q", body)
			}
			nl := bytes.IndexByte(body[i:], '\n')
			if nl < 0 || bytes.HasPrefix(body[i+len(delim):], []byte("--")) {
				return // closes at once: no part to add after
			}
			// Every occurrence of the delimiter starts a delimiter line
			// (PHP and Rack split there): Go reads one part fewer than
			// there are occurrences (the last closes), none hidden in
			// another's content.
			mr := multipart.NewReader(bytes.NewReader(body), params["boundary"])
			parts := 0
			for ; ; parts++ {
				if _, err := mr.NextRawPart(); err != nil {
					break
				}
			}
			if n := bytes.Count(body, delim); parts != n-1 {
				t.Fatalf("an accepted multipart body with %d delimiters read as %d parts: %q", n, parts, body)
			}
			at := i + nl + 1
			// PHP's and Rack's ways of naming a part
			for _, head := range []string{
				"Content-Disposition: form-data; name=\"_method\"",
				"Content-Disposition: form-data; name='_method'",
				"Content-Disposition: form-data; name=\"[_method]\"",
				"Content-ID: _method",
				"X-Note: Content-Disposition:; name=_method\r\nContent-Disposition: form-data; name=a",
			} {
				part := head + "\r\n\r\nDELETE\r\n" + string(delim) + "\r\n"
				with := append(append(append([]byte{}, body[:at]...), part...), body[at:]...)
				if checkForm(ct, with) == nil {
					t.Fatalf("%q with a _method part accepted", with)
				}
			}
		}
	})
}
