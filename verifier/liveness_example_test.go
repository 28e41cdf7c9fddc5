package verifier_test

import (
	"fmt"
	"time"

	"github.com/agentid/agentid/verifier"
)

// A view fed with creation times: T-42 revoked, then created again under
// the same ID. The new incarnation is live; credentials issued before its
// entry was created (the revoked incarnation's) are refused by Check.
func ExampleLivenessView_UpdateTasks() {
	t0 := time.Date(2026, 12, 7, 8, 0, 0, 0, time.UTC)
	id := "spiffe://example.org/agent/researcher/task/T-42"
	view := &verifier.LivenessView{RememberRemoved: time.Hour}
	// The full message of a WatchLiveness stream, then deltas.
	_ = view.UpdateTasks(t0, []verifier.LiveTask{{ID: id, Created: t0.Add(-time.Minute)}})
	_ = view.ApplyTasks(t0.Add(time.Second), nil, []string{id}) // revoked
	_ = view.ApplyTasks(t0.Add(2*time.Second), []verifier.LiveTask{{ID: id, Created: t0.Add(2 * time.Second)}}, nil)
	fmt.Println("live:", view.Len(), "removals remembered:", view.Removed())
	// Output: live: 1 removals remembered: 1
}
