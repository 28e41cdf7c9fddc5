package spiretest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spiffe/go-spiffe/v2/svid/jwtsvid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// fetchTimeout bounds one Workload API call made by the Wait helpers.
const fetchTimeout = 5 * time.Second

// pollInterval is how often the Wait helpers ask the Workload API again.
const pollInterval = 100 * time.Millisecond

// Addr returns the Workload API address for go-spiffe:
// "unix://" + SocketPath, for workloadapi.WithAddr.
func (a *Agent) Addr() string { return "unix://" + a.SocketPath }

// FetchX509SVID makes one Workload API call for the caller's default
// X.509-SVID. A caller without an identity gets a PermissionDenied status
// ("no identity issued").
func (a *Agent) FetchX509SVID(ctx context.Context) (*x509svid.SVID, error) {
	return workloadapi.FetchX509SVID(ctx, workloadapi.WithAddr(a.Addr()))
}

// FetchJWTSVID makes one Workload API call for a JWT-SVID for audience
// (and extra audiences) of the caller's default identity.
func (a *Agent) FetchJWTSVID(ctx context.Context, audience string, extra ...string) (*jwtsvid.SVID, error) {
	params := jwtsvid.Params{Audience: audience, ExtraAudiences: extra}
	return workloadapi.FetchJWTSVID(ctx, params, workloadapi.WithAddr(a.Addr()))
}

// WaitX509SVID polls the Workload API until it returns an X.509-SVID for
// which want returns true (any SVID if want is nil), and returns it. After
// timeout it fails the test with the last error or the last SVID's ID.
func (a *Agent) WaitX509SVID(t testing.TB, timeout time.Duration, want func(*x509svid.SVID) bool) *x509svid.SVID {
	t.Helper()
	var got *x509svid.SVID
	err := poll(timeout, pollInterval, func() (bool, error) {
		svid, err := withTimeout(a.FetchX509SVID)
		if err != nil {
			return false, err
		}
		got = svid
		if want != nil && !want(svid) {
			return false, fmt.Errorf("got X.509-SVID %s, not the one wanted", svid.ID)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("spiretest: no X.509-SVID from %s: %v", a.SocketPath, err)
	}
	return got
}

// WaitJWTSVID polls the Workload API until it returns a JWT-SVID for
// audience for which want returns true (any if want is nil), and returns it.
// After timeout it fails the test with the last error.
func (a *Agent) WaitJWTSVID(t testing.TB, timeout time.Duration, audience string, want func(*jwtsvid.SVID) bool) *jwtsvid.SVID {
	t.Helper()
	var got *jwtsvid.SVID
	err := poll(timeout, pollInterval, func() (bool, error) {
		svid, err := withTimeout(func(ctx context.Context) (*jwtsvid.SVID, error) {
			return a.FetchJWTSVID(ctx, audience)
		})
		if err != nil {
			return false, err
		}
		got = svid
		if want != nil && !want(svid) {
			return false, fmt.Errorf("got JWT-SVID %s, not the one wanted", svid.ID)
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("spiretest: no JWT-SVID for %q from %s: %v", audience, a.SocketPath, err)
	}
	return got
}

// WaitNoIdentity polls the Workload API until the caller has no X.509-SVID
// any more (PermissionDenied, e.g. after its entry was deleted) and returns
// that error. After timeout it fails the test with the SVID still served.
func (a *Agent) WaitNoIdentity(t testing.TB, timeout time.Duration) error {
	t.Helper()
	var denied error
	err := poll(timeout, pollInterval, func() (bool, error) {
		svid, err := withTimeout(a.FetchX509SVID)
		switch {
		case status.Code(err) == codes.PermissionDenied:
			denied = err
			return true, nil
		case err != nil:
			return false, err
		}
		return false, fmt.Errorf("still served X.509-SVID %s", svid.ID)
	})
	if err != nil {
		t.Fatalf("spiretest: identity not withdrawn at %s: %v", a.SocketPath, err)
	}
	return denied
}

// withTimeout calls fetch with a context bounded by fetchTimeout.
func withTimeout[T any](fetch func(context.Context) (T, error)) (T, error) {
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	return fetch(ctx)
}
