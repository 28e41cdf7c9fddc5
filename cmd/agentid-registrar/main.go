// Command agentid-registrar serves agentid's task API: every RPC to
// operators on a local unix socket, DelegateTask to agent tasks over SPIFFE
// mTLS, on the SPIRE server's Entry API; optionally Prometheus metrics,
// /healthz and /readyz over HTTP. SIGHUP reloads the issuance policy;
// SIGTERM and SIGINT stop gracefully. See docs/registrar.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/agentid/agentid/registrar/server"
)

func main() {
	configPath := flag.String("config", "/etc/agentid/registrar.hcl", "configuration file (HCL)")
	logLevel := flag.String("log-level", "info", "debug, info, warn or error")
	flag.Parse()
	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil || flag.NArg() != 0 {
		fmt.Fprintln(os.Stderr, "usage: agentid-registrar [-config FILE] [-log-level LEVEL]")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	cfg, err := server.LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentid-registrar:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := server.NewDaemon(ctx, cfg, log, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "agentid-registrar:", err)
		os.Exit(1)
	}
	if err := d.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		os.Exit(1)
	}
	log.Info("stopped")
}
