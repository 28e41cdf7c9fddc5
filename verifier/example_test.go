package verifier_test

import (
	"context"
	"fmt"
	"log"
	"net"

	"github.com/agentid/agentid/policies"
	"github.com/agentid/agentid/verifier"
	authv3 "github.com/envoyproxy/go-control-plane/envoy/service/auth/v3"
	"google.golang.org/genproto/googleapis/rpc/code"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// ExampleExtAuthz_NewServer serves the verifier as Envoy's ext_authz
// gRPC service and asks it about a request for which Envoy sent only the
// peer's SPIFFE ID (include_peer_certificate is off): without the
// certificate there are no task claims, so the request is refused with
// the reason, which Envoy returns to the caller in x-agentid-deny-reason.
func ExampleExtAuthz_NewServer() {
	set, diags := policies.LoadFiles([]policies.File{{Name: "kb.hcl", Src: []byte(`
rule "read-kb" {
  effect = "allow"
  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/**"]
    }
  }
}
`)}})
	if diags.HasErrors() {
		log.Fatal(diags)
	}
	v := &verifier.Verifier{Auth: verifier.NewAuthenticator(verifier.Config{}), Policy: set}
	srv := (&verifier.ExtAuthz{V: v}).NewServer()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	go srv.Serve(l)
	defer srv.Stop()

	conn, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer conn.Close()
	resp, err := authv3.NewAuthorizationClient(conn).Check(context.Background(), &authv3.CheckRequest{Attributes: &authv3.AttributeContext{
		Source:  &authv3.AttributeContext_Peer{Principal: "spiffe://example.org/agent/researcher/task/T-42"},
		Request: &authv3.AttributeContext_Request{Http: &authv3.AttributeContext_HttpRequest{Method: "GET", Path: "/kb/doc-1"}},
	}})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(code.Code(resp.GetStatus().GetCode()), resp.GetDeniedResponse().GetStatus().GetCode())
	fmt.Println(resp.GetStatus().GetMessage())
	// Output:
	// UNAUTHENTICATED Unauthorized
	// verifier: bad_credential: only source.principal was sent: enable include_peer_certificate in the ext_authz filter so the task claims can be read
}
