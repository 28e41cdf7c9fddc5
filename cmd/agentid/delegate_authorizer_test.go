package main

import (
	"crypto/x509"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/testca"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
)

type svidSource struct{ s *x509svid.SVID }

func (s svidSource) GetX509SVID() (*x509svid.SVID, error) { return s.s, nil }

// TestDelegateAuthorizerRefusesTasks (review 16, suspicion): without
// --registrar-id, `agentid task create --delegate` took any workload of the
// trust domain for the registrar — another agent's task too, which could
// answer with a forged task record for the caller to launch. A task
// SPIFFE ID is never the registrar now; --registrar-id names exactly one.
func TestDelegateAuthorizerRefusesTasks(t *testing.T) {
	td := spiffeid.RequireTrustDomainFromString("example.org")
	ca := testca.New(t, td, time.Now())
	own := ca.CreateX509SVID(spiffeid.RequireFromString("spiffe://example.org/agent/planner/task/P"))
	auth, err := (&delegateFlags{}).authorizer(svidSource{own})
	if err != nil {
		t.Fatal(err)
	}
	check := func(id string) error {
		return auth(spiffeid.RequireFromString(id), [][]*x509.Certificate{})
	}
	if err := check("spiffe://example.org/agentid/registrar"); err != nil {
		t.Errorf("a registrar of the trust domain refused: %v", err)
	}
	for _, id := range []string{"spiffe://example.org/agent/evil/task/T-9", "spiffe://other.org/agentid/registrar"} {
		if err := check(id); err == nil {
			t.Errorf("%s taken for the registrar", id)
		}
	}
	auth, err = (&delegateFlags{serverID: "spiffe://example.org/agentid/registrar"}).authorizer(svidSource{own})
	if err != nil {
		t.Fatal(err)
	}
	if err := auth(spiffeid.RequireFromString("spiffe://example.org/other"), nil); err == nil || !strings.Contains(err.Error(), "unexpected ID") {
		t.Errorf("--registrar-id: another ID: %v", err)
	}
}
