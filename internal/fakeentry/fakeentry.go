// Package fakeentry is an in-memory fake of SPIRE's Entry API
// (spire.api.server.entry.v1) served over real gRPC on a unix socket, for
// unit tests of the registrar and the composer. It implements the calls they
// use — ListEntries (by SPIFFE ID, parent ID, hint and selectors, paged),
// GetEntry, BatchCreateEntry (ALREADY_EXISTS for an entry with the same
// SPIFFE ID, parent ID and selectors, as SPIRE does), BatchDeleteEntry and
// CountEntries — and counts the calls so that caching can be observed.
// Integration tests use a real SPIRE server instead (internal/spiretest).
package fakeentry

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"

	entryv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/entry/v1"
	"github.com/spiffe/spire-api-sdk/proto/spire/api/types"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
)

// Server is the fake Entry API. The zero value is not usable; call Start.
type Server struct {
	entryv1.UnimplementedEntryServer

	// SocketPath is the unix socket the server listens on.
	SocketPath string
	// ListCalls counts ListEntries calls.
	ListCalls atomic.Int64

	mu       sync.Mutex
	entries  []*types.Entry
	nextID   int
	failErr  error
	writeErr *types.Status
}

// Start serves a fresh fake on a unix socket under a short temporary
// directory and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "fe")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	s := &Server{SocketPath: filepath.Join(dir, "api.sock")}
	l, err := net.Listen("unix", s.SocketPath)
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	entryv1.RegisterEntryServer(g, s)
	go g.Serve(l) //nolint:errcheck // ends with Stop
	t.Cleanup(g.Stop)
	return s
}

// Addr is the gRPC target of the socket ("unix://…").
func (s *Server) Addr() string { return "unix://" + s.SocketPath }

// Fail makes every call fail with err (nil restores service).
func (s *Server) Fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failErr = err
}

// FailWrites makes every entry of BatchCreateEntry and BatchDeleteEntry
// fail with st while reads go on working, as SPIRE answers when its
// datastore cannot take writes (e.g. a full disk: Internal); nil restores
// them.
func (s *Server) FailWrites(st *types.Status) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.writeErr = st
}

// Add stores entries as they are (assigning IDs to those without) and
// returns their IDs.
func (s *Server) Add(entries ...*types.Entry) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	ids := make([]string, len(entries))
	for i, e := range entries {
		ids[i] = s.addLocked(proto.Clone(e).(*types.Entry)).Id
	}
	return ids
}

// Entries returns copies of the stored entries.
func (s *Server) Entries() []*types.Entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*types.Entry, len(s.entries))
	for i, e := range s.entries {
		out[i] = proto.Clone(e).(*types.Entry)
	}
	return out
}

// Delete removes the entries with the given IDs, as an operator's
// `spire-server entry delete` would, and returns how many it found.
func (s *Server) Delete(ids ...string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := len(s.entries)
	s.entries = slices.DeleteFunc(s.entries, func(e *types.Entry) bool { return slices.Contains(ids, e.Id) })
	return n - len(s.entries)
}

func (s *Server) addLocked(e *types.Entry) *types.Entry {
	if e.Id == "" {
		s.nextID++
		e.Id = "entry-" + strconv.Itoa(s.nextID)
	}
	e.RevisionNumber++
	s.entries = append(s.entries, e)
	return e
}

// ListEntries implements entryv1.EntryServer.
func (s *Server) ListEntries(_ context.Context, req *entryv1.ListEntriesRequest) (*entryv1.ListEntriesResponse, error) {
	s.ListCalls.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr != nil {
		return nil, s.failErr
	}
	var matched []*types.Entry
	for _, e := range s.entries {
		if matchFilter(e, req.GetFilter()) {
			matched = append(matched, proto.Clone(e).(*types.Entry))
		}
	}
	start := 0
	if tok := req.GetPageToken(); tok != "" {
		n, err := strconv.Atoi(tok)
		if err != nil || n < 0 || n > len(matched) {
			return nil, status.Errorf(codes.InvalidArgument, "bad page token %q", tok)
		}
		start = n
	}
	end := len(matched)
	if size := int(req.GetPageSize()); size > 0 && start+size < end {
		end = start + size
	}
	resp := &entryv1.ListEntriesResponse{Entries: matched[start:end]}
	if end < len(matched) {
		resp.NextPageToken = strconv.Itoa(end)
	}
	return resp, nil
}

// CountEntries implements entryv1.EntryServer.
func (s *Server) CountEntries(context.Context, *entryv1.CountEntriesRequest) (*entryv1.CountEntriesResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &entryv1.CountEntriesResponse{Count: int32(len(s.entries))}, s.failErr
}

