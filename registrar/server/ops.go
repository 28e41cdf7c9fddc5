package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

const (
	// readyFresh is how long an answer of the Entry API keeps the daemon
	// ready without probing it again.
	readyFresh = 10 * time.Second
	// probeTimeout bounds the readiness probe of the Entry API.
	probeTimeout = 2 * time.Second
)

// entryHealth remembers when the SPIRE server's Entry API last answered a
// call on the registrar's connection; a call it did not answer forgets it.
type entryHealth struct {
	last atomic.Pointer[time.Time] // nil: no answer, or the last call failed
}

// unary is the connection's client interceptor: it watches every call, the
// registrar's and the readiness probe's.
func (h *entryHealth) unary(ctx context.Context, method string, req, reply any, cc *grpc.ClientConn, invoker grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	err := invoker(ctx, method, req, reply, cc, opts...)
	if answered(err) {
		now := time.Now()
		h.last.Store(&now)
	} else {
		h.last.Store(nil)
	}
	return err
}

// recent says whether the last call was answered less than readyFresh ago.
func (h *entryHealth) recent() bool {
	last := h.last.Load()
	return last != nil && time.Since(*last) < readyFresh
}

// answered says whether SPIRE served a call: success, or an answer about
// the request itself (NotFound, AlreadyExists, InvalidArgument,
// FailedPrecondition). Anything else — the socket unreachable, a timeout,
// SPIRE failing (Internal, Unknown: e.g. its datastore is down) or
// refusing the registrar (PermissionDenied, Unauthenticated) — is not.
func answered(err error) bool {
	switch status.Code(err) {
	case codes.OK, codes.NotFound, codes.AlreadyExists, codes.InvalidArgument, codes.FailedPrecondition:
		return true
	}
	return false
}

// ready is nil when the daemon can issue tasks: an issuance policy is
// loaded, and the Entry API answered a call in the last readyFresh or
// answers a probe now (ListEntries of one entry, within probeTimeout).
func (d *Daemon) ready(ctx context.Context) error {
	if d.policy.Policy() == nil {
		return errors.New("no issuance policy loaded")
	}
	if d.entry.recent() {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	_, err := entryv1.NewEntryClient(d.conn).ListEntries(ctx, &entryv1.ListEntriesRequest{PageSize: 1})
	if !answered(err) {
		return fmt.Errorf("SPIRE Entry API at %s: %w", d.cfg.ServerAPISocket, err)
	}
	return nil
}

// opsHandler serves /metrics, /healthz (the process is up) and /readyz
// (Daemon.ready).
func (d *Daemon) opsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.metrics.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := d.ready(r.Context()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ready\n")
	})
	return mux
}
