package svid_test

import (
	"crypto/x509/pkix"
	"encoding/json"
	"slices"
	"testing"

	"github.com/agentid/agentid/svid"
)

// FuzzParse: the JSON decoder never panics, accepts only what
// encoding/json reads as the same values, and whatever it accepts re-encodes
// canonically to something it accepts as the same claims. Seeds live in
// testdata/fuzz/FuzzParse; `make fuzz` runs it longer.
func FuzzParse(f *testing.F) {
	good, _ := researcher().MarshalJSON()
	f.Add(good)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := svid.Parse(data)
		if err != nil {
			return
		}
		var ref struct {
			Agent, Task, Model, Prompt, Principal string
			Scope, Chain                          []string
		}
		if err := json.Unmarshal(data, &ref); err != nil {
			t.Fatalf("accepted what encoding/json rejects (%v): %q", err, data)
		}
		if ref.Agent != c.Agent || ref.Principal != c.Principal || !slices.Equal(ref.Scope, c.Scope) || !slices.Equal(ref.Chain, c.Chain) {
			t.Fatalf("decoded differently from encoding/json: %+v vs %+v", c, ref)
		}
		again, err := svid.Parse(c.AppendJSON(nil))
		if err != nil {
			t.Fatalf("canonical form of accepted input rejected: %v", err)
		}
		if !again.Equal(c) {
			t.Fatalf("round trip changed the claims: %+v vs %+v", again, c)
		}
	})
}

// FuzzDecodeExtension: the DER decoder never panics and accepted values
// round-trip through Extension.
func FuzzDecodeExtension(f *testing.F) {
	ext, _ := researcher().Extension(nil)
	f.Add(ext.Value)
	f.Fuzz(func(t *testing.T, value []byte) {
		c, err := svid.DecodeExtension(pkix.Extension{Id: svid.DefaultOID, Value: value})
		if err != nil {
			return
		}
		back, err := c.Extension(nil)
		if err != nil {
			t.Fatalf("accepted claims cannot be re-encoded: %v", err)
		}
		if _, err := svid.DecodeExtension(back); err != nil {
			t.Fatalf("re-encoded extension rejected: %v", err)
		}
	})
}

// FuzzFromSelectors: selector parsing never panics.
func FuzzFromSelectors(f *testing.F) {
	f.Add("task:T\x00agent:a\x00depth:0")
	f.Fuzz(func(t *testing.T, joined string) {
		var values []string
		start := 0
		for i := 0; i < len(joined); i++ {
			if joined[i] == 0 {
				values = append(values, joined[start:i])
				start = i + 1
			}
		}
		values = append(values, joined[start:])
		if c, err := svid.FromSelectors(values, deadline); err == nil {
			if _, err := svid.FromSelectors(c.Selectors(), deadline); err != nil {
				t.Fatalf("selectors of accepted claims rejected: %v", err)
			}
		}
	})
}
