package mcpgw

import (
	"context"
	"io"
	"net/http"
	"time"
)

// maxDeletes bounds the DELETEs of forgotten sessions in flight; past
// it a forgotten session is left to the upstream's own expiry (and
// counted as such in the log).
const maxDeletes = 32

// deleteTimeout bounds one DELETE of a forgotten session.
const deleteTimeout = 10 * time.Second

// deleteForgotten ends upstream the sessions the gateway forgot (a task
// over MaxSessionsPerTask, or all tasks over their bound): their clients
// get 404 from the gateway and start new ones, so the upstream would
// otherwise keep their state until its own expiry. The DELETE carries the
// session id and the upstream credential, nothing of the agent's.
func (g *Gateway) deleteForgotten(sids []string) {
	for _, sid := range sids {
		select {
		case g.deletes <- struct{}{}:
		default:
			g.log.Warn("mcp gateway: too many forgotten sessions being ended; left to the upstream's expiry", "session", sid)
			continue
		}
		go func() {
			defer func() { <-g.deletes }()
			ctx, cancel := context.WithTimeout(context.Background(), deleteTimeout)
			defer cancel()
			resp, err := g.rt.RoundTrip(g.upstreamRequest(ctx, http.MethodDelete, http.Header{headerSessionID: {sid}}, nil))
			if err != nil {
				g.log.Info("mcp gateway: a forgotten session could not be ended upstream", "session", sid, "err", err)
				return
			}
			io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
			resp.Body.Close()
			g.forgottenDeleted.Add(1)
		}()
	}
}

// ForgottenSessionsDeleted is how many sessions the gateway forgot and
// ended upstream with DELETE.
func (g *Gateway) ForgottenSessionsDeleted() int64 { return g.forgottenDeleted.Load() }
