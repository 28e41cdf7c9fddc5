package mcpgw

import (
	"fmt"
	"testing"

	"github.com/agentid/agentid/svid"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// TestSessionsPerTaskCap: a peer over its cap forgets its own oldest
// session, never another peer's; the cap of all peers forgets the oldest
// of the peer holding the most; an id dropped and bound again is not forgotten by its earlier
// binding's place in the order.
func TestSessionsPerTaskCap(t *testing.T) {
	peer := func(task string) *verifier.Peer {
		p := verifier.NewPeer(spiffeid.RequireFromString("spiffe://example.org/agent/a/task/"+task), &svid.Claims{Task: task})
		return &p
	}
	a, b, c := peer("A"), peer("B"), peer("C")
	s := newSessions(3)
	s.bind("a1", a)
	for i := range 100 {
		if !s.bind(fmt.Sprint("b", i), b) {
			t.Fatal("bind")
		}
	}
	if !s.owns("a1", a) {
		t.Fatal("B's sessions pushed A's out")
	}
	for i := range 100 {
		if got, want := s.owns(fmt.Sprint("b", i), b), i >= 97; got != want {
			t.Fatalf("b%d: owned %v, want %v", i, got, want)
		}
	}
	if s.bind("a1", b) || s.owns("a1", b) {
		t.Fatal("B took A's session id")
	}
	if len(s.owner) != 4 || s.byPeer[peerKey(b)].live != 3 {
		t.Fatalf("%d sessions, B holds %d", len(s.owner), s.byPeer[peerKey(b)].live)
	}

	// dropped and bound again: b97's first place in B's order is stale
	s.drop("b97")
	s.bind("b97", b)
	s.bind("b100", b) // forgets b98, B's oldest live one, not b97
	if !s.owns("b97", b) || s.owns("b98", b) || !s.owns("b99", b) || !s.owns("b100", b) {
		t.Fatal("a stale entry of B's order forgot a live session")
	}

	// the cap of all peers: the oldest session of the peer holding the
	// most goes (B's b99), not the oldest of all (A's a1)
	defer func(n int) { maxSessions = n }(maxSessions)
	maxSessions = 5
	s.bind("c1", c)
	s.bind("c2", c) // 6 > 5
	if !s.owns("a1", a) || s.owns("b99", b) || !s.owns("b97", b) || !s.owns("c1", c) || !s.owns("c2", c) || len(s.owner) != 5 {
		t.Fatalf("global cap: %v", s.owner)
	}
	s.drop("a1")
	if _, ok := s.byPeer[peerKey(a)]; ok {
		t.Fatal("a peer without sessions is still remembered")
	}

	// a cap of one session: the peer's entry survives forgetting its last
	s1 := newSessions(1)
	s1.bind("x1", a)
	s1.bind("x2", a)
	s1.bind("x3", a)
	if s1.owns("x2", a) || !s1.owns("x3", a) || s1.byPeer[peerKey(a)].live != 1 {
		t.Fatal("cap of one")
	}
}
