package audit

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"time"
)

// The hand-written encoder must produce JSON that decodes to the same
// record, for every field and for awkward strings.
func TestAppendJSONRoundTrip(t *testing.T) {
	recs := []Record{
		{Seq: 1, Time: time.Date(2026, 11, 29, 10, 0, 0, 123456789, time.UTC), Type: TypeDecision, Prev: GenesisPrev},
		{
			Seq: 42, Time: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC), Type: TypeDecision,
			Peer: "spiffe://example.org/agent/a/task/t", Serial: "2a", JWTID: "j",
			Claims:  json.RawMessage(`{"v":1,"agent":"a"}`),
			Subject: &Entity{Type: "user", ID: "alice\"@x"}, Resource: &Entity{Type: "todo", ID: "t-1"},
			Action:   &Action{Kind: "http", Method: "GET", Path: "/kb/\"q\"\\\x01\xff/é", Name: "n"},
			Decision: "deny", Rules: []string{"r1 (a.hcl:1)", "r2 (b.hcl:2)"}, Reason: "line1\nline2\t<&>",
			PolicyDigest: "sha256:00", Signer: "spiffe://example.org/v", Chain: [][]byte{{1, 2, 3}, {4}},
			Signature: []byte{0xff, 0}, Prev: "sha256:11",
			AgentSig: &AgentSignature{Label: "agentid", Base: "\"@method\": POST\n\"@signature-params\": (\"@method\")", Sig: []byte{1, 2},
				Input: "agentid=(\"@method\")", Value: "agentid=:AQI=:", Body: []byte("{\"a\":1}")},
		},
		{Seq: 7, Time: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC), Type: TypeSegment, Origin: "agentid-audit/00",
			Tree: [][]byte{bytes.Repeat([]byte{1}, 32), bytes.Repeat([]byte{2}, 32)}, Prev: "sha256:22"},
		{Seq: 2, Time: time.Date(2026, 11, 29, 10, 0, 0, 0, time.UTC), Type: TypeDecision, Prev: GenesisPrev,
			AgentSig: &AgentSignature{Input: "garbled"}},
	}
	for _, rec := range recs {
		enc := rec.appendJSON(nil)
		var got Record
		dec := json.NewDecoder(bytes.NewReader(enc))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&got); err != nil {
			t.Fatalf("%s: %v", enc, err)
		}
		want := rec
		if want.Action != nil && want.Action.Path != "" {
			a := *want.Action
			a.Path = "/kb/\"q\"\\\x01\ufffd/é" // invalid UTF-8 becomes U+FFFD
			want.Action = &a
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("round trip\n got %+v\nwant %+v\n%s", got, want, enc)
		}
	}
}

// TestPeerFieldsEncodeAlike: a record whose peer fields come from
// PeerFields (encoded once) is the same bytes as one encoded field by
// field, for awkward and empty values, and a record changed after SetPeer
// is encoded as it is now, not as the PeerFields were.
func TestPeerFieldsEncodeAlike(t *testing.T) {
	when := time.Date(2026, 12, 7, 3, 0, 0, 1, time.UTC)
	claims := json.RawMessage(`{"v":1,"agent":"a","scope":["x"]}`)
	peers := []struct {
		id, serial, jwtID string
		claims            json.RawMessage
	}{
		{"spiffe://example.org/agent/a/task/t", "2a", "", claims},
		{"spiffe://example.org/agent/a/task/t", "", "jti-\"1\"\\\x01\xff", nil},
		{"", "", "", nil},
		{"spiffe://example.org/é/\u2028", "ff", "j", json.RawMessage(`{}`)},
	}
	for i, p := range peers {
		pf := NewPeerFields(p.id, p.serial, p.jwtID, p.claims)
		base := Record{Seq: uint64(i + 1), Time: when, Type: TypeDecision, Action: &Action{Kind: "http", Method: "GET", Path: "/x"},
			Decision: "allow", Rules: []string{"r (a.hcl:1)"}, PolicyDigest: "sha256:00", Frontend: "http", Prev: GenesisPrev}
		plain := base
		plain.Peer, plain.Serial, plain.JWTID, plain.Claims = p.id, p.serial, p.jwtID, p.claims
		fast := base
		fast.SetPeer(pf)
		if got, want := fast.appendJSON(nil), plain.appendJSON(nil); !bytes.Equal(got, want) {
			t.Fatalf("peer %d:\n got %s\nwant %s", i, got, want)
		}
		// Changed after SetPeer: each field in turn.
		for j, change := range []func(r *Record){
			func(r *Record) { r.Peer = "spiffe://example.org/other" },
			func(r *Record) { r.Serial = "1" },
			func(r *Record) { r.JWTID = "other" },
			func(r *Record) { r.Claims = json.RawMessage(`{"v":2}`) },
			func(r *Record) { r.Claims = nil },
		} {
			changed, want := fast, plain
			change(&changed)
			change(&want)
			if got, want := changed.appendJSON(nil), want.appendJSON(nil); !bytes.Equal(got, want) {
				t.Fatalf("peer %d, change %d:\n got %s\nwant %s", i, j, got, want)
			}
		}
	}
}
