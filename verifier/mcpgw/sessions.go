package mcpgw

import (
	"sync"
	"time"

	"github.com/agentid/agentid/verifier"
)

// maxSessions bounds the sessions the gateway remembers, all peers
// together; when it is reached, the oldest session of the peer holding the
// most is forgotten (its client gets 404 and starts a new one).
// Config.MaxSessionsPerTask bounds one peer's.
var maxSessions = 1 << 16 // a variable for tests (export_test.go)

// DefaultMaxSessionsPerTask is the default of Config.MaxSessionsPerTask.
const DefaultMaxSessionsPerTask = 256

// sessions binds each upstream session (Mcp-Session-Id) to the peer that
// opened it: the upstream sees only the gateway, so it cannot tell
// agents apart, and a session id is no credential. A peer (SPIFFE ID and
// task) opening more than perPeer sessions forgets its own oldest first,
// so that one task cannot push the others' sessions out.
type sessions struct {
	// onForget, when set, is called (without mu held) with the sessions
	// that bind forgot to make room: the gateway ends them upstream.
	onForget func(sids []string)

	mu  sync.Mutex
	now func() time.Time
	// idle forgets sessions without a request or a stream for that long
	// (0: never); swept at most every idle/16 by the requests.
	idle      time.Duration
	nextSweep time.Time
	perPeer   int
	seq       uint64
	owner     map[string]binding
	byPeer    map[string]*peerSessions
}

type binding struct {
	peer string
	seq  uint64 // the binding's, telling a rebound id from its earlier binding
	// last use and the requests in flight (streams open), with idle only
	last   time.Time
	active int
}

type bound struct {
	sid string
	seq uint64
}

// peerSessions is one peer's bindings in order (may hold dropped ones)
// and how many are live.
type peerSessions struct {
	order []bound
	live  int
}

func newSessions(perPeer int) *sessions {
	if perPeer <= 0 {
		perPeer = DefaultMaxSessionsPerTask
	}
	return &sessions{perPeer: perPeer, now: time.Now, owner: map[string]binding{}, byPeer: map[string]*peerSessions{}}
}

func peerKey(p *verifier.Peer) string { return p.ID().String() + "\x00" + p.Task() }

// owns reports whether the request's session (none: true) is the peer's.
func (s *sessions) owns(sid string, p *verifier.Peer) bool {
	if sid == "" {
		return true
	}
	s.mu.Lock()
	if s.idle > 0 {
		return s.ownsIdle(sid, peerKey(p)) // idle.go
	}
	defer s.mu.Unlock()
	o, ok := s.owner[sid]
	return ok && o.peer == peerKey(p)
}

// bind records a session the upstream opened for p; false when the id is
// another peer's.
func (s *sessions) bind(sid string, p *verifier.Peer) bool {
	s.mu.Lock()
	ok, gone := s.bindLocked(sid, peerKey(p))
	s.mu.Unlock()
	if len(gone) > 0 && s.onForget != nil {
		s.onForget(gone)
	}
	return ok
}

// bindLocked is bind with s.mu held; gone are the sessions it forgot.
func (s *sessions) bindLocked(sid, k string) (ok bool, gone []string) {
	gone = s.sweepLocked() // idle.go
	if o, ok := s.owner[sid]; ok {
		return o.peer == k, gone
	}
	ps := s.byPeer[k]
	if ps == nil {
		ps = &peerSessions{}
		s.byPeer[k] = ps
	}
	for ps.live >= s.perPeer && len(ps.order) > 0 { // the peer's own oldest first
		if s.forget(ps.order[0]) {
			gone = append(gone, ps.order[0].sid)
		}
		ps.order = ps.order[1:]
	}
	for len(s.owner) >= maxSessions { // all tasks together: the heaviest task's oldest
		b, ok := s.forgetHeaviestLocked()
		if !ok {
			break
		}
		gone = append(gone, b)
	}
	ps.order = s.compact(ps.order, s.perPeer)
	s.byPeer[k] = ps // again: forget drops a peer left without sessions
	s.seq++
	s.owner[sid] = binding{peer: k, seq: s.seq, last: s.idleNow()}
	ps.order = append(ps.order, bound{sid, s.seq})
	ps.live++
	return true, gone
}

// forgetHeaviestLocked forgets the oldest session of the task holding
// the most (s.mu held), so that when all tasks' sessions fill the table a
// task at or under its share never loses one to tasks holding more. The
// scan over the tasks runs only while the table is full.
func (s *sessions) forgetHeaviestLocked() (sid string, ok bool) {
	// the most sessions; among equals the one whose oldest is oldest, so
	// that the choice does not depend on map order
	var heavy *peerSessions
	var heavyOldest uint64
	for _, ps := range s.byPeer {
		if heavy != nil && ps.live < heavy.live {
			continue
		}
		oldest := s.oldestLocked(ps)
		if heavy == nil || ps.live > heavy.live || oldest < heavyOldest {
			heavy, heavyOldest = ps, oldest
		}
	}
	for heavy != nil && len(heavy.order) > 0 {
		b := heavy.order[0]
		heavy.order = heavy.order[1:]
		if s.forget(b) {
			return b.sid, true
		}
	}
	return "", false
}

// oldestLocked is the sequence number of ps's oldest live binding
// (dropping the ended ones in front of it).
func (s *sessions) oldestLocked(ps *peerSessions) uint64 {
	for len(ps.order) > 0 {
		b := ps.order[0]
		if o, ok := s.owner[b.sid]; ok && o.seq == b.seq {
			return b.seq
		}
		ps.order = ps.order[1:]
	}
	return ^uint64(0)
}

// forget ends the binding b, if it is still live (s.mu held); false when
// it had ended.
func (s *sessions) forget(b bound) bool {
	o, ok := s.owner[b.sid]
	if !ok || o.seq != b.seq {
		return false
	}
	delete(s.owner, b.sid)
	if ps := s.byPeer[o.peer]; ps != nil {
		if ps.live--; ps.live <= 0 {
			delete(s.byPeer, o.peer) // only ended bindings left
		}
	}
	return true
}

// compact drops the ended bindings from order once it holds more than
// twice max entries (s.mu held).
func (s *sessions) compact(order []bound, max int) []bound {
	if len(order) <= 2*max {
		return order
	}
	live := order[:0]
	for _, b := range order {
		if o, ok := s.owner[b.sid]; ok && o.seq == b.seq {
			live = append(live, b)
		}
	}
	return live
}

func (s *sessions) drop(sid string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if o, ok := s.owner[sid]; ok {
		s.forget(bound{sid, o.seq})
	}
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
