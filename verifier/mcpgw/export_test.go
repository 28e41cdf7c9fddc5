package mcpgw

// SetMaxSessions sets the gateway's bound on remembered sessions (all
// peers) for a test; the returned function restores it.
func SetMaxSessions(n int) (restore func()) {
	old := maxSessions
	maxSessions = n
	return func() { maxSessions = old }
}
