package verifier

import (
	"context"
	"time"
)

// StreamGuardCheck starts a guard, as the stream interceptor does for a
// stream allowed to the credential c, and returns its per-message check
// and its stop (for benchmarks of the per-message cost).
func StreamGuardCheck(v *Verifier, frontend string, c Credential, a Action, expires time.Time) (check func() error, stop func()) {
	g := v.newStreamGuard(context.Background(), &Query{Frontend: frontend, Credential: c, Action: a}, expires,
		func(r *Result) error { return grpcRefusal(r) }, func(error) {})
	return g.check, g.stop
}
