package verifier_test

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/internal/testca"
	"github.com/agentid/agentid/verifier"
)

// residentPeers is how many distinct task SVIDs TestResidentMemory shows
// the verifier: the default Authenticator cache size.
const residentPeers = 10000

// residentBound is the heap the verifier may hold with a 1,000-rule policy
// and a full cache.
const residentBound = 128 << 20

// TestResidentMemory authenticates and decides 10,000 distinct task SVIDs
// (one certificate each, through Authenticator.Certificates and
// Verifier.Check with the generated 1,000-rule policy and an audit log),
// then 10,000 more, and checks the live heap after GC: under 128 MiB, and
// not grown by the second 10,000 (the cache is bounded, not leaking). The
// certificates are dropped after use, so what stays live is the verifier's.
func TestResidentMemory(t *testing.T) {
	base := heapAfterGC()
	ca := testca.New(t, td, time.Now())
	w, err := audit.Open(filepath.Join(t.TempDir(), "audit.log"), audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	v := &verifier.Verifier{
		Auth:   verifier.NewAuthenticator(verifier.Config{X509Bundles: ca.X509Bundle()}),
		Policy: genPolicy(t, benchRules),
		Audit:  w,
	}
	withPolicy := heapAfterGC()

	see(t, ca, v, 0, residentPeers)
	full := heapAfterGC()
	see(t, ca, v, residentPeers, residentPeers)
	after := heapAfterGC()

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.Logf("heap in use after GC: %.1f MiB (process), of which policy %.1f MiB, %d cached peers %.1f MiB; after %d more peers %.1f MiB; Sys %.1f MiB",
		mib(full), mib(withPolicy-base), residentPeers, mib(full-withPolicy), residentPeers, mib(after), mib(ms.Sys))
	if full > residentBound || after > residentBound {
		t.Fatalf("heap in use %.1f MiB / %.1f MiB, want under %d MiB", mib(full), mib(after), residentBound>>20)
	}
	// An unbounded cache would grow by about what the first 10,000 peers
	// cost; a bounded one replaces entries and stays level. Half of that
	// cost separates the two with a wide margin either way, so allocator
	// noise (a few MiB) cannot fail the test.
	cacheCost := full - withPolicy
	if after > full && after-full > cacheCost/2 {
		t.Fatalf("heap grew from %.1f MiB to %.1f MiB with %d more peers (the first %d cost %.1f MiB): the cache is not bounded",
			mib(full), mib(after), residentPeers, residentPeers, mib(cacheCost))
	}
	runtime.KeepAlive(v)
}

// see authenticates and decides n distinct peers, tasks first.. first+n-1
// of policygen's 900 allowed agents.
func see(t *testing.T, ca *testca.CA, v *verifier.Verifier, first, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Hour)
	for i := first; i < first+n; i++ {
		agent := i % 900
		s := genSVID(t, ca, agent, i, deadline)
		r := v.Decide(context.Background(), &verifier.Query{Credential: verifier.Credential{Kind: verifier.CredentialX509, Chain: s.Certificates},
			Action: verifier.Action{Kind: "http", Method: "GET", Path: fmt.Sprintf("/svc%d/docs/%d", agent, i)}})
		if !r.Allowed() {
			t.Fatalf("peer %d denied: %s", i, r.Message())
		}
	}
	if err := v.Audit.Flush(); err != nil {
		t.Fatal(err)
	}
}

// heapAfterGC is the live heap (HeapAlloc) after a full collection. It
// counts reachable objects only, not the spans the allocator keeps around,
// so it does not move with fragmentation.
func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
