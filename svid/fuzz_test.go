package svid_test

import (
	"crypto/x509/pkix"
	"testing"

	"github.com/agentid/agentid/svid"
)

// FuzzParse: the JSON decoder never panics, and whatever it accepts
// re-encodes canonically to something it accepts as the same claims.
// Seeds live in testdata/fuzz/FuzzParse; `make fuzz` runs it longer.
func FuzzParse(f *testing.F) {
	good, _ := researcher().MarshalJSON()
	f.Add(good)
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := svid.Parse(data)
		if err != nil {
			return
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
