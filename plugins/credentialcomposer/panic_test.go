package credentialcomposer_test

import (
	"context"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentid/agentid/composer"
	credentialcomposerv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/server/credentialcomposer/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// TestPanicIsOneFailedCall: a bug that panics while composing (here: the
// injected clock) refuses that one SVID with Internal and a logged stack;
// the plugin keeps serving and the next SVID gets its claims.
func TestPanicIsOneFailedCall(t *testing.T) {
	var broken atomic.Bool
	h := serveWith(t, composer.WithClock(func() time.Time {
		if broken.Load() {
			panic("clock broke")
		}
		return testNow
	}))
	h.mustConfigure(t, "")
	c := rootClaims("T-1")
	h.fe.Add(entryOf(c))
	id := taskID(c.Agent, c.Task)
	compose := func() error {
		_, err := h.cc.ComposeWorkloadJWTSVID(context.Background(), &credentialcomposerv1.ComposeWorkloadJWTSVIDRequest{
			SpiffeId: id.String(), Attributes: jwtAttributes(t, id, nil),
		})
		return err
	}

	broken.Store(true)
	if err := compose(); status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "internal error") {
		t.Fatalf("compose with a panicking clock = %v, want Internal", err)
	}
	if logs := h.log.String(); !strings.Contains(logs, "Recovered from a panic") || !strings.Contains(logs, "method=ComposeWorkloadJWTSVID") || !strings.Contains(logs, "clock broke") {
		t.Fatalf("no log line for the panic:\n%s", logs)
	}
	broken.Store(false)
	if err := compose(); err != nil {
		t.Fatalf("compose after the panic: %v", err)
	}
}
