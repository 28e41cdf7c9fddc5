package mcpgw

import "time"

// ownsIdle is owns with an idle timeout (s.mu held; released here): the
// idle sessions are swept first (this one too, if it is idle), and the
// session's use is recorded.
func (s *sessions) ownsIdle(sid, k string) bool {
	gone := s.sweepLocked()
	o, ok := s.owner[sid]
	ok = ok && o.peer == k
	if ok {
		o.last = s.now()
		s.owner[sid] = o
	}
	s.mu.Unlock()
	s.forgotten(gone)
	return ok
}

// forgotten hands the sessions forgotten to onForget (s.mu not held).
func (s *sessions) forgotten(gone []string) {
	if len(gone) > 0 && s.onForget != nil {
		s.onForget(gone)
	}
}

// idleNow is the time a binding's use is recorded at (zero without an
// idle timeout; s.mu held).
func (s *sessions) idleNow() time.Time {
	if s.idle <= 0 {
		return time.Time{}
	}
	return s.now()
}

// sweepLocked forgets the sessions idle for s.idle — no request since,
// no stream open — looking at most every s.idle/16 (s.mu held).
func (s *sessions) sweepLocked() (gone []string) {
	if s.idle <= 0 {
		return nil
	}
	now := s.now()
	if now.Before(s.nextSweep) {
		return nil
	}
	s.nextSweep = now.Add(max(s.idle/16, time.Millisecond))
	for sid, o := range s.owner {
		if o.active == 0 && now.Sub(o.last) >= s.idle && s.forget(bound{sid, o.seq}) {
			gone = append(gone, sid)
		}
	}
	return gone
}

// enter records a request in flight in session sid (its stream open)
// until the returned function is called: a session with one is not idle.
func (s *sessions) enter(sid string) (leave func()) {
	if sid == "" || s.idle <= 0 {
		return func() {}
	}
	s.mu.Lock()
	o, ok := s.owner[sid]
	if ok {
		o.active++
		o.last = s.now()
		s.owner[sid] = o
	}
	s.mu.Unlock()
	if !ok {
		return func() {}
	}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		if cur, ok := s.owner[sid]; ok && cur.seq == o.seq && cur.active > 0 {
			cur.active--
			cur.last = s.now()
			s.owner[sid] = cur
		}
	}
}
