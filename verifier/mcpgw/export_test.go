package mcpgw

import "time"

// SetMaxSessions sets the gateway's bound on remembered sessions (all
// peers) for a test; the returned function restores it.
func SetMaxSessions(n int) (restore func()) {
	old := maxSessions
	maxSessions = n
	return func() { maxSessions = old }
}

// SetSessionClock makes the gateway's session bookkeeping read the time
// from now, for a test of SessionIdleTimeout.
func (g *Gateway) SetSessionClock(now func() time.Time) {
	g.sessions.mu.Lock()
	defer g.sessions.mu.Unlock()
	g.sessions.now = now
}
