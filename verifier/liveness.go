package verifier

import (
	"errors"
	"fmt"
	"sync/atomic"
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

// LivenessView is a verifier's view of which tasks are live, fed with
// snapshots (a registrar's WatchLiveness stream) and asked by the pipeline
// through Verifier.Liveness = view.Check. Non-task peers are never
// refused by it. It is safe for concurrent use.
type LivenessView struct {
	// MaxStaleness bounds the age of the view (default DefaultMaxStaleness);
	// FailOpen allows task peers while it is older instead of refusing them.
	MaxStaleness time.Duration
	FailOpen     bool

	snap atomic.Pointer[livenessSnapshot]
}

type livenessSnapshot struct {
	asOf time.Time
	live map[string]struct{}
	prev map[string]struct{} // the snapshot before: tasks seen live once
}

// Update replaces the view with the tasks live as of asOf. An update not
// newer than the current view (a replayed or reordered snapshot) is
// refused and changes nothing.
func (v *LivenessView) Update(asOf time.Time, live []string) error {
	for {
		old := v.snap.Load()
		if old != nil && !asOf.After(old.asOf) {
			return fmt.Errorf("liveness: snapshot as of %s is not newer than the view's %s", asOf.UTC().Format(time.RFC3339Nano), old.asOf.UTC().Format(time.RFC3339Nano))
		}
		s := &livenessSnapshot{asOf: asOf, live: make(map[string]struct{}, len(live))}
		for _, id := range live {
			s.live[id] = struct{}{}
		}
		if old != nil {
			s.prev = old.live
		}
		if v.snap.CompareAndSwap(old, s) {
			return nil
		}
	}
}

// AsOf is when the current view was taken (zero before the first update).
func (v *LivenessView) AsOf() time.Time {
	if s := v.snap.Load(); s != nil {
		return s.asOf
	}
	return time.Time{}
}

// Len is the number of live tasks in the view.
func (v *LivenessView) Len() int {
	if s := v.snap.Load(); s != nil {
		return len(s.live)
	}
	return 0
}

// Fresh reports whether the view is at most MaxStaleness old at now.
func (v *LivenessView) Fresh(now time.Time) bool {
	s := v.snap.Load()
	return s != nil && now.Sub(s.asOf) <= v.maxStaleness()
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
	s := v.snap.Load()
	if s == nil || now.Sub(s.asOf) > v.maxStaleness() {
		if v.FailOpen {
			return nil
		}
		if s == nil {
			return deny(ReasonLivenessUnknown, errors.New("no view of live tasks yet"))
		}
		return deny(ReasonLivenessUnknown, fmt.Errorf("the view of live tasks is %s old (max_staleness %s)", now.Sub(s.asOf).Round(time.Millisecond), v.maxStaleness()))
	}
	judge := p.issued.IsZero() || !s.asOf.Before(p.issued.Add(ignoreBeforeIssue))
	if err := s.absent(p.id.String(), judge); err != nil {
		return err
	}
	for _, member := range p.claims.Chain {
		if err := s.absent(member, judge); err != nil {
			return fmt.Errorf("%w (in the delegation chain of %s)", err, p.id)
		}
	}
	return nil
}

// absent is a revoked error for an id missing from the view, if the view
// can judge it: it was live in the view before, or judge.
func (s *livenessSnapshot) absent(id string, judge bool) error {
	if _, ok := s.live[id]; ok {
		return nil
	}
	if _, seen := s.prev[id]; seen || judge {
		return deny(ReasonRevoked, fmt.Errorf("%s has no registration entry as of %s", id, s.asOf.UTC().Format(time.RFC3339)))
	}
	return nil
}
