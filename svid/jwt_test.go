package svid_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
)

// viaJSON mimics a token's trip: claims map → JSON → generic map.
func viaJSON(t *testing.T, m map[string]any) map[string]any {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	var out map[string]any
	if err := json.Unmarshal(b, &out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestActRendersChainOutermostLast(t *testing.T) {
	c := researcher()
	c.Chain = []string{"spiffe://example.org/agent/root/task/R", plannerID}
	want := map[string]any{
		"sub": plannerID,
		"act": map[string]any{"sub": "spiffe://example.org/agent/root/task/R"},
	}
	if got := c.Act(); !reflect.DeepEqual(got, want) {
		t.Fatalf("act = %v, want %v", got, want)
	}
	c.Chain = nil
	if c.Act() != nil {
		t.Fatal("root task has an act claim")
	}
	if _, ok := c.JWTClaims()["act"]; ok {
		t.Fatal("root task's JWT claims have act")
	}
}

func TestJWTClaimsRoundTrip(t *testing.T) {
	for _, chain := range [][]string{nil, {plannerID}, {"spiffe://example.org/agent/root/task/R", plannerID}} {
		c := researcher()
		c.Chain = chain
		m := viaJSON(t, c.JWTClaims())
		m["sub"] = selfID.String()
		got, found, err := svid.FromJWTClaims(m, svid.WithTime(now))
		if err != nil || !found {
			t.Fatalf("chain %v: %v %v", chain, found, err)
		}
		if !got.Equal(c) {
			t.Fatalf("got %+v, want %+v", got, c)
		}
	}
}

func TestFromJWTClaimsNotATask(t *testing.T) {
	if _, found, err := svid.FromJWTClaims(map[string]any{"sub": "spiffe://example.org/web"}); found || err != nil {
		t.Fatalf("token without agentid claim: %v %v", found, err)
	}
}

func TestFromJWTClaimsRejects(t *testing.T) {
	base := func() map[string]any {
		m := viaJSON(t, researcher().JWTClaims())
		m["sub"] = selfID.String()
		return m
	}
	obj := func(m map[string]any) map[string]any { return m["agentid"].(map[string]any) }
	tests := []struct {
		name   string
		edit   func(m map[string]any)
		reason svid.Reason
	}{
		{"act missing", func(m map[string]any) { delete(m, "act") }, svid.ReasonActMismatch},
		{"act disagrees", func(m map[string]any) { m["act"] = map[string]any{"sub": "spiffe://example.org/agent/x/task/y"} }, svid.ReasonActMismatch},
		{"act deeper than chain", func(m map[string]any) {
			m["act"].(map[string]any)["act"] = map[string]any{"sub": "spiffe://example.org/agent/x/task/y"}
		}, svid.ReasonActMismatch},
		{"act on a root task", func(m map[string]any) { obj(m)["chain"] = []any{} }, svid.ReasonActMismatch},
		{"agentid not an object", func(m map[string]any) { m["agentid"] = "x" }, svid.ReasonMalformed},
		{"unknown key", func(m map[string]any) { obj(m)["admin"] = true }, svid.ReasonMalformed},
		{"v missing", func(m map[string]any) { delete(obj(m), "v") }, svid.ReasonUnsupportedVersion},
		{"v 2", func(m map[string]any) { obj(m)["v"] = 2.0 }, svid.ReasonUnsupportedVersion},
		{"v 1.5", func(m map[string]any) { obj(m)["v"] = 1.5 }, svid.ReasonUnsupportedVersion},
		{"v string", func(m map[string]any) { obj(m)["v"] = "1" }, svid.ReasonMalformed},
		{"scope wrong type", func(m map[string]any) { obj(m)["scope"] = "kb:read" }, svid.ReasonMalformed},
		{"scope entry wrong type", func(m map[string]any) { obj(m)["scope"] = []any{1.0} }, svid.ReasonMalformed},
		{"deadline as float (SPIRE re-encoding)", func(m map[string]any) { obj(m)["deadline"] = 1.796004904e+09 }, svid.ReasonMalformed},
		{"sub mismatch", func(m map[string]any) { m["sub"] = "spiffe://example.org/agent/researcher/task/other" }, svid.ReasonIDMismatch},
		{"sub not a SPIFFE ID", func(m map[string]any) { m["sub"] = "alice" }, svid.ReasonNotTaskID},
		{"expired", func(m map[string]any) { obj(m)["deadline"] = "2026-11-29T09:00:00Z" }, svid.ReasonExpired},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := base()
			tc.edit(m)
			_, found, err := svid.FromJWTClaims(m, svid.WithTime(now))
			if !found {
				t.Fatal("claims not found")
			}
			wantReason(t, err, tc.reason)
		})
	}
}

func TestFromJWTSVIDSignedToken(t *testing.T) {
	// go-jose checks iat and exp against the wall clock: issue at the real time.
	wall := time.Now()
	ca := testca.New(t, td, wall)
	c := researcher()
	c.Deadline = wall.Add(time.Hour).Truncate(time.Second).UTC()
	tok := ca.CreateJWTSVID(selfID, []string{"kb"}, c.JWTClaims())
	s, err := jwtsvid.ParseAndValidate(tok, ca.JWTBundle(), []string{"kb"})
	if err != nil {
		t.Fatal(err)
	}
	got, found, err := svid.FromJWTSVID(s, svid.WithTime(wall))
	if err != nil || !found || !got.Equal(c) {
		t.Fatalf("FromJWTSVID = %+v %v %v", got, found, err)
	}
	// The token as SPIRE would mint it for an ordinary workload.
	plain, _ := jwtsvid.ParseInsecure(ca.CreateJWTSVID(spiffeid.RequireFromString("spiffe://example.org/web"), []string{"kb"}, nil), []string{"kb"})
	if _, found, err := svid.FromJWTSVID(plain); found || err != nil {
		t.Fatalf("plain JWT-SVID: %v %v", found, err)
	}
	if !strings.Contains(tok, ".") {
		t.Fatal("not a compact JWS")
	}
}
