package verifier

import (
	"errors"
	"fmt"
	"sync"
	"time"
)

// Liveness deny reasons.
const (
	// ReasonRevoked: the task, or a task in its delegation chain, has no
	// registration entry any more.
	ReasonRevoked = "revoked"
	// ReasonLivenessUnknown: the verifier's view of live tasks is older
	// than MaxStaleness (or there is none yet), and the view fails closed.
	ReasonLivenessUnknown = "liveness_unknown"
)

// DefaultMaxStaleness is how old a liveness view may be before task
// credentials are refused with liveness_unknown.
const DefaultMaxStaleness = 5 * time.Second

// ignoreBeforeIssue is how long after a credential was issued a view must
// have been taken for the task's absence from it to mean revoked: SPIRE
// backdates X.509-SVIDs' NotBefore by 10 s, so a task created just after a
// listing began can carry a NotBefore before it. A task seen live once is
// revoked as soon as a later view lacks it, whatever its age.
const ignoreBeforeIssue = 15 * time.Second

// rememberRemoved is how long the view remembers a task it saw removed,
// so that a credential issued shortly before the removal (which the
// issue-time rule alone would not judge yet) is refused too.
const rememberRemoved = 2 * ignoreBeforeIssue

// LivenessView is a verifier's view of which tasks are live, fed by a
// registrar's WatchLiveness stream — a full listing (Update), then deltas
// (Apply) — and asked by the pipeline through Verifier.Liveness =
// view.Check. Non-task peers are never refused by it. Its memory is one
// map entry per live task (about 100 bytes with a 62-byte SPIFFE ID) plus the
// tasks removed in the last 30 s; an update costs what changed, not the
// number of live tasks. It is safe for concurrent use.
type LivenessView struct {
	// MaxStaleness bounds the age of the view (default DefaultMaxStaleness);
	// FailOpen allows task peers while it is older instead of refusing them.
	MaxStaleness time.Duration
	FailOpen     bool

	mu      sync.RWMutex
	asOf    time.Time
	live    map[string]struct{}
	removed map[string]time.Time // recently removed tasks → when seen gone
	order   []removal            // removed's entries in the order seen
	// held are tasks listed live again while remembered as removed: not
	// live until their removal is forgotten (a stale listing — another
	// registrar's taken before the revoke, or a lagging datastore — must
	// not bring a revoked task back; a task re-created under the same ID
	// is refused for rememberRemoved).
	held map[string]struct{}
}

type removal struct {
	id string
	at time.Time
}

