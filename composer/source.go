package composer

import (
	"context"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
)

// EntrySource finds the registration entries of a SPIFFE ID. It is the
// seam between the composer and SPIRE: [APISource] reads the server's Entry
// API; tests may plug in anything.
type EntrySource interface {
	// EntriesByID returns the entries whose SPIFFE ID is id. It needs to
	// return no more than two: a second one is already a refusal.
	EntriesByID(ctx context.Context, id spiffeid.ID) ([]*types.Entry, error)
}

// APISource is an [EntrySource] on SPIRE's Entry API (entry/v1).
type APISource struct {
	client entryv1.EntryClient
}

// NewAPISource returns an [EntrySource] that calls client.
func NewAPISource(client entryv1.EntryClient) *APISource {
	return &APISource{client: client}
}

// maxPages bounds the pages read for one SPIFFE ID.
const maxPages = 4

// EntriesByID lists the entries of id, asking only for the fields the
// composer reads, and stops as soon as it has two.
func (s *APISource) EntriesByID(ctx context.Context, id spiffeid.ID) ([]*types.Entry, error) {
	req := &entryv1.ListEntriesRequest{
		Filter: &entryv1.ListEntriesRequest_Filter{
			BySpiffeId: &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()},
		},
		OutputMask: &types.EntryMask{SpiffeId: true, Selectors: true, ExpiresAt: true, RevisionNumber: true}, // and the ID, always set
		PageSize:   2,
	}
	var out []*types.Entry
	for range maxPages {
		resp, err := s.client.ListEntries(ctx, req)
		if err != nil {
			return nil, err
		}
		out = append(out, resp.GetEntries()...)
		if len(out) >= 2 || resp.GetNextPageToken() == "" {
			break
		}
		req.PageToken = resp.GetNextPageToken()
	}
	return out, nil
}

// Dial returns a client connection to the server API socket at target
// ("unix:///path"). It does not connect: the first lookup does, so a
// server whose API is not listening yet (start-up signing) is never
// blocked. Reconnection backs off to at most one second, so lookups work
// again soon after the API comes up.
func Dial(target string) (*grpc.ClientConn, error) {
	return grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: time.Second},
			MinConnectTimeout: 2 * time.Second,
		}),
	)
}
