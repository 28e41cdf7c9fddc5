// Command kbservice is a small knowledge-base and ticket service.
//
// With -listen it protects itself with the verifier library: SPIFFE mTLS
// with its own SVID from the Workload API, verifier.Middleware deciding
// every request with an HCL policy directory (reloaded on SIGHUP), and an
// audit log. Allowed requests see the caller's task in the request context.
//
//	kbservice -listen 127.0.0.1:8444 -policies ./policies -audit kb-audit.log
//
// With -behind-proxy it serves plain HTTP on loopback for an
// agentid-verifier proxy in front of it, and reads the caller's identity
// from the x-agentid-* headers the proxy sets (and strips from callers).
//
//	kbservice -behind-proxy 127.0.0.1:8080
//
// With -mcp it serves the knowledge base and tickets as MCP tools
// (kb_search, kb_read, ticket_create) over stdin/stdout, for an
// agentid-verifier MCP gateway to run as its upstream_command.
//
//	mcp { upstream_command = ["/usr/local/bin/kbservice", "-mcp"] … }
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:8444", "mTLS listen address")
	policyDir := flag.String("policies", "policies", "HCL policy directory")
	auditPath := flag.String("audit", "", "audit log file (optional)")
	socket := flag.String("socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "Workload API socket")
	behind := flag.String("behind-proxy", "", "serve plain HTTP on this loopback address behind an agentid-verifier proxy")
	stdio := flag.Bool("mcp", false, "serve the knowledge base and tickets as MCP tools over stdin/stdout (behind an agentid-verifier MCP gateway)")
	flag.Parse()
	if *stdio {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		if err := runMCP(ctx); err != nil && ctx.Err() == nil {
			log.Fatal("kbservice: ", err)
		}
		return
	}
	if *behind != "" {
		if err := runBehindProxy(*behind); err != nil {
			log.Fatal("kbservice: ", err)
		}
		return
	}
	if err := run(*listen, *policyDir, *auditPath, *socket); err != nil {
		log.Fatal("kbservice: ", err)
	}
}

func run(listen, policyDir, auditPath, socket string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if !strings.Contains(socket, "://") {
		socket = "unix://" + socket
	}
	src, err := workloadapi.NewX509Source(ctx, workloadapi.WithClientOptions(workloadapi.WithAddr(socket)))
	if err != nil {
		return err
	}
	defer src.Close()
	store, diags := policies.NewStore(policyDir)
	if diags.HasErrors() {
		return diags
	}
	v := &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{X509Bundles: src}), Policy: verifier.StorePolicy{Store: store}}
	if auditPath != "" {
		w, err := audit.Open(auditPath, audit.Options{Signer: src})
		if err != nil {
			return err
		}
		defer w.Close()
		v.Audit = w
	}
	go reloadOnHUP(ctx, store, policyDir)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /kb/{doc}", func(w http.ResponseWriter, r *http.Request) {
		p, _ := verifier.PeerFromContext(r.Context())
		fmt.Fprintf(w, "document %s for %s (task %s on behalf of %s)\n", r.PathValue("doc"), p.Agent(), p.Task(), p.Principal())
	})
	mux.HandleFunc("POST /tickets", func(w http.ResponseWriter, r *http.Request) {
		p, _ := verifier.PeerFromContext(r.Context())
		fmt.Fprintf(w, "ticket created by %s\n", p.ID())
	})
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: v.Middleware(mux), TLSConfig: verifier.ServerTLSConfig(src, src), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Printf("kbservice: serving https://%s (policy %s)", l.Addr(), store.Set().Digest())
	if err := srv.ServeTLS(l, "", ""); err != http.ErrServerClosed {
		return err
	}
	return nil
}

func reloadOnHUP(ctx context.Context, store *policies.Store, dir string) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if diags := store.Reload(dir); diags.HasErrors() {
				log.Printf("kbservice: policy reload failed, keeping the last good one: %s", diags.Error())
			}
		}
	}
}

// runBehindProxy serves the same routes in plain HTTP, trusting the identity
// headers of the agentid-verifier proxy (listen on loopback only).
func runBehindProxy(addr string) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kb/{doc}", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "document %s for %s (task %s on behalf of %s; allowed by %s)\n", r.PathValue("doc"),
			r.Header.Get(verifier.HeaderAgent), r.Header.Get(verifier.HeaderTask), r.Header.Get(verifier.HeaderPrincipal), r.Header.Get(verifier.HeaderRule))
		writeReceipt(w, r)
	})
	mux.HandleFunc("POST /tickets", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "ticket created by %s (allowed by %s)\n", r.Header.Get(verifier.HeaderSPIFFEID), r.Header.Get(verifier.HeaderRule))
		writeReceipt(w, r)
	})
	srv := &http.Server{Addr: addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	log.Printf("kbservice: serving http://%s behind the agentid-verifier proxy", addr)
	if err := srv.ListenAndServe(); err != http.ErrServerClosed {
		return err
	}
	return nil
}

// writeReceipt tells the caller the receipt of the verifier's decision
// (x-agentid-receipt: the decision log's origin and index), which
// `agentid audit prove --index N` turns into evidence.
func writeReceipt(w http.ResponseWriter, r *http.Request) {
	if ref := r.Header.Get(verifier.HeaderReceipt); ref != "" {
		fmt.Fprintf(w, "receipt: %s\n", ref)
	}
}