// Update replaces the view with the full list of tasks live as of asOf.
// Tasks of the old view missing from it are remembered as removed. An
// update not newer than the current view (a replayed or reordered
// listing) is refused and changes nothing.
func (v *LivenessView) Update(asOf time.Time, live []string) error {
	next := make(map[string]struct{}, len(live))
	for _, id := range live {
		next[id] = struct{}{}
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.newerLocked(asOf); err != nil {
		return err
	}
	for id := range v.live {
		if _, ok := next[id]; !ok {
			v.removeLocked(id, asOf)
		}
	}
	v.held = nil
	for _, id := range live {
		if _, gone := v.removed[id]; gone {
			delete(next, id)
			v.holdLocked(id)
		}
	}
	v.live, v.asOf = next, asOf
	v.pruneLocked()
	return nil
}

// Apply moves the view to asOf with the tasks added and removed since the
// view's current state (a WatchLiveness delta; the caller checks that the
// delta's base is the message it applied last). Like Update, it refuses an
// asOf not newer than the view's and then changes nothing; before any
// Update it refuses everything.
func (v *LivenessView) Apply(asOf time.Time, added, removed []string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.live == nil {
		return errors.New("liveness: a delta before any full listing")
	}
	if err := v.newerLocked(asOf); err != nil {
		return err
	}
	for _, id := range added {
		if _, gone := v.removed[id]; gone {
			v.holdLocked(id)
			continue
		}
		v.live[id] = struct{}{}
	}
	for _, id := range removed {
		delete(v.live, id)
		delete(v.held, id)
		v.removeLocked(id, asOf)
	}
	v.asOf = asOf
	v.pruneLocked()
	return nil
}

func (v *LivenessView) newerLocked(asOf time.Time) error {
	if v.live != nil && !asOf.After(v.asOf) {
		return fmt.Errorf("liveness: update as of %s is not newer than the view's %s", asOf.UTC().Format(time.RFC3339Nano), v.asOf.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

func (v *LivenessView) holdLocked(id string) {
	if v.held == nil {
		v.held = map[string]struct{}{}
	}
	v.held[id] = struct{}{}
}

func (v *LivenessView) removeLocked(id string, at time.Time) {
	if v.removed == nil {
		v.removed = map[string]time.Time{}
	}
	v.removed[id] = at
	v.order = append(v.order, removal{id, at})
}

// pruneLocked forgets removals older than rememberRemoved: by then the
// issue-time rule judges every credential that could still be in use.
func (v *LivenessView) pruneLocked() {
	n := 0
	for ; n < len(v.order) && v.asOf.Sub(v.order[n].at) > rememberRemoved; n++ {
		if r := v.order[n]; v.removed[r.id].Equal(r.at) {
			delete(v.removed, r.id)
			if _, ok := v.held[r.id]; ok { // listed live since: live now
				delete(v.held, r.id)
				v.live[r.id] = struct{}{}
			}
		}
	}
	if n > 0 {
		v.order = append(v.order[:0], v.order[n:]...)
	}
}

// AsOf is when the current view was taken (zero before the first update).
func (v *LivenessView) AsOf() time.Time {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.asOf
}

// Len is the number of live tasks in the view.
func (v *LivenessView) Len() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.live)
}

// Fresh reports whether the view is at most MaxStaleness old at now.
func (v *LivenessView) Fresh(now time.Time) bool {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return v.live != nil && now.Sub(v.asOf) <= v.maxStaleness()
}

func (v *LivenessView) maxStaleness() time.Duration {
	if v.MaxStaleness > 0 {
		return v.MaxStaleness
	}
	return DefaultMaxStaleness
}

// Check refuses a task peer that is revoked, or whose chain contains a
// revoked task, with ReasonRevoked, and any task peer while the view is
// stale with ReasonLivenessUnknown (unless FailOpen). Use it as
// Verifier.Liveness.
func (v *LivenessView) Check(p *Peer, now time.Time) error {
	if !p.IsTask() {
		return nil
	}
	v.mu.RLock()
	defer v.mu.RUnlock()
	if v.live == nil || now.Sub(v.asOf) > v.maxStaleness() {
		if v.FailOpen {
			return nil
		}
		if v.live == nil {
			return deny(ReasonLivenessUnknown, errors.New("no view of live tasks yet"))
		}
		return deny(ReasonLivenessUnknown, fmt.Errorf("the view of live tasks is %s old (max_staleness %s)", now.Sub(v.asOf).Round(time.Millisecond), v.maxStaleness()))
	}
	judge := p.issued.IsZero() || !v.asOf.Before(p.issued.Add(ignoreBeforeIssue))
	if err := v.absentLocked(p.id.String(), judge); err != nil {
		return err
	}
	for _, member := range p.claims.Chain {
		if err := v.absentLocked(member, judge); err != nil {
			return fmt.Errorf("%w (in the delegation chain of %s)", err, p.id)
		}
	}
	return nil
}

// absentLocked is a revoked error for an id missing from the view, if the
// view can judge it: it was seen removed, or judge.
func (v *LivenessView) absentLocked(id string, judge bool) error {
	if _, ok := v.live[id]; ok {
		return nil
	}
	if _, seen := v.removed[id]; seen || judge {
		return deny(ReasonRevoked, fmt.Errorf("%s has no registration entry as of %s", id, v.asOf.UTC().Format(time.RFC3339)))
	}
	return nil
}
