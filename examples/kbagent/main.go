// Command kbagent is a minimal agent: it calls a service over SPIFFE mTLS
// with the SVID the Workload API gives it — the task identity when it was
// started with `agentid run`. It prints the HTTP status and the body.
// With -sign, every request is also signed with the same SVID's key (RFC
// 9421, svid/httpsig), so that the service's audit log holds the agent's
// own signature of what it asked.
//
//	agentid run --task-file researcher.json -- kbagent -url https://127.0.0.1:8443/kb/doc-1
//
// With -mcp it is an MCP client instead: it fetches its JWT-SVID for
// -audience (the MCP server's resource URI), lists the server's tools
// over Streamable HTTP with it as bearer token, and calls -call with
// -args.
//
//	agentid run --task-file researcher.json -- kbagent -mcp http://127.0.0.1:8444/mcp \
//	    -audience https://kb.example.org/mcp -call kb_search -args '{"query": "onboarding"}'
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/agentid/agentid/svid/httpsig"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
	"github.com/spiffe/go-spiffe/v2/spiffetls/tlsconfig"
	"github.com/spiffe/go-spiffe/v2/svid/x509svid"
	"github.com/spiffe/go-spiffe/v2/workloadapi"
)

func main() {
	url := flag.String("url", "", "URL to call (https)")
	method := flag.String("method", "GET", "HTTP method")
	body := flag.String("body", "", "request body")
	socket := flag.String("socket", os.Getenv("SPIFFE_ENDPOINT_SOCKET"), "Workload API socket (unix:///path or a path)")
	server := flag.String("server-id", "", "the service's SPIFFE ID (default: any ID of the trust domain)")
	mcpURL := flag.String("mcp", "", "an MCP endpoint (Streamable HTTP) to call with the task's JWT-SVID instead of -url")
	audience := flag.String("audience", "", "with -mcp: the MCP server's resource URI, the JWT-SVID's audience")
	tool := flag.String("call", "", "with -mcp: the tool to call after listing the tools")
	args := flag.String("args", "{}", "with -mcp: the tool's arguments, a JSON object")
	sign := flag.Bool("sign", false, "sign every request with the task's X.509-SVID key (RFC 9421)")
	flag.Parse()
	if *mcpURL != "" {
		s := *socket
		if !strings.Contains(s, "://") {
			s = "unix://" + s
		}
		if err := runMCP(*mcpURL, *audience, *tool, *args, s); err != nil {
			fmt.Fprintln(os.Stderr, "kbagent:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*url, *method, *body, *socket, *server, *sign); err != nil {
		fmt.Fprintln(os.Stderr, "kbagent:", err)
		os.Exit(1)
	}
}

func run(url, method, body, socket, server string, sign bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if !strings.Contains(socket, "://") {
		socket = "unix://" + socket
	}
	// One fetch: a process that is not a task hears "no identity issued" at
	// once (a workloadapi.X509Source would keep retrying).
	x509ctx, err := workloadapi.FetchX509Context(ctx, workloadapi.WithAddr(socket))
	if err != nil {
		return fmt.Errorf("no SVID from the Workload API: %w", err)
	}
	me := x509ctx.DefaultSVID()
	var svids x509svid.Source = me
	var bundles x509bundle.Source = x509ctx.Bundles
	authorizer := tlsconfig.AuthorizeMemberOf(me.ID.TrustDomain())
	if server != "" {
		id, err := spiffeid.FromString(server)
		if err != nil {
			return err
		}
		authorizer = tlsconfig.AuthorizeID(id)
	}
	var rt http.RoundTripper = &http.Transport{TLSClientConfig: tlsconfig.MTLSClientConfig(svids, bundles, authorizer)}
	if sign {
		rt = &httpsig.Transport{Base: rt, Source: svids}
	}
	client := &http.Client{Timeout: 10 * time.Second, Transport: rt}
	req, err := http.NewRequestWithContext(ctx, method, url, strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	fmt.Printf("%d %s\n", resp.StatusCode, strings.TrimSpace(string(b)))
	return nil
}
