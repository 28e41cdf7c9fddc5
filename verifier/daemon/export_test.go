package daemon

import "time"

// SetSecretCheckEvery sets how often the upstream credential file is
// looked at again, for a test; the returned function restores it.
func SetSecretCheckEvery(d time.Duration) (restore func()) {
	old := secretCheckEvery
	secretCheckEvery = d
	return func() { secretCheckEvery = old }
}

// LiveTasks pairs a liveness message's IDs and creation times.
var LiveTasks = liveTasks

// SetWatchDebounce sets how long the policy watch waits after a change
// before it reloads, for a test; the returned function restores it.
func SetWatchDebounce(d time.Duration) (restore func()) {
	old := watchDebounce
	watchDebounce = d
	return func() { watchDebounce = old }
}

// Watching is closed once Run watches the policy directory.
func (d *Daemon) Watching() <-chan struct{} { return d.watching }
