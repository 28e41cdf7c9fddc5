package attestor

import (
	"strings"
	"testing"
)

// TestParseManifestAndRecordStrictKeys (review 19 #5): ParseManifest and
// ParseTaskRecord are documented as strict ("unknown keys ... are
// errors"); a repeated key or a key in another case is not the canonical
// form either and must be refused — otherwise two readers of one file
// (e.g. a tool that takes the first "incarnation", encoding/json the last)
// disagree on which incarnation it names.
func TestParseManifestAndRecordStrictKeys(t *testing.T) {
	claims, _ := testClaims().MarshalJSON()
	c := string(claims)
	other := strings.Repeat("ab", 16)
	inc := `"incarnation":"` + testIncarnation + `",`
	ns := `"user_ns":4026531837,"mnt_ns":4026531841,`
	// The canonical form parses: the refusals below are for the keys.
	if _, err := ParseManifest([]byte(`{"version":2,"pid":1,"start_time":1,` + ns + inc + `"claims":` + c + `}`)); err != nil {
		t.Fatalf("canonical manifest: %v", err)
	}
	if _, err := ParseTaskRecord([]byte(`{` + inc + `"claims":` + c + `}`)); err != nil {
		t.Fatalf("canonical task record: %v", err)
	}
	manifests := map[string]struct{ in, want string }{
		"repeated incarnation": {`{"version":2,"pid":1,"start_time":1,` + ns + inc + `"incarnation":"` + other + `","claims":` + c + `}`, `duplicate key "incarnation"`},
		"upper-case key":       {`{"VERSION":2,"PID":1,"Start_Time":1,"USER_NS":4026531837,"Mnt_NS":4026531841,"Incarnation":"` + testIncarnation + `","Claims":` + c + `}`, `must be spelled "claims"`},
		"one upper-case key":   {`{"version":2,"PID":1,"start_time":1,` + ns + inc + `"claims":` + c + `}`, `key "PID" must be spelled "pid"`},
		"repeated version":     {`{"version":1,"version":2,"pid":1,"start_time":1,` + ns + inc + `"claims":` + c + `}`, `duplicate key "version"`},
		"case-variant pair":    {`{"version":2,"pid":1,"Pid":2,"start_time":1,` + ns + inc + `"claims":` + c + `}`, `same key to case-insensitive readers`},
	}
	for name, tt := range manifests {
		if m, err := ParseManifest([]byte(tt.in)); err == nil {
			t.Errorf("manifest %s: ParseManifest accepted it (incarnation %s), want an error", name, m.Incarnation)
		} else if !strings.Contains(err.Error(), tt.want) {
			t.Errorf("manifest %s: %v, want %q", name, err, tt.want)
		}
	}
	records := map[string]string{
		"repeated incarnation": `{` + inc + `"incarnation":"` + other + `","claims":` + c + `}`,
		"upper-case key":       `{"INCARNATION":"` + testIncarnation + `","Claims":` + c + `}`,
	}
	for name, in := range records {
		if r, err := ParseTaskRecord([]byte(in)); err == nil {
			t.Errorf("record %s: ParseTaskRecord accepted it (incarnation %s), want an error", name, r.Incarnation)
		}
	}
}
