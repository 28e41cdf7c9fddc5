package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	registrarv1 "github.com/agentid/agentid/proto/agentid/registrar/v1"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// initialLivenessWait bounds how long New waits for the first liveness
// snapshot before serving (task peers are refused with liveness_unknown
// until one arrives).
const initialLivenessWait = 10 * time.Second

// startLiveness watches the registrars' liveness feed into view until the
// daemon closes; it returns once the first snapshot arrived or
// initialLivenessWait passed.
func (d *Daemon) startLiveness(view *verifier.LivenessView) error {
	lc := d.cfg.Liveness
	if d.svids == nil {
		return errors.New("liveness needs the verifier's own SVID")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	d.closers = append(d.closers, func() error { cancel(); <-done; return nil })
	first := make(chan struct{})
	go func() {
		defer close(done)
		backoff := 100 * time.Millisecond
		for i := 0; ctx.Err() == nil; i++ {
			addr := lc.Registrars[i%len(lc.Registrars)]
			got, err := d.watchOnce(ctx, addr, view, first)
			if ctx.Err() != nil {
				return
			}
			if got {
				backoff = 100 * time.Millisecond
			}
			d.log.Warn("liveness feed interrupted; reconnecting", "registrar", addr, "err", err, "view_age", time.Since(view.AsOf()).Round(time.Millisecond).String())
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}()
	select {
	case <-first:
	case <-time.After(initialLivenessWait):
		d.log.Warn("no liveness snapshot yet: task peers are refused with liveness_unknown until one arrives", "registrars", lc.Registrars)
	}
	return nil
}

// watchOnce follows one registrar's stream; got says whether a snapshot
// arrived before it ended.
func (d *Daemon) watchOnce(ctx context.Context, addr string, view *verifier.LivenessView, first chan struct{}) (got bool, err error) {
	tc := tlsconfig.MTLSClientConfig(d.svids, d.v.Auth.X509Bundles(), tlsconfig.AuthorizeOneOf(d.cfg.Liveness.RegistrarIDs...))
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(tc)))
	if err != nil {
		return false, err
	}
	defer conn.Close()
	stream, err := registrarv1.NewRegistrarClient(conn).WatchLiveness(ctx, &registrarv1.WatchLivenessRequest{})
	if err != nil {
		return false, err
	}
	var last int64 // as_of of the last message applied from this stream
	for {
		m, err := stream.Recv()
		if err != nil {
			return got, err
		}
		// The registrar's clock, but never ahead of ours: the view's age
		// is judged by this verifier's clock.
		asOf := time.Unix(0, m.GetAsOfUnixNano())
		if now := time.Now(); asOf.After(now) {
			asOf = now
		}
		switch base := m.GetBaseAsOfUnixNano(); {
		case base == 0:
			var live []verifier.LiveTask
			if live, err = liveTasks(m.GetLiveTasks(), m.GetLiveTasksCreated()); err == nil {
				err = view.UpdateTasks(asOf, live)
			}
		case base != last:
			// A gap in the stream: start again from a full message.
			return got, fmt.Errorf("liveness delta applies to %d, the last update was %d", base, last)
		default:
			var added []verifier.LiveTask
			if added, err = liveTasks(m.GetAdded(), m.GetAddedCreated()); err == nil {
				err = view.ApplyTasks(asOf, added, m.GetRemoved())
			}
		}
		if err != nil {
			// Not newer than the view (another registrar's listing
			// after a reconnect, or a replay): deltas on it cannot
			// apply either, so start again.
			return got, fmt.Errorf("liveness update refused: %w", err)
		}
		last = m.GetAsOfUnixNano()
		got = true
		select {
		case <-first:
		default:
			close(first)
		}
	}
}

// liveTasks pairs a message's task IDs with their entries' creation times
// (Unix seconds; none from a registrar that does not send them).
func liveTasks(ids []string, created []int64) ([]verifier.LiveTask, error) {
	if len(created) != 0 && len(created) != len(ids) {
		return nil, fmt.Errorf("liveness message with %d tasks and %d creation times", len(ids), len(created))
	}
	ts := make([]verifier.LiveTask, len(ids))
	for i, id := range ids {
		ts[i].ID = id
		if len(created) != 0 && created[i] != 0 {
			ts[i].Created = time.Unix(created[i], 0)
		}
	}
	return ts, nil
}
