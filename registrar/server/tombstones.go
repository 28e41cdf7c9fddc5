package server

import (
	"fmt"
	"sync"
	"time"

	"github.com/agentid/agentid/registrar"
)

// DefaultQuietPeriod is how long after revoking a task the registrar
// refuses to create its task ID again, unless WithQuietPeriod (the
// daemon's recreate_quiet_period) says otherwise. It covers SPIRE's
// windows for a registrar with the default max_jwt_svid_ttl
// (docs/registrar.md, "Creating a revoked task ID again"): a JWT-SVID the
// revoked incarnation got lives up to that TTL in its holder's hands and in
// the SPIRE agent's JWT-SVID cache, and SPIRE keeps authorizing the deleted
// entry until its server's entry cache reloads and its agents sync (5 s
// each by default); the rest is margin for slow syncs and whole-second
// rounding. The daemon's default follows max_jwt_svid_ttl the same way
// ([QuietPeriodFor]).
const DefaultQuietPeriod = registrar.DefaultMaxJWTTTL + quietMargin

// quietMargin is what a quiet period adds to the longest JWT-SVID TTL:
// SPIRE's entry cache reload and agent sync (5 s each by default), the
// created_at slack (2 s), and room for agents whose sync backs off.
const quietMargin = time.Minute

// QuietPeriodFor is the default quiet period of a registrar that caps
// JWT-SVIDs at maxJWTTTL: maxJWTTTL plus one minute.
func QuietPeriodFor(maxJWTTTL time.Duration) time.Duration { return maxJWTTTL + quietMargin }

// MinQuietPeriodFor is the shortest quiet period that covers SPIRE's
// windows with its default intervals for a registrar that caps JWT-SVIDs
// at maxJWTTTL: the TTL, the server's entry cache reload (5 s), the
// agents' sync (5 s) and the created_at slack (2 s). The daemon warns
// below it.
func MinQuietPeriodFor(maxJWTTTL time.Duration) time.Duration { return maxJWTTTL + 12*time.Second }

// maxTombstones bounds the revocations remembered; past it the oldest are
// forgotten, even within their quiet period (docs/registrar.md).
const maxTombstones = 1 << 16

// tombstones remembers the tasks revoked through this registrar, in
// revocation order, for two readers: the quiet period (an ID revoked less
// than quiet ago is not created again) and the liveness hub (every
// revocation is named in the next delta, even one no listing saw). An
// entry is forgotten once it is older than the quiet period and the hub
// has sent it (or no hub runs), or when more than maxTombstones are kept.
type tombstones struct {
	now   func() time.Time
	quiet time.Duration

	mu   sync.Mutex
	log  []tombstone          // in revocation order
	last map[string]tombstone // the latest revocation of each ID in log
	seq  uint64               // the seq of the next tombstone
	held bool                 // a hub runs: keep what it has not sent…
	hold uint64               // …every seq from hold on
	busy map[string]int       // IDs being revoked (RevokeTask in progress)
}

type tombstone struct {
	id  string
	at  time.Time
	seq uint64
	// seen: not revoked through this registrar but seen gone from its
	// liveness listing (the feed has named it already).
	seen bool
}

func newTombstones(now func() time.Time, quiet time.Duration) *tombstones {
	return &tombstones{now: now, quiet: quiet, last: map[string]tombstone{}, busy: map[string]int{}}
}

// revoking counts id as revoked now until done is called: a create that
// reads SPIRE after the revoke deleted the entry, but before add, is
// refused all the same.
func (t *tombstones) revoking(id string) (done func()) {
	t.mu.Lock()
	t.busy[id]++
	t.mu.Unlock()
	return func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.busy[id]--; t.busy[id] == 0 {
			delete(t.busy, id)
		}
	}
}

// add records ids as revoked now. It returns how many tombstones were
// forgotten within their quiet period to keep maxTombstones.
func (t *tombstones) add(ids []string) (early int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, id := range ids {
		t.appendLocked(tombstone{id: id, at: now, seq: t.seq})
	}
	return t.pruneLocked(now)
}

// seen records ids as gone now from a liveness listing before their
// expiry: revoked through another registrar or the CLI, or deleted in
// SPIRE directly. An ID in its quiet period already keeps its tombstone.
func (t *tombstones) seen(ids []string) {
	if len(ids) == 0 {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, id := range ids {
		if l, ok := t.last[id]; ok && now.Sub(l.at) < t.quiet {
			continue
		}
		t.appendLocked(tombstone{id: id, at: now, seq: t.seq, seen: true})
	}
	t.pruneLocked(now)
}

func (t *tombstones) appendLocked(ts tombstone) {
	t.log = append(t.log, ts)
	t.last[ts.id] = ts
	t.seq++
}

// pruneLocked forgets the tombstones no reader needs, and the oldest past
// maxTombstones; it returns how many of those were within their quiet
// period.
func (t *tombstones) pruneLocked(now time.Time) (early int) {
	n := 0
	for ; n < len(t.log); n++ {
		ts := t.log[n]
		quiet := now.Sub(ts.at) < t.quiet
		if len(t.log)-n <= maxTombstones && (quiet || t.held && ts.seq >= t.hold) {
			break
		}
		if quiet {
			early++
		}
		if t.last[ts.id].seq == ts.seq {
			delete(t.last, ts.id)
		}
	}
	if n > 0 {
		t.log = append(t.log[:0], t.log[n:]...)
	}
	return early
}

// quietUntil says whether id may not be created again now, when it was
// revoked (now for a revoke in progress) and until when: its last
// revocation plus the quiet period.
func (t *tombstones) quietUntil(id string) (tombstone, time.Time, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if t.busy[id] > 0 && t.quiet > 0 {
		return tombstone{id: id, at: now}, now.Add(t.quiet), true
	}
	l, ok := t.last[id]
	if !ok {
		return tombstone{}, time.Time{}, false
	}
	until := l.at.Add(t.quiet)
	return l, until, now.Before(until)
}

// since returns the IDs revoked from seq on and the seq to ask from next
// time; the hub has then sent everything before it. The first call of a
// hub that starts (start true) only takes the current seq.
func (t *tombstones) since(seq uint64, start bool) ([]string, uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.held, t.hold = true, t.seq
	var ids []string
	if !start {
		for _, ts := range t.log {
			if ts.seq >= seq && !ts.seen {
				ids = append(ids, ts.id)
			}
		}
	}
	t.pruneLocked(t.now())
	return ids, t.seq
}

// release says the hub stopped: nothing is kept for it.
func (t *tombstones) release() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.held = false
	t.pruneLocked(t.now())
}

// recentlyRevoked is the refusal of a create of id within its quiet period.
func recentlyRevoked(id string, ts tombstone, until time.Time, quiet time.Duration) error {
	at := ts.at.UTC().Format(time.RFC3339)
	what := "was revoked through this registrar at " + at
	if ts.seen {
		what = "was revoked through another registrar or deleted in SPIRE (this registrar saw its entry gone at " + at + ")"
	}
	return &registrar.Error{Reason: registrar.ReasonRecentlyRevoked, Detail: fmt.Sprintf(
		"task %s %s; it may be created again from %s (recreate_quiet_period %s, while SPIRE's caches may still serve or authorize the revoked incarnation): use a fresh task ID",
		id, what, until.UTC().Format(time.RFC3339), quiet)}
}
