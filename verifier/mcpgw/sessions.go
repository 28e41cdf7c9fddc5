package mcpgw

import (
	"sync"

	"github.com/agentid/agentid/verifier"
)

// maxSessions bounds the sessions the gateway remembers; the oldest is
// forgotten first (its client gets 404 and starts a new one).
const maxSessions = 1 << 16

// sessions binds each upstream session (Mcp-Session-Id) to the peer that
// opened it: the upstream sees only the gateway, so it cannot tell
// agents apart, and a session id is no credential.
type sessions struct {
	mu    sync.Mutex
	owner map[string]string
	order []string // binding order, for eviction (may hold dropped ids)
}

func newSessions() *sessions { return &sessions{owner: map[string]string{}} }

func peerKey(p *verifier.Peer) string { return p.ID().String() + "\x00" + p.Task() }

// owns reports whether the request's session (none: true) is the peer's.
func (s *sessions) owns(sid string, p *verifier.Peer) bool {
	if sid == "" {
		return true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	o, ok := s.owner[sid]
	return ok && o == peerKey(p)
}

// bind records a session the upstream opened for p; false when the id is
// another peer's.
func (s *sessions) bind(sid string, p *verifier.Peer) bool {
	k := peerKey(p)
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.owner[sid]; ok {
		return o == k
	}
	for len(s.owner) >= maxSessions && len(s.order) > 0 {
		delete(s.owner, s.order[0])
		s.order = s.order[1:]
	}
	if len(s.order) > 2*maxSessions { // compact the dropped ids away
		live := s.order[:0]
		for _, id := range s.order {
			if _, ok := s.owner[id]; ok {
				live = append(live, id)
			}
		}
		s.order = live
	}
	s.owner[sid] = k
	s.order = append(s.order, sid)
	return true
}

func (s *sessions) drop(sid string) {
	s.mu.Lock()
	delete(s.owner, sid)
	s.mu.Unlock()
}

// maxToolNames bounds the remembered tool names of the upstream.
const maxToolNames = 1 << 14

// toolSet is the upstream's tool names seen in its lists: a call to a
// name not in it makes the gateway list the tools again before deciding.
type toolSet struct {
	mu    sync.RWMutex
	names map[string]struct{}
}

func (t *toolSet) has(name string) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	_, ok := t.names[name]
	return ok
}

func (t *toolSet) add(names []string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.names == nil || len(t.names)+len(names) > maxToolNames {
		t.names = make(map[string]struct{}, len(names))
	}
	for _, n := range names {
		if n != "" {
			t.names[n] = struct{}{}
		}
	}
}
