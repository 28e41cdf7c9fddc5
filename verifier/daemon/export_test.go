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
