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

// x509Backdate is how far SPIRE backdates an X.509-SVID's NotBefore before
// the time it issues it (credtemplate.NotBeforeCushion in SPIRE 1.13): a
// certificate's issue time is its NotBefore plus this. A JWT-SVID's iat
// is its issue time.
const x509Backdate = 10 * time.Second

// createdSlack allows for whole seconds: SPIRE rounds an entry's
// created_at to the nearest second, and NotBefore and iat are truncated
// to the second, so a credential issued just after its entry was created
// can read up to a second before created_at.
const createdSlack = time.Second

// DefaultRememberRemoved is how long a view remembers a task it saw
// removed, by default: SPIRE's default X.509-SVID lifetime (JWT-SVIDs
// live 5 minutes), so that every credential issued before the removal
// has expired by the time it is forgotten.
const DefaultRememberRemoved = time.Hour

// LiveTask is one live task of a liveness listing: its SPIFFE ID and when
// its registration entry was created (SPIRE's created_at, whole seconds;
// zero when the feed does not say — a registrar from before creation times
// were sent).
type LiveTask struct {
	ID      string
	Created time.Time
}

// LivenessView is a verifier's view of which tasks are live, fed by a
// registrar's WatchLiveness stream — a full listing (Update, UpdateTasks),
// then deltas (Apply, ApplyTasks) — and asked by the pipeline through
// Verifier.Liveness = view.Check. Non-task peers are never refused by it.
//
// A task ID can be live again after a revocation (task IDs are the
// caller's: a task revoked and created again, or a stale listing). The
// view keeps each live task's incarnation — its entry's creation time —
// and refuses credentials issued before it; and it remembers each removal
// (the ID, the incarnation removed, when it saw it) for RememberRemoved:
// a listing naming the removed incarnation again is stale and none of its
// credentials is accepted, and when the feed carries no creation times,
// credentials issued at or before the removal stay refused.
//
// Its memory is one map entry per live task (about 100 bytes with a
// 62-byte SPIFFE ID) plus about 200 bytes per task removed in the last
// RememberRemoved; an update costs what changed, not the number of live
// tasks. It is safe for concurrent use.
type LivenessView struct {
	// MaxStaleness bounds the age of the view (default DefaultMaxStaleness);
	// FailOpen allows task peers while it is older instead of refusing them.
	MaxStaleness time.Duration
	FailOpen     bool
	// RememberRemoved is how long a removal is remembered (default
	// DefaultRememberRemoved); set it to at least the longest lifetime of
	// a task credential.
	RememberRemoved time.Duration

	mu      sync.RWMutex
	asOf    time.Time
	live    map[string]int64 // live tasks → entry created_at (Unix s; 0 unknown)
	removed map[string]gone  // tasks seen removed in the last RememberRemoved
	order   []removal        // removed's entries in the order seen, from head
	head    int
}

// gone is a remembered removal: when the view saw it (the as_of of the
// update that lacked the task) and the incarnation removed (its entry's
// created_at, 0 unknown).
type gone struct {
	at      time.Time
	created int64
}

type removal struct {
	id string
	at time.Time
}

// Update replaces the view with the full list of tasks live as of asOf,
// without creation times (see UpdateTasks).
func (v *LivenessView) Update(asOf time.Time, live []string) error {
	return v.UpdateTasks(asOf, tasksOf(live))
}

