package spiretest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/spiffeid"
	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// CreateEntry registers a workload entry through the server's Entry API and
// returns its ID. Selectors are "type:value" strings as on the command line,
// e.g. "unix:uid:1000"; the value may contain ':'. It fails the test if the
// server refuses the entry (including ALREADY_EXISTS).
func (s *Server) CreateEntry(t testing.TB, spiffeID, parentID string, selectors ...string) string {
	t.Helper()
	entry := &types.Entry{
		SpiffeId:  apiID(t, spiffeID),
		ParentId:  apiID(t, parentID),
		Selectors: apiSelectors(t, selectors),
	}
	return s.CreateEntryFrom(t, entry)
}

// CreateEntryFrom registers entry as given (TTLs, DNS names, hints, …)
// and returns its ID.
func (s *Server) CreateEntryFrom(t testing.TB, entry *types.Entry) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := grpc.NewClient("unix://"+s.SocketPath, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatalf("spiretest: dial spire-server: %v", err)
	}
	defer conn.Close()
	resp, err := entryv1.NewEntryClient(conn).BatchCreateEntry(ctx,
		&entryv1.BatchCreateEntryRequest{Entries: []*types.Entry{entry}})
	if err != nil {
		t.Fatalf("spiretest: create entry: %v", err)
	}
	r := resp.Results[0]
	if codes.Code(r.Status.Code) != codes.OK {
		t.Fatalf("spiretest: create entry %v: %v: %s", entry, codes.Code(r.Status.Code), r.Status.Message)
	}
	return r.Entry.Id
}

func apiID(t testing.TB, s string) *types.SPIFFEID {
	t.Helper()
	id, err := spiffeid.FromString(s)
	if err != nil {
		t.Fatalf("spiretest: %v", err)
	}
	return &types.SPIFFEID{TrustDomain: id.TrustDomain().Name(), Path: id.Path()}
}

func apiSelectors(t testing.TB, selectors []string) []*types.Selector {
	t.Helper()
	out := make([]*types.Selector, 0, len(selectors))
	for _, sel := range selectors {
		typ, value, ok := strings.Cut(sel, ":")
		if !ok || typ == "" || value == "" {
			t.Fatalf("spiretest: selector %q is not type:value", sel)
		}
		out = append(out, &types.Selector{Type: typ, Value: value})
	}
	return out
}
