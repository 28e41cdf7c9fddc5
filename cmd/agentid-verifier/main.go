// Command agentid-verifier serves agentid's verifier: Envoy ext_authz, the
// mTLS reverse proxy, the check API and the MCP gateway, with hot-reloaded
// HCL policies, an audit log and Prometheus metrics. See docs/verifier.md
// and, for the gateway, docs/mcp.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentid/agentid/verifier/daemon"
)

func main() {
	configPath := flag.String("config", "/etc/agentid/verifier.hcl", "configuration file (HCL)")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		fmt.Fprintln(os.Stderr, "agentid-verifier:", err)
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := daemon.LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentid-verifier:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := daemon.New(ctx, cfg, log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentid-verifier:", err)
		os.Exit(1)
	}
	for _, name := range []string{"ext_authz", "proxy", "check_api", "mcp", "metrics"} {
		if a := d.Addr(name); a != nil {
			log.Info("serving", "frontend", name, "addr", a.String())
		}
	}
	if err := d.Run(ctx); err != nil {
		log.Error("shutdown", "err", err)
		os.Exit(1)
	}
}
