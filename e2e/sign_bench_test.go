package e2e

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/agentid/agentid/internal/spiretest"
	"github.com/agentid/agentid/registrar"
	"github.com/agentid/agentid/svid"
	svidv1 "github.com/spiffe/spire-api-sdk/proto/spire/api/server/svid/v1"
)

// BenchmarkX509Sign signs task X.509-SVIDs on a real SPIRE server with the
// composer plugin: the server's signing rate, for the TTL arithmetic of
// docs/registrar.md. The calls are svid/v1 MintX509SVID on the local API
// socket, 4 at a time, over 100 tasks (one CSR each, made up front); the
// agents' rotations (BatchNewX509SVID) take the same CA and composer path
// plus the agent API's authorization. "cached": the composer's cache
// serves every lookup; "lookup": cache_ttl = "0s", every signing reads
// the task's entry, as a re-signing at half an X.509-SVID TTL of minutes
// does with the default 5 s cache.
func BenchmarkX509Sign(b *testing.B) {
	composer := spiretest.BuildCmd(b, "./cmd/agentid-composer")
	for _, bc := range []struct{ name, cacheTTL string }{{"cached", "5m"}, {"lookup", "0s"}} {
		b.Run(bc.name, func(b *testing.B) { signBench(b, composer, bc.cacheTTL) })
	}
}

func signBench(b *testing.B, composer, cacheTTL string) {
	srv := spiretest.StartServer(b, spiretest.Options{LogLevel: "WARN",
		Plugins: spiretest.PluginBlock(b, "CredentialComposer", "agentid", composer,
			`server_api_socket = "`+spiretest.SocketPlaceholder+`"`+"\ncache_ttl = \""+cacheTTL+"\"")})
	pol, err := registrar.ParsePolicy([]byte(issuancePolicy), "issuance.hcl")
	if err != nil {
		b.Fatal(err)
	}
	r := registrar.New(srv.Dial(b), srv.TrustDomain, pol)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	const tasks, workers = 100, 4
	csrs := make([][]byte, tasks)
	for i := range csrs {
		task, err := r.Create(ctx, registrar.Request{Agent: "planner", Task: fmt.Sprintf("S-%d", i), Model: "openai/gpt-4o",
			Prompt: digest, Scope: []string{"kb:read"}, Principal: "spiffe://example.org/user/alice", TTL: time.Hour,
			ParentID: "spiffe://example.org/agent/node-1"})
		if err != nil {
			b.Fatal(err)
		}
		u, _ := url.Parse(task.ID.String())
		if csrs[i], err = x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{URIs: []*url.URL{u}}, key); err != nil {
			b.Fatal(err)
		}
	}
	client := svidv1.NewSVIDClient(srv.Dial(b))
	mint := func(i int) error {
		resp, err := client.MintX509SVID(ctx, &svidv1.MintX509SVIDRequest{Csr: csrs[i%tasks], Ttl: 300})
		if err != nil {
			return err
		}
		if len(resp.GetSvid().GetCertChain()) == 0 {
			return fmt.Errorf("no certificate")
		}
		if i < tasks { // the first of each task: the composer's claims are there
			cert, err := x509.ParseCertificate(resp.GetSvid().GetCertChain()[0])
			if err != nil {
				return err
			}
			if _, found, err := svid.FromCertificate(cert); !found || err != nil {
				return fmt.Errorf("task %d: claims found %v, %v", i, found, err)
			}
		}
		return nil
	}
	for i := range tasks { // warm the composer's cache
		if err := mint(i); err != nil {
			b.Fatal(err)
		}
	}
	var next atomic.Int64
	b.ResetTimer()
	start := time.Now()
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := mint(tasks + i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "svids/s")
}
