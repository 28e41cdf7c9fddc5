package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"

	"github.com/agentid/agentid/internal/devstack"
)

func init() {
	register("dev", "start a local SPIRE + agentid stack for development (like vault server -dev)", func(env *cli, args []string) error {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return env.dev(ctx, args)
	})
}

const devUsage = `dev [flags]

Starts, in a temporary directory on loopback, a real SPIRE server and agent
with the agentid composer and attestor plugins, an agentid-registrar (operator
socket and SPIFFE mTLS listener, permissive issuance policy), an
agentid-verifier (check API and metrics, permissive policy) and a manifest
directory for 'agentid run'; prints the sockets and commands to try. Ctrl-C
(SIGINT or SIGTERM) stops everything and removes the directory (--keep keeps
it). SPIRE comes from 'make spire', the agentid binaries from 'make build'.`

// dev runs the stack until ctx ends (a signal) or a component dies.
func (env *cli) dev(ctx context.Context, args []string) error {
	var opts devstack.Options
	fs := env.flags("dev", devUsage)
	fs.StringVar(&opts.Dir, "dir", "", "working directory: configs, data, sockets, logs (default: a new temporary directory; must be empty)")
	fs.BoolVar(&opts.Keep, "keep", false, "keep the working directory when stopping")
	fs.IntVar(&opts.Port, "port", 0, "SPIRE server TCP port on 127.0.0.1 (default: a free port)")
	fs.StringVar(&opts.SpireBin, "spire-bin", "", "folder holding spire-server and spire-agent (default: $"+devstack.SpireBinEnv+", else the repository's .cache/spire/v"+devstack.SPIREVersion+"/bin)")
	fs.StringVar(&opts.BinDir, "bin-dir", "", "folder holding agentid-registrar and agentid-verifier (default: this binary's folder, else the repository's bin/)")
	fs.StringVar(&opts.PluginDir, "plugin-dir", "", "folder holding agentid-attestor and agentid-composer (default: --bin-dir)")
	fs.StringVar(&opts.TrustDomain, "trust-domain", "example.org", "trust domain")
	fs.StringVar(&opts.LogLevel, "log-level", "INFO", "SPIRE log level (logs go to <dir>/logs)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	opts.Log = env.stderr
	st, err := devstack.Start(ctx, opts)
	if err != nil {
		if ctx.Err() != nil {
			return &exitError{code: 130, msg: "interrupted during start-up; stopped everything"}
		}
		return err
	}
	printDev(env.stdout, st)
	var failure error
	select {
	case <-ctx.Done():
		fmt.Fprintln(env.stderr, "agentid dev: stopping…")
	case <-st.Done():
		failure = st.Err()
		fmt.Fprintln(env.stderr, "agentid dev: a component stopped; stopping the others…")
	}
	stopErr := st.Stop()
	if opts.Keep {
		fmt.Fprintf(env.stderr, "agentid dev: stopped; files kept in %s\n", st.Dir)
	} else {
		fmt.Fprintf(env.stderr, "agentid dev: stopped; removed %s\n", st.Dir)
	}
	return errors.Join(failure, stopErr)
}

// printDev prints what runs where and commands to try.
func printDev(w io.Writer, st *devstack.Stack) {
	stopNote := "Ctrl-C stops it and removes the directory"
	fmt.Fprintf(w, "agentid dev: a local agentid stack is running in %s (%s)\n\n", st.Dir, stopNote)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	v := st.Verifier
	rows := [][2]string{
		{"Trust domain:", st.TrustDomain},
		{"Node ID:", st.NodeID + "  (--parent-id of task entries)"},
		{"SPIRE server:", fmt.Sprintf("127.0.0.1:%d, API socket %s", st.ServerPort, st.ServerSocket)},
		{"SPIRE agent:", "Workload API " + st.AgentSocket},
		{"Manifest dir:", st.ManifestDir},
		{"Issuance policy:", st.IssuancePolicy + "  (permissive; SIGHUP the registrar after editing)"},
		{"Registrar:", "mTLS " + st.RegistrarAddr + " as " + st.RegistrarID},
		{"", "operator socket " + st.RegistrarOperatorSocket},
		{"Verifier:", "check API " + st.VerifierCheckURL + " (JWT audience \"" + devstack.DefaultJWTAudience + "\")"},
		{"", "metrics " + v.MetricsURL + "/metrics, policies " + v.PolicyDir + " (reloaded on change)"},
		{"Logs:", st.LogDir},
	}
	for _, r := range rows {
		fmt.Fprintf(tw, "  %s\t%s\n", r[0], r[1])
	}
	tw.Flush()

	agentid := "agentid"
	var pathLine string
	if _, err := os.Stat(filepath.Join(st.BinDir, "agentid")); err == nil {
		pathLine = "  export PATH=" + shellQuote(st.BinDir) + ":$PATH\n"
	}
	spireAgent := filepath.Join(st.SpireBin, devstack.SpireAgentBin)
	runAs := fmt.Sprintf("%s run --manifest-dir %s --task-file t.json --", agentid, shellQuote(st.ManifestDir))
	fmt.Fprintf(w, `
Try it from another shell:

%s  export %s

  # 1. Create a root task (one SPIRE entry) and save its record:
  %s task create --server-socket %s --policy %s \
      --parent-id %s --agent planner --model openai/gpt-4o \
      --prompt-file %s --principal spiffe://%s/user/alice \
      --scope kb:read --scope kb:write --ttl 1h --output t.json

  # 2. Run a process as that task: its SVID carries the task claims
  #    (the entry reaches the agent about a second after step 1):
  %s %s svid inspect --socket %s

  # 3. Delegate from inside the task, over the registrar's mTLS listener:
  %s %s task create --delegate --socket %s \
      --registrar %s --registrar-id %s \
      --agent researcher --model openai/gpt-4o --prompt-file %s \
      --scope kb:read --ttl 30m --output child.json

  # 4. Ask the verifier whether the task may GET /kb/docs/1 (and DELETE it):
  TOKEN=$(%s %s api fetch jwt -audience %s -socketPath %s | awk 'NR==2 {print $1}')
  curl -s %s -d '{"jwt":"'"$TOKEN"'","action":{"Kind":"http","Method":"GET","Path":"/kb/docs/1"}}'
  curl -s %s -d '{"jwt":"'"$TOKEN"'","action":{"Kind":"http","Method":"DELETE","Path":"/kb/docs/1"}}'

`, pathLine, strings.Join(shellQuoteEnv(st.Env()), " "),
		agentid, shellQuote(st.ServerSocket), shellQuote(st.IssuancePolicy),
		st.NodeID, shellQuote(st.SamplePrompt), st.TrustDomain,
		runAs, agentid, shellQuote(st.AgentSocket),
		runAs, agentid, shellQuote(st.AgentSocket), st.RegistrarAddr, st.RegistrarID, shellQuote(st.SamplePrompt),
		runAs, shellQuote(spireAgent), devstack.DefaultJWTAudience, shellQuote(st.AgentSocket),
		st.VerifierCheckURL, st.VerifierCheckURL)
}

// shellQuote quotes s for a POSIX shell when it needs it.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("/._-:=+,@%", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func shellQuoteEnv(env []string) []string {
	out := make([]string, len(env))
	for i, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		out[i] = k + "=" + shellQuote(v)
	}
	return out
}
