package svid_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/agentid/agentid/svid"
)

func asValidation(err error, target **svid.ValidationError) bool { return errors.As(err, target) }

func TestCanonicalJSONGolden(t *testing.T) {
	b, err := researcher().MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "claims.golden.json", b)

	root := researcher()
	root.Chain, root.Scope = nil, nil
	b, _ = root.MarshalJSON()
	golden(t, "claims-root.golden.json", b)
}

func TestJSONRoundTrip(t *testing.T) {
	c := researcher()
	c.Scope = []string{"kb:read", "tickets:write", "a!#$%&'()*+,-./"}
	c.Principal = "mailto:alice@example.org"
	b, _ := c.MarshalJSON()
	got, err := svid.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(c) {
		t.Fatalf("round trip:\n got %+v\nwant %+v", got, c)
	}
	again, _ := got.MarshalJSON()
	if string(again) != string(b) {
		t.Fatalf("re-encoding differs:\n%s\n%s", again, b)
	}
}

func TestParseAcceptsSpacingAndOrder(t *testing.T) {
	in := `{ "deadline": "2026-11-29T13:00:00+01:00", "chain": ["` + plannerID + `"],
	  "principal": "spiffe://example.org/user/alice", "scope": ["kb:read"], "prompt": "` + digest + `",
	  "model": "openai/gpt-4o", "task": "T-42", "agent": "researcher", "v": 1 }`
	got, err := svid.Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(researcher()) {
		t.Fatalf("got %+v", got)
	}
	if got.Deadline.Location().String() != "UTC" {
		t.Errorf("deadline not normalised to UTC: %v", got.Deadline)
	}
}

func TestParseRejects(t *testing.T) {
	good, _ := researcher().MarshalJSON()
	replace := func(old, new string) string { return strings.Replace(string(good), old, new, 1) }
	tests := []struct {
		name   string
		in     string
		reason svid.Reason
		detail string
	}{
		{"empty", ``, svid.ReasonMalformed, "EOF"},
		{"not an object", `[]`, svid.ReasonMalformed, `expected "{"`},
		{"truncated", string(good[:len(good)-3]), svid.ReasonMalformed, ""},
		{"trailing data", string(good) + `{}`, svid.ReasonMalformed, "trailing data"},
		{"invalid UTF-8", replace("alice", "al\xffice"), svid.ReasonMalformed, "UTF-8"},
		{"duplicate key", replace(`"task":"T-42"`, `"task":"T-42","task":"T-43"`), svid.ReasonMalformed, `duplicate key "task"`},
		{"unknown key", replace(`"v":1`, `"v":1,"admin":true`), svid.ReasonMalformed, `unknown key "admin"`},
		{"v as string", replace(`"v":1`, `"v":"1"`), svid.ReasonMalformed, `"v" must be a number`},
		{"v fractional", replace(`"v":1`, `"v":1.5`), svid.ReasonUnsupportedVersion, "not an integer"},
		{"v 2", replace(`"v":1`, `"v":2`), svid.ReasonUnsupportedVersion, `"v" is 2`},
		{"v missing", replace(`"v":1,`, ``), svid.ReasonUnsupportedVersion, "missing"},
		{"agent number", replace(`"agent":"researcher"`, `"agent":7`), svid.ReasonMalformed, `"agent" must be a string`},
		{"scope string", replace(`["kb:read"]`, `"kb:read"`), svid.ReasonMalformed, `"scope" must be an array`},
		{"scope null", replace(`["kb:read"]`, `null`), svid.ReasonMalformed, `"scope" must be an array`},
		{"scope entry number", replace(`["kb:read"]`, `[1]`), svid.ReasonMalformed, `"scope entry" must be a string`},
		{"deadline not RFC 3339", replace(`2026-11-29T12:00:00Z`, `tomorrow`), svid.ReasonInvalidField, "RFC 3339"},
		{"deadline number", replace(`"2026-11-29T12:00:00Z"`, `1796004904`), svid.ReasonMalformed, ""},
		{"bad agent charset", replace(`"agent":"researcher"`, `"agent":"re/searcher"`), svid.ReasonInvalidField, "agent"},
		{"task too long", replace(`"task":"T-42"`, `"task":"`+strings.Repeat("t", 129)+`"`), svid.ReasonInvalidField, "task"},
		{"bad prompt", replace(digest, "md5:abc"), svid.ReasonInvalidField, "prompt"},
		{"bad scope token", replace(`"kb:read"`, `"kb read"`), svid.ReasonInvalidField, "scope[0]"},
		{"repeated scope", replace(`["kb:read"]`, `["kb:read","kb:read"]`), svid.ReasonInvalidField, "repeated"},
		{"principal not URI", replace(`spiffe://example.org/user/alice`, `alice`), svid.ReasonInvalidField, "principal"},
		{"chain entry not task ID", replace(plannerID, `spiffe://example.org/user/bob`), svid.ReasonBadChainEntry, "chain[0]"},
		{"too many scopes", replace(`["kb:read"]`, `[`+strings.TrimSuffix(strings.Repeat(`"s",`, 65), ",")+`]`), svid.ReasonTooLarge, "more than 64"},
		{"chain too long", replace(`["`+plannerID+`"]`, `[`+strings.TrimSuffix(strings.Repeat(`"`+plannerID+`",`, 17), ",")+`]`), svid.ReasonTooLarge, "more than 16"},
		{"oversized", replace(`"kb:read"`, `"kb:read"`+strings.Repeat(" ", svid.MaxJSONSize)), svid.ReasonTooLarge, "bytes of JSON"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := svid.Parse([]byte(tc.in))
			wantReason(t, err, tc.reason)
			if !strings.Contains(err.Error(), tc.detail) {
				t.Errorf("error %q does not mention %q", err, tc.detail)
			}
			if !strings.HasPrefix(err.Error(), "svid: claims rejected: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

func TestCanonicalSizeLimit(t *testing.T) {
	c := researcher()
	c.Scope = nil
	for i := 0; i < svid.MaxScopes; i++ {
		c.Scope = append(c.Scope, strings.Repeat("s", 120)+string(rune('A'+i%26))+string(rune('a'+i/26)))
	}
	err := c.Check()
	wantReason(t, err, svid.ReasonTooLarge)
	if !strings.Contains(err.Error(), "canonical JSON") {
		t.Errorf("error %q", err)
	}
	// The computed size must equal the encoded size.
	c.Scope = c.Scope[:40]
	b, _ := c.MarshalJSON()
	if err := c.Check(); len(b) <= svid.MaxJSONSize && err != nil {
		t.Fatalf("%d bytes rejected: %v", len(b), err)
	}
}

func TestEscapingRoundTrip(t *testing.T) {
	c := researcher()
	c.Principal = `urn:x:"quoted"\back`
	b, _ := c.MarshalJSON()
	if !strings.Contains(string(b), `"principal":"urn:x:\"quoted\"\\back"`) {
		t.Fatalf("escaping: %s", b)
	}
	got, err := svid.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Principal != c.Principal {
		t.Fatalf("principal %q", got.Principal)
	}
}
