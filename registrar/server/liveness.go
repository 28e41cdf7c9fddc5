package server

import (
	"context"
	"slices"
	"sync"
	"time"

	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// WithLiveness serves WatchLiveness on the agent server to the given
// subscribers (verifiers' SPIFFE IDs), with an update every interval
// (default 1 s).
func WithLiveness(subscribers []spiffeid.ID, interval time.Duration) Option {
	return optionFunc(func(c *config) {
		c.livenessSubscribers = subscribers
		c.livenessInterval = interval
	})
}

// WatchLiveness streams the live tasks to an authorized verifier: a full
// message with every live task first, then one delta per interval (the
// tasks added and removed since the message before, often none). Each
// live task comes with its entry's creation time: a task listed again
// with a later one was revoked and created again under the same SPIFFE
// ID, and is sent as added (the verifier refuses the old incarnation's
// credentials). One
// listing of SPIRE per interval serves every subscriber of this registrar
// (the registrar keeps nothing but the last listing, in memory). A listing
// that fails ends the streams with Unavailable; a subscriber that cannot
// keep up is dropped with ResourceExhausted. Either way the verifier
// reconnects (to this or another registrar) and starts from a full message.
func (s *Service) WatchLiveness(_ *registrarv1.WatchLivenessRequest, stream grpc.ServerStreamingServer[registrarv1.LivenessSnapshot]) error {
	ctx := stream.Context()
	caller, err := mtlsCaller(ctx)
	if err != nil {
		return err
	}
	if !containsID(s.cfg.livenessSubscribers, caller) {
		return status.Errorf(codes.PermissionDenied, "%s is not a liveness subscriber of this registrar", caller)
	}
	sub := s.hub.subscribe()
	defer s.hub.unsubscribe(sub)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-sub.gone:
			return sub.err
		case m := <-sub.ch:
			if err := stream.Send(m); err != nil {
				return err
			}
		}
	}
}

// subscriberBuffer is how many updates a subscriber may fall behind
// before it is dropped (and reconnects for a full message).
const subscriberBuffer = 64

// livenessHub lists SPIRE once per interval while anyone subscribes and
// fans the result out: a full message to each new subscriber, then deltas.
type livenessHub struct {
	list     listFunc
	interval time.Duration
	now      func() time.Time

	mu      sync.Mutex
	subs    map[*livenessSub]struct{}
	closed  bool // the registrar is stopping: no more subscribers
	running bool
	cur     map[string]listed // the last listing; nil before the first
	curAsOf time.Time
	curIDs  []string // the last listing as a slice, for full messages
	curCrt  []int64  // curIDs' creation times (nil: unknown)
	curExp  bool     // cur holds expiries
	// tomb holds the tasks revoked through this registrar: those since
	// the last delta (from seq tombSeq on) are named in the next delta's
	// removals even when no listing saw them (created and revoked between
	// two listings).
	tomb    *tombstones
	tombSeq uint64
}

type livenessSub struct {
	ch       chan *registrarv1.LivenessSnapshot
	gone     chan struct{} // closed with err set when the hub drops it
	err      error
	needFull bool
}

// expirySlack: a task that leaves the listing this close to its expiry is
// taken to have expired (the lister's clock reads a little after asOf), not
// to have been revoked: its credentials end at its deadline anyway.
const expirySlack = 2 * time.Second

// listed is what a listing says of a live task: its entry's created_at
// and expires_at (Unix seconds, 0 unknown).
type listed struct{ created, expires int64 }

// listFunc lists the live tasks: their IDs, their entries' created_at and
// expires_at (Unix seconds; nil: unknown).
type listFunc func(context.Context) (ids []string, created, expires []int64, err error)

func newLivenessHub(list listFunc, interval time.Duration, tomb *tombstones) *livenessHub {
	if interval <= 0 {
		interval = time.Second
	}
	return &livenessHub{list: list, interval: interval, now: time.Now, subs: map[*livenessSub]struct{}{}, tomb: tomb}
}

// subscribe adds a subscriber; it gets the last listing at once if there
// is one, else the next. The first subscriber starts the lister.
func (h *livenessHub) subscribe() *livenessSub {
	sub := &livenessSub{ch: make(chan *registrarv1.LivenessSnapshot, subscriberBuffer), gone: make(chan struct{}), needFull: true}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		sub.err = errStopping
		close(sub.gone)
		return sub
	}
	h.subs[sub] = struct{}{}
	if h.cur != nil {
		sub.ch <- h.fullLocked()
		sub.needFull = false
	}
	if !h.running {
		h.running = true
		go h.run()
	}
	return sub
}

var errStopping = status.Error(codes.Unavailable, "the registrar is stopping: watch another one")

// close ends every stream with Unavailable (the verifiers reconnect to
// another registrar) and refuses new ones, so that a graceful stop does
// not wait for streams that never end by themselves.
func (h *livenessHub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.tomb.release()
	for sub := range h.subs {
		h.dropLocked(sub, errStopping)
	}
}

func (h *livenessHub) unsubscribe(sub *livenessSub) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.subs, sub)
}

func (h *livenessHub) fullLocked() *registrarv1.LivenessSnapshot {
	return &registrarv1.LivenessSnapshot{AsOfUnixNano: h.curAsOf.UnixNano(), LiveTasks: h.curIDs, LiveTasksCreated: h.curCrt}
}

