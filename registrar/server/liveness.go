package server

import (
	"context"
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
// subscribers (verifiers' SPIFFE IDs), with a snapshot every interval
// (default 1 s).
func WithLiveness(subscribers []spiffeid.ID, interval time.Duration) Option {
	return optionFunc(func(c *config) {
		c.livenessSubscribers = subscribers
		c.livenessInterval = interval
	})
}

// WatchLiveness streams the live tasks to an authorized verifier: a
// snapshot at once, then one per interval, each listed from SPIRE (the
// registrar keeps nothing). A listing that fails ends the stream with its
// error; the verifier reconnects (to this or another registrar).
func (s *Service) WatchLiveness(_ *registrarv1.WatchLivenessRequest, stream grpc.ServerStreamingServer[registrarv1.LivenessSnapshot]) error {
	ctx := stream.Context()
	caller, err := mtlsCaller(ctx)
	if err != nil {
		return err
	}
	if !containsID(s.cfg.livenessSubscribers, caller) {
		return status.Errorf(codes.PermissionDenied, "%s is not a liveness subscriber of this registrar", caller)
	}
	interval := s.cfg.livenessInterval
	if interval <= 0 {
		interval = time.Second
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		asOf := time.Now()
		ids, err := s.r.LiveTasks(ctx)
		if err != nil {
			return status.Errorf(codes.Unavailable, "listing tasks: %v", err)
		}
		snap := &registrarv1.LivenessSnapshot{AsOfUnixNano: asOf.UnixNano(), LiveTasks: make([]string, len(ids))}
		for i, id := range ids {
			snap.LiveTasks[i] = id.String()
		}
		if err := stream.Send(snap); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
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
