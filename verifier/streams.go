package verifier

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// StreamRecheckInterval is how often an open gRPC stream, upgraded proxy
// connection or streamed proxy response is re-checked while no message passes (each message is
// checked as it passes): a revocation ends an idle stream within the
// liveness feed's interval plus this.
const StreamRecheckInterval = time.Second

// streamGuard holds a long-lived exchange — a gRPC stream, an upgraded
// connection, a streamed proxy response — that one decision allowed to the pipeline's authentication
// stages for its whole life: check re-runs them (credential, trust
// domains, claims, liveness: the Authenticator's cache and the liveness
// view make that cheap) for every message, a timer re-runs them while it
// is idle, and the exchange ends at the peer's expiry. The first refusal
// is recorded and observed as any refusal of the pipeline (finish, the
// Observe hook) — once — and ends the exchange: end is called, the
// context is cancelled, and every later check returns the same error.
//
// The policy is not asked again: the exchange's action (the gRPC method,
// the upgraded request) does not change, and neither do the peer's
// claims nor the request's metadata, so its answer would change only
// with a policy reload or a condition on the time; those take effect on
// the next call (docs/verifier.md, "Open streams").
type streamGuard struct {
	v       *Verifier
	q       Query // the exchange's query: frontend, credential, action, request
	expires time.Time
	// refusal turns a refusal into the front-end's error (a gRPC status).
	refusal func(*Result) error
	// end is called once, with that error, when the exchange must end.
	end func(error)

	ctx    context.Context
	cancel context.CancelCauseFunc

	failed atomic.Bool
	mu     sync.Mutex
	err    error         // the refusal's error, once failed
	status int           // the refusal's HTTP status, once failed
	timer  *time.Timer   // the idle re-check; nil until armed (newCheckGuard)
	done   chan struct{} // closed when failed
	closed bool          // stop was called: no more refusals
}

// newStreamGuard starts guarding the exchange allowed for q, whose peer
// expires at expires; q is copied (the caller's may be released).
func (v *Verifier) newStreamGuard(ctx context.Context, q *Query, expires time.Time, refusal func(*Result) error, end func(error)) *streamGuard {
	g := v.newCheckGuard(ctx, q, expires, refusal, end)
	g.arm()
	return g
}

// newCheckGuard is a streamGuard without the idle re-check until arm is
// called: an exchange that is re-checked as its data passes (each read of
// a request or response body) and needs no timer while it is short.
func (v *Verifier) newCheckGuard(ctx context.Context, q *Query, expires time.Time, refusal func(*Result) error, end func(error)) *streamGuard {
	g := &streamGuard{v: v, expires: expires, refusal: refusal, end: end, done: make(chan struct{})}
	g.q = Query{Frontend: q.Frontend, Credential: q.Credential, Action: q.Action, Request: q.Request, Caller: q.Caller, Audience: q.Audience}
	g.ctx, g.cancel = context.WithCancelCause(ctx)
	return g
}

// arm starts the idle re-check (every StreamRecheckInterval, and at the
// peer's expiry) unless it runs already or the exchange is over.
func (g *streamGuard) arm() {
	g.mu.Lock()
	if g.timer == nil && !g.closed && !g.failed.Load() {
		g.timer = time.AfterFunc(g.idleDelay(), g.tick)
	}
	g.mu.Unlock()
}

// stopTimer stops the idle re-check, if armed; g.mu is held.
func (g *streamGuard) stopTimer() {
	if g.timer != nil {
		g.timer.Stop()
	}
}

// idleDelay is the time to the next idle re-check: the interval, or the
// peer's expiry if that is sooner.
func (g *streamGuard) idleDelay() time.Duration {
	d := StreamRecheckInterval
	if left := g.expires.Sub(g.v.now()); !g.expires.IsZero() && left < d {
		d = max(left, 0)
	}
	return d
}

func (g *streamGuard) tick() {
	if g.check() != nil {
		return
	}
	g.mu.Lock()
	if !g.closed {
		g.timer.Reset(g.idleDelay())
	}
	g.mu.Unlock()
}

// check re-runs the authentication stages for the exchange's credential;
// nil while it may go on.
func (g *streamGuard) check() error {
	if g.failed.Load() {
		return g.err
	}
	var start time.Time
	if g.v.Observe != nil {
		start = time.Now()
	}
	now := g.v.now()
	var r Result // on the stack: fail takes a copy
	if g.v.authenticate(&g.q, now, &r) {
		if g.expires.IsZero() || now.Before(g.expires) {
			return nil
		}
		// The credential's cache entry and its check go by the
		// Authenticator's clock; the exchange ends at the peer's expiry
		// by the Verifier's, whichever says so first.
		err := deny(ReasonExpired, fmt.Errorf("the credential or the task deadline expired at %s", g.expires.UTC().Format(time.RFC3339)))
		r = Result{Outcome: Unauthenticated, Code: ReasonExpired, Action: boundedAction(g.q.Action)}
		r.Decision.Reason = err.Error()
	}
	return g.fail(r, start)
}

// fail ends the exchange with the refusal r, recording it once.
func (g *streamGuard) fail(r Result, start time.Time) error {
	g.mu.Lock()
	if g.failed.Load() || g.closed {
		err := g.err
		g.mu.Unlock()
		if err == nil { // closed normally meanwhile
			err = g.refusal(&r)
		}
		return err
	}
	g.err, g.status = g.refusal(&r), r.HTTPStatus()
	g.failed.Store(true)
	g.stopTimer()
	close(g.done)
	g.mu.Unlock()
	g.v.finish(&g.q, &r)
	if g.v.Observe != nil {
		g.v.Observe(g.q.Frontend, r, time.Since(start))
	}
	g.cancel(g.err)
	g.end(g.err)
	return g.err
}

// stop ends the guard when the exchange ended by itself.
func (g *streamGuard) stop() {
	g.mu.Lock()
	g.closed = true
	g.stopTimer()
	g.mu.Unlock()
	g.cancel(errStreamDone)
}

var errStreamDone = errors.New("verifier: the exchange ended")

// abort ends the exchange without a refusal (nothing is recorded): the
// server is shutting down.
func (g *streamGuard) abort(err error) {
	g.mu.Lock()
	if g.failed.Load() || g.closed {
		g.mu.Unlock()
		return
	}
	g.err = err
	g.failed.Store(true)
	g.stopTimer()
	close(g.done)
	g.mu.Unlock()
	g.cancel(err)
	g.end(err)
}

// failure is the refusal that ended the exchange (nil while it goes on).
func (g *streamGuard) failure() error {
	if g.failed.Load() {
		return g.err
	}
	return nil
}

// Guard keeps a long-lived exchange that a decision for q allowed — a
// stream of server-sent events a gateway relays, say — to the pipeline's
// authentication stages for as long as it lasts, as the gRPC
// interceptors and the proxy do with theirs: run the exchange under the
// returned context, which is cancelled (the refusal's message as its
// cause) once the peer is refused — revoked, or its credential expired —
// or reaches expires; the refusal is recorded and observed once. check
// re-runs the stages at once (for each message relayed; an idle exchange
// is re-checked every StreamRecheckInterval); end, if not nil, is called
// once with the refusal too (to unblock a write to a client that does not
// read, say); call stop when the exchange ends by itself.
func (v *Verifier) Guard(ctx context.Context, q *Query, expires time.Time, end func(error)) (gctx context.Context, check func() error, stop func()) {
	if end == nil {
		end = func(error) {}
	}
	g := v.newStreamGuard(ctx, q, expires, func(r *Result) error { return errors.New(r.Message()) }, end)
	return g.ctx, g.check, g.stop
}