// run lists SPIRE once per interval until no subscriber is left. It forgets
// its listing when it stops, so that a later subscriber never gets an old
// one.
func (h *livenessHub) run() {
	tick := time.NewTicker(h.interval)
	defer tick.Stop()
	for {
		asOf := h.now()
		ctx, cancel := context.WithTimeout(context.Background(), 10*h.interval+10*time.Second)
		ids, created, expires, err := h.list(ctx)
		cancel()
		if !h.publishListing(asOf, ids, created, expires, err) {
			return
		}
		<-tick.C
	}
}

// publish is publishListing without expiries.
func (h *livenessHub) publish(asOf time.Time, ids []string, created []int64, err error) bool {
	return h.publishListing(asOf, ids, created, nil, err)
}

// publishListing sends one listing (or its error) to every subscriber and
// says whether to go on. created and expires are ids' creation times and
// expiries (nil: unknown). A task that left the listing before its expiry
// (revoked through another registrar, the CLI or SPIRE directly) gets a
// tombstone: this registrar does not create its ID again within the quiet
// period either.
func (h *livenessHub) publishListing(asOf time.Time, ids []string, created, expires []int64, err error) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.subs) == 0 {
		h.running, h.cur, h.curIDs, h.curCrt = false, nil, nil, nil
		h.tomb.release()
		return false
	}
	if err != nil {
		// Everyone reconnects and starts again from a full message.
		h.cur, h.curIDs, h.curCrt = nil, nil, nil
		for sub := range h.subs {
			h.dropLocked(sub, status.Errorf(codes.Unavailable, "listing tasks: %v", err))
		}
		return true
	}
	if len(created) != len(ids) {
		created = nil
	}
	if len(expires) != len(ids) {
		expires = nil
	}
	next := make(map[string]listed, len(ids))
	for i, id := range ids {
		var c, e int64
		if created != nil {
			c = created[i]
		}
		if expires != nil {
			e = expires[i]
		}
		// An ID with two entries (two registrars' racing creates before
		// one settles; an older layout): the earliest stands for it.
		if l0, dup := next[id]; !dup || l0.created == 0 || c != 0 && c < l0.created {
			next[id] = listed{created: c, expires: e}
		}
	}
	revoked, nextSeq := h.tomb.since(h.tombSeq, h.cur == nil)
	h.tombSeq = nextSeq
	var delta *registrarv1.LivenessSnapshot
	if h.cur != nil {
		delta = &registrarv1.LivenessSnapshot{AsOfUnixNano: asOf.UnixNano(), BaseAsOfUnixNano: h.curAsOf.UnixNano()}
		var sent map[string]bool // only when an ID is listed twice
		if len(next) != len(ids) {
			sent = map[string]bool{}
		}
		for _, id := range ids {
			// New, or created again since the last listing (a later
			// creation time: a new incarnation of the same ID).
			if l0, ok := h.cur[id]; !ok || next[id].created != l0.created {
				if sent != nil {
					if sent[id] {
						continue
					}
					sent[id] = true
				}
				delta.Added = append(delta.Added, id)
				if created != nil {
					delta.AddedCreated = append(delta.AddedCreated, next[id].created)
				}
			}
		}
		var gone []string // before their expiry
		for id, l := range h.cur {
			if _, ok := next[id]; !ok {
				delta.Removed = append(delta.Removed, id)
				if !h.curExp || l.expires == 0 || asOf.Add(expirySlack).Unix() < l.expires {
					gone = append(gone, id)
				}
			}
		}
		h.tomb.seen(gone)
		for _, id := range revoked { // revoked before any listing saw them
			_, listed := next[id]
			_, wasLive := h.cur[id]
			if !listed && !wasLive && !slices.Contains(delta.Removed, id) {
				delta.Removed = append(delta.Removed, id)
			}
		}
	}
	h.cur, h.curAsOf, h.curIDs, h.curCrt, h.curExp = next, asOf, ids, created, expires != nil
	var full *registrarv1.LivenessSnapshot
	for sub := range h.subs {
		m := delta
		if sub.needFull || m == nil {
			if full == nil {
				full = h.fullLocked()
			}
			m, sub.needFull = full, false
		}
		select {
		case sub.ch <- m:
		default:
			h.dropLocked(sub, status.Errorf(codes.ResourceExhausted, "liveness subscriber fell %d updates behind", subscriberBuffer))
		}
	}
	return true
}

// StopLiveness ends every WatchLiveness stream with Unavailable and
// refuses new ones: called first when the registrar stops (a graceful stop
// would otherwise wait for these streams, which never end by themselves).
func (s *Service) StopLiveness() { s.hub.close() }

func (h *livenessHub) dropLocked(sub *livenessSub, err error) {
	delete(h.subs, sub)
	sub.err = err
	close(sub.gone)
}

// livenessOnly lets WatchLiveness through the agent server's stream
// interceptor; it has no other streams.
func livenessOnly(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	if info.FullMethod != registrarv1.Registrar_WatchLiveness_FullMethodName {
		return errOperatorsOnly
	}
	return handler(srv, ss)
}

func mtlsCaller(ctx context.Context) (spiffeid.ID, error) {
	pr, ok := peer.FromContext(ctx)
	if !ok {
		return spiffeid.ID{}, status.Error(codes.Unauthenticated, "no peer")
	}
	ti, ok := pr.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.PeerCertificates) == 0 {
		return spiffeid.ID{}, status.Error(codes.Unauthenticated, "an X.509-SVID is required")
	}
	id, err := x509svid.IDFromCert(ti.State.PeerCertificates[0])
	if err != nil {
		return spiffeid.ID{}, status.Errorf(codes.Unauthenticated, "client certificate: %v", err)
	}
	return id, nil
}

func containsID(ids []spiffeid.ID, id spiffeid.ID) bool {
	for _, x := range ids {
		if x == id {
			return true
		}
	}
	return false
}
