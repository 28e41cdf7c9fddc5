package svid_test

import (
	"encoding/json"
	"testing"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
)

func BenchmarkFromCertificate(b *testing.B) {
	ext, _ := researcher().Extension(nil)
	cert := testca.New(b, td, now).CreateX509SVID(selfID, testca.WithExtensions(ext)).Certificates[0]
	opt := svid.WithTime(now)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := svid.FromCertificate(cert, opt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkFromJWTClaims(b *testing.B) {
	raw, _ := json.Marshal(researcher().JWTClaims())
	var m map[string]any
	_ = json.Unmarshal(raw, &m)
	m["sub"] = selfID.String()
	opt := svid.WithTime(now)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := svid.FromJWTClaims(m, opt); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkParse(b *testing.B) {
	data, _ := researcher().MarshalJSON()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := svid.Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMarshalJSON(b *testing.B) {
	c := researcher()
	buf := make([]byte, 0, 512)
	b.ReportAllocs()
	for b.Loop() {
		buf = c.AppendJSON(buf[:0])
	}
}