// GetEntry implements entryv1.EntryServer.
func (s *Server) GetEntry(_ context.Context, req *entryv1.GetEntryRequest) (*types.Entry, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr != nil {
		return nil, s.failErr
	}
	for _, e := range s.entries {
		if e.Id == req.GetId() {
			return proto.Clone(e).(*types.Entry), nil
		}
	}
	return nil, status.Error(codes.NotFound, "entry not found")
}

// BatchCreateEntry implements entryv1.EntryServer.
func (s *Server) BatchCreateEntry(_ context.Context, req *entryv1.BatchCreateEntryRequest) (*entryv1.BatchCreateEntryResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr != nil {
		return nil, s.failErr
	}
	resp := &entryv1.BatchCreateEntryResponse{}
	for _, e := range req.GetEntries() {
		if s.writeErr != nil {
			resp.Results = append(resp.Results, &entryv1.BatchCreateEntryResponse_Result{Status: proto.Clone(s.writeErr).(*types.Status)})
			continue
		}
		if existing := s.similarLocked(e); existing != nil {
			resp.Results = append(resp.Results, &entryv1.BatchCreateEntryResponse_Result{
				Status: &types.Status{Code: int32(codes.AlreadyExists), Message: "similar entry already exists"},
				Entry:  proto.Clone(existing).(*types.Entry),
			})
			continue
		}
		created := s.addLocked(proto.Clone(e).(*types.Entry))
		resp.Results = append(resp.Results, &entryv1.BatchCreateEntryResponse_Result{
			Status: &types.Status{Code: int32(codes.OK), Message: "OK"},
			Entry:  proto.Clone(created).(*types.Entry),
		})
	}
	return resp, nil
}

// BatchDeleteEntry implements entryv1.EntryServer.
func (s *Server) BatchDeleteEntry(_ context.Context, req *entryv1.BatchDeleteEntryRequest) (*entryv1.BatchDeleteEntryResponse, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failErr != nil {
		return nil, s.failErr
	}
	resp := &entryv1.BatchDeleteEntryResponse{}
	for _, id := range req.GetIds() {
		i := slices.IndexFunc(s.entries, func(e *types.Entry) bool { return e.Id == id })
		res := &entryv1.BatchDeleteEntryResponse_Result{Id: id, Status: &types.Status{Code: int32(codes.OK), Message: "OK"}}
		if s.writeErr != nil {
			res.Status = proto.Clone(s.writeErr).(*types.Status)
		} else if i < 0 {
			res.Status = &types.Status{Code: int32(codes.NotFound), Message: "entry not found"}
		} else {
			s.entries = slices.Delete(s.entries, i, i+1)
		}
		resp.Results = append(resp.Results, res)
	}
	return resp, nil
}

func (s *Server) similarLocked(e *types.Entry) *types.Entry {
	for _, x := range s.entries {
		if idString(x.SpiffeId) == idString(e.SpiffeId) && idString(x.ParentId) == idString(e.ParentId) &&
			sameSet(selectorStrings(x.Selectors), selectorStrings(e.Selectors)) {
			return x
		}
	}
	return nil
}

func matchFilter(e *types.Entry, f *entryv1.ListEntriesRequest_Filter) bool {
	if f == nil {
		return true
	}
	if f.BySpiffeId != nil && idString(f.BySpiffeId) != idString(e.SpiffeId) {
		return false
	}
	if f.ByParentId != nil && idString(f.ByParentId) != idString(e.ParentId) {
		return false
	}
	if f.ByHint != nil && f.ByHint.GetValue() != e.GetHint() {
		return false
	}
	if m := f.BySelectors; m != nil {
		return matchSelectors(selectorStrings(e.Selectors), selectorStrings(m.Selectors), m.Match)
	}
	return true
}

func matchSelectors(have, want []string, how types.SelectorMatch_MatchBehavior) bool {
	contains := func(set, sub []string) bool {
		for _, s := range sub {
			if !slices.Contains(set, s) {
				return false
			}
		}
		return true
	}
	switch how {
	case types.SelectorMatch_MATCH_EXACT:
		return sameSet(have, want)
	case types.SelectorMatch_MATCH_SUBSET:
		return len(have) > 0 && contains(want, have)
	case types.SelectorMatch_MATCH_SUPERSET:
		return contains(have, want)
	case types.SelectorMatch_MATCH_ANY:
		return slices.ContainsFunc(want, func(s string) bool { return slices.Contains(have, s) })
	}
	return false
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(slices.Compact(a), slices.Compact(b))
}

func selectorStrings(sels []*types.Selector) []string {
	out := make([]string, len(sels))
	for i, s := range sels {
		out[i] = s.Type + ":" + s.Value
	}
	return out
}

func idString(id *types.SPIFFEID) string {
	if id == nil {
		return ""
	}
	return fmt.Sprintf("spiffe://%s%s", id.TrustDomain, id.Path)
}