// UpdateTasks replaces the view with the full list of tasks live as of
// asOf. Tasks of the old view missing from it, or listed with a later
// creation time (created again), are remembered as removed. An update not
// newer than the current view (a replayed or reordered listing) is
// refused and changes nothing.
func (v *LivenessView) UpdateTasks(asOf time.Time, live []LiveTask) error {
	next := make(map[string]int64, len(live))
	for _, t := range live {
		c, seen := next[t.ID]
		next[t.ID] = earliest(c, seen, unixOf(t.Created))
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if err := v.newerLocked(asOf); err != nil {
		return err
	}
	for id, c0 := range v.live {
		c1, ok := next[id]
		switch {
		case !ok || c0 != 0 && c1 > c0:
			v.removeLocked(id, asOf, c0)
		case c1 == 0 || c1 < c0:
			// Unknown, or an older incarnation than the view's: a
			// listing cannot bring an earlier incarnation back.
			next[id] = c0
		}
	}
	v.live, v.asOf = next, asOf
	v.pruneLocked()
	return nil
}

// earliest keeps the earliest known creation time of an ID listed more
// than once (entries of an older layout).
func earliest(c int64, seen bool, n int64) int64 {
	if !seen || c == 0 || n != 0 && n < c {
		return n
	}
	return c
}

// Apply moves the view to asOf with the tasks added and removed since the
// view's current state, without creation times (see ApplyTasks).
func (v *LivenessView) Apply(asOf time.Time, added, removed []string) error {
	return v.ApplyTasks(asOf, tasksOf(added), removed)
}

// ApplyTasks moves the view to asOf with the tasks added and removed since
// the view's current state (a WatchLiveness delta; the caller checks that
// the delta's base is the message it applied last). A task added that is
// live already with an earlier creation time was created again: its old
// incarnation is remembered as removed. Like UpdateTasks, it refuses an
// asOf not newer than the view's and then changes nothing; before any
// full listing it refuses everything.
func (v *LivenessView) ApplyTasks(asOf time.Time, added []LiveTask, removed []string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.live == nil {
		return errors.New("liveness: a delta before any full listing")
	}
	if err := v.newerLocked(asOf); err != nil {
		return err
	}
	for _, t := range added {
		c1 := unixOf(t.Created)
		c0, ok := v.live[t.ID]
		switch {
		case !ok:
			v.live[t.ID] = c1
		case c0 != 0 && c1 > c0:
			v.removeLocked(t.ID, asOf, c0)
			v.live[t.ID] = c1
		case c0 == 0:
			v.live[t.ID] = c1
		}
	}
	for _, id := range removed {
		c0 := v.live[id]
		delete(v.live, id)
		v.removeLocked(id, asOf, c0)
	}
	v.asOf = asOf
	v.pruneLocked()
	return nil
}

func tasksOf(ids []string) []LiveTask {
	ts := make([]LiveTask, len(ids))
	for i, id := range ids {
		ts[i].ID = id
	}
	return ts
}

func unixOf(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func (v *LivenessView) newerLocked(asOf time.Time) error {
	if v.live != nil && !asOf.After(v.asOf) {
		return fmt.Errorf("liveness: update as of %s is not newer than the view's %s", asOf.UTC().Format(time.RFC3339Nano), v.asOf.UTC().Format(time.RFC3339Nano))
	}
	return nil
}

// removeLocked remembers id's removal at at; created is the incarnation
// removed (0 unknown), kept if a later one was remembered before.
func (v *LivenessView) removeLocked(id string, at time.Time, created int64) {
	if v.removed == nil {
		v.removed = map[string]gone{}
	}
	created = max(created, v.removed[id].created) // the latest incarnation seen removed
	v.removed[id] = gone{at, created}
	v.order = append(v.order, removal{id, at})
}

// pruneLocked forgets removals older than RememberRemoved: by then every
// credential issued before them has expired (if RememberRemoved is at
// least the longest credential lifetime).
func (v *LivenessView) pruneLocked() {
	keep := v.rememberRemoved()
	for ; v.head < len(v.order) && v.asOf.Sub(v.order[v.head].at) > keep; v.head++ {
		if r := v.order[v.head]; v.removed[r.id].at.Equal(r.at) {
			delete(v.removed, r.id)
		}
		v.order[v.head] = removal{}
	}
	// A queue: the forgotten head is dropped once it is half the slice,
	// so that a delta costs what it forgets, not what is remembered.
	switch {
	case v.head == len(v.order):
		v.order, v.head = v.order[:0], 0
		if cap(v.order) > 1024 {
			v.order = nil // a burst of removals is not kept forever
		}
	case v.head > 1024 && 2*v.head > len(v.order):
		v.order, v.head = append(make([]removal, 0, 2*(len(v.order)-v.head)), v.order[v.head:]...), 0
	}
}

func (v *LivenessView) rememberRemoved() time.Duration {
	if v.RememberRemoved > 0 {
		return v.RememberRemoved
	}
	return DefaultRememberRemoved
}

// Removed is the number of removals the view remembers.
func (v *LivenessView) Removed() int {
	v.mu.RLock()
	defer v.mu.RUnlock()
	return len(v.removed)
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
	issued := p.issued // when SPIRE issued the credential (zero: unknown)
	if !issued.IsZero() && p.kind == "x509" {
		issued = issued.Add(x509Backdate)
	}
	if err := v.refusedLocked(p.id.String(), issued, judge); err != nil {
		return err
	}
	for _, member := range p.claims.Chain {
		if err := v.refusedLocked(member, issued, judge); err != nil {
			return fmt.Errorf("%w (in the delegation chain of %s)", err, p.id)
		}
	}
	return nil
}

// refusedLocked is a revoked error if a credential of id (or naming id in
// its chain) issued at issued is not of a live incarnation of id: id is
// missing from the view and the view can judge it (it saw it removed, or
// judge); or the credential was issued before id's current entry was
// created; or id was seen removed and the credential may be of the
// incarnation removed.
func (v *LivenessView) refusedLocked(id string, issued time.Time, judge bool) error {
	created, live := v.live[id]
	var g gone
	var seen bool
	if len(v.removed) > 0 {
		g, seen = v.removed[id]
	}
	if !live {
		if seen || judge {
			return deny(ReasonRevoked, fmt.Errorf("%s has no registration entry as of %s", id, v.asOf.UTC().Format(time.RFC3339)))
		}
		return nil
	}
	if seen {
		switch {
		case created != 0 && g.created != 0 && created <= g.created:
			return deny(ReasonRevoked, fmt.Errorf("%s was seen removed at %s; a listing naming the same registration entry since is stale", id, g.at.UTC().Format(time.RFC3339)))
		case issued.IsZero():
			return deny(ReasonRevoked, fmt.Errorf("%s was revoked at %s and created again; the credential's issue time is unknown", id, g.at.UTC().Format(time.RFC3339)))
		case (created == 0 || g.created == 0) && !issued.After(g.at):
			return deny(ReasonRevoked, fmt.Errorf("%s was revoked at %s and created again; the credential was issued at %s, before that", id, g.at.UTC().Format(time.RFC3339), issued.UTC().Format(time.RFC3339)))
		}
	}
	if created != 0 && !issued.IsZero() && issued.Add(createdSlack).Unix() < created {
		return deny(ReasonRevoked, fmt.Errorf("%s: the credential was issued at %s, before its current registration entry was created (%s): it is of a revoked incarnation", id, issued.UTC().Format(time.RFC3339), time.Unix(created, 0).UTC().Format(time.RFC3339)))
	}
	return nil
}
