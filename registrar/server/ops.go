package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	spb "google.golang.org/genproto/googleapis/rpc/status"
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
// call on the registrar's connection (a call it did not answer forgets
// it), and whether its last write failed.
type entryHealth struct {
	last atomic.Pointer[time.Time] // nil: no answer, or the last call failed
	// writeErr is the failure of the last entry written or deleted (nil:
	// it succeeded, or none yet): SPIRE answers reads while its datastore
	// refuses writes (a full disk), and reports that per entry.
	writeErr atomic.Pointer[error]
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
	if err == nil {
		h.noteWrites(reply)
	}
	return err
}

// noteWrites records the outcome of a BatchCreateEntry or BatchDeleteEntry
// from its per-entry results: one that SPIRE failed (not an answer about
// the entry itself, see answered) marks writes failing, one written or
// deleted clears it.
func (h *entryHealth) noteWrites(reply any) {
	var sts []*types.Status
	switch r := reply.(type) {
	case *entryv1.BatchCreateEntryResponse:
		for _, res := range r.GetResults() {
			sts = append(sts, res.GetStatus())
		}
	case *entryv1.BatchDeleteEntryResponse:
		for _, res := range r.GetResults() {
			sts = append(sts, res.GetStatus())
		}
	default:
		return
	}
	for _, st := range sts {
		err := status.ErrorProto(&spb.Status{Code: st.GetCode(), Message: st.GetMessage()})
		switch {
		case !answered(err):
			h.writeErr.Store(&err)
			return
		case err == nil:
			h.writeErr.Store(nil)
		}
	}
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
	if d.entry.writeErr.Load() != nil {
		// Writes failed last: probe with one, until one succeeds.
		if err := d.probeWrite(ctx); err != nil {
			return fmt.Errorf("SPIRE cannot write entries: %w", err)
		}
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

// probeWrite creates and deletes an entry that no workload can match (a
// selector type no attestor has, under a parent ID no agent has, expiring
// within a minute should the delete fail), within probeTimeout. It runs
// only while writes are failing, never in steady state.
func (d *Daemon) probeWrite(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	var nonce [8]byte
	if _, err := rand.Read(nonce[:]); err != nil {
		return err
	}
	n := hex.EncodeToString(nonce[:])
	td := d.cfg.TrustDomain.Name()
	client := entryv1.NewEntryClient(d.conn)
	resp, err := client.BatchCreateEntry(ctx, &entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{{
		SpiffeId:  &types.SPIFFEID{TrustDomain: td, Path: "/agentid/readyz-probe/" + n},
		ParentId:  &types.SPIFFEID{TrustDomain: td, Path: "/agentid/readyz-probe"},
		Selectors: []*types.Selector{{Type: "agentid-readyz-probe", Value: n}},
		ExpiresAt: time.Now().Add(time.Minute).Unix(),
	}}})
	if err != nil {
		return err
	}
	if len(resp.GetResults()) != 1 {
		return errors.New("BatchCreateEntry answered with no result")
	}
	res := resp.GetResults()[0]
	if st := res.GetStatus(); codes.Code(st.GetCode()) != codes.OK {
		return status.Error(codes.Code(st.GetCode()), st.GetMessage())
	}
	del, err := client.BatchDeleteEntry(ctx, &entryv1.BatchDeleteEntryRequest{Ids: []string{res.GetEntry().GetId()}})
	if err != nil {
		return err
	}
	for _, r := range del.GetResults() {
		if st := r.GetStatus(); codes.Code(st.GetCode()) != codes.OK {
			return status.Error(codes.Code(st.GetCode()), st.GetMessage())
		}
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
