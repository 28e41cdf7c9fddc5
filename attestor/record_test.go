package attestor

import (
	"errors"
	"strings"
	"testing"
)

func TestTaskRecordRoundTrip(t *testing.T) {
	r := TaskRecord{Incarnation: testIncarnation, Claims: testClaims()}
	data, err := r.MarshalJSON()
	if err != nil {
		t.Fatal(err)
	}
	claims, _ := r.Claims.MarshalJSON()
	if want := `{"incarnation":"` + testIncarnation + `","claims":` + string(claims) + `}`; string(data) != want {
		t.Errorf("JSON = %s\nwant   %s", data, want)
	}
	got, err := ParseTaskRecord(data)
	if err != nil || got.Incarnation != r.Incarnation || !got.Claims.Equal(r.Claims) {
		t.Errorf("ParseTaskRecord = %+v, %v", got, err)
	}
}

// TestTaskRecordWithoutIncarnation: a bare claims object — the record
// format before incarnations — is refused with ErrNoIncarnation: launched
// without its entry's incarnation, the process would match no entry.
func TestTaskRecordWithoutIncarnation(t *testing.T) {
	claims, _ := testClaims().MarshalJSON()
	if _, err := ParseTaskRecord(claims); !errors.Is(err, ErrNoIncarnation) {
		t.Errorf("bare claims: %v, want ErrNoIncarnation", err)
	}
}

func TestParseTaskRecordErrors(t *testing.T) {
	claims, _ := testClaims().MarshalJSON()
	c := string(claims)
	tests := map[string]string{
		"not json":          `{`,
		"unknown key":       `{"incarnation":"` + testIncarnation + `","claims":` + c + `,"pid":1}`,
		"trailing data":     `{"incarnation":"` + testIncarnation + `","claims":` + c + `}{}`,
		"no incarnation":    `{"claims":` + c + `}`,
		"empty incarnation": `{"incarnation":"","claims":` + c + `}`,
		"upper incarnation": `{"incarnation":"` + strings.ToUpper(testIncarnation) + `","claims":` + c + `}`,
		"no claims":         `{"incarnation":"` + testIncarnation + `"}`,
		"bad claims":        `{"incarnation":"` + testIncarnation + `","claims":{"v":1}}`,
		"too large":         strings.Repeat(" ", MaxManifestSize+1),
	}
	for name, in := range tests {
		if r, err := ParseTaskRecord([]byte(in)); err == nil {
			t.Errorf("%s: ParseTaskRecord = %+v, want an error", name, r)
		}
	}
}

// FuzzParseTaskRecord: any bytes give a record or an error, never a panic,
// and an accepted record survives a round trip.
func FuzzParseTaskRecord(f *testing.F) {
	data, err := TaskRecord{Incarnation: testIncarnation, Claims: testClaims()}.MarshalJSON()
	if err != nil {
		f.Fatal(err)
	}
	f.Add(data)
	claims, _ := testClaims().MarshalJSON()
	f.Add(claims)
	f.Add([]byte(`{"incarnation":"x","claims":{"v":1}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		r, err := ParseTaskRecord(data)
		if err != nil {
			return
		}
		again, err := r.MarshalJSON()
		if err != nil {
			t.Fatal(err)
		}
		back, err := ParseTaskRecord(again)
		if err != nil || back.Incarnation != r.Incarnation || !back.Claims.Equal(r.Claims) {
			t.Fatalf("round trip of %s: %+v, %v", again, back, err)
		}
	})
}
