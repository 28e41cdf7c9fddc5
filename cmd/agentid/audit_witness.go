package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/agentid/agentid/audit/witness"
	"github.com/agentid/agentid/svid/httpsig"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func (env *cli) auditWitness(args []string) error {
	return env.subcommands("audit witness", args, map[string]func(*cli, []string) error{
		"keygen": (*cli).auditWitnessKeygen,
		"serve":  (*cli).auditWitnessServe,
		"latest": (*cli).auditWitnessLatest,
	})
}

func (env *cli) auditWitnessKeygen(args []string) error {
	fs := env.flags("audit witness keygen", "audit witness keygen --name NAME --key-file FILE\n\nWrites a new witness signer key to FILE (mode 0600) and prints its\ncosignature verifier key (give it to auditors: audit verify --witness-key).")
	name := fs.String("name", "", "the witness's name, e.g. witness.example.org")
	keyFile := fs.String("key-file", "", "where to write the signer key (must not exist)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *name == "" || *keyFile == "" {
		return fmt.Errorf("%w: agentid audit witness keygen --name NAME --key-file FILE", errUsage)
	}
	skey, vkey, err := witness.GenerateKey(*name)
	if err != nil {
		return err
	}
	f, err := os.OpenFile(*keyFile, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(skey + "\n"); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, vkey)
	return nil
}

func (env *cli) auditWitnessServe(args []string) error {
	fs := env.flags("audit witness serve", "audit witness serve --listen ADDR --key-file FILE --state DIR --bundle B [--trust-domain TD] [--signer ID]...\n\nServes POST /add-checkpoint for the logs' writers (audit { witness = \"http://ADDR\" })\nand GET /checkpoint?origin=O. Run it outside the writers' hosts.")
	listen := fs.String("listen", "127.0.0.1:8480", "address to listen on")
	keyFile := fs.String("key-file", "", "the witness's signer key (audit witness keygen)")
	state := fs.String("state", "", "state directory: the last cosigned checkpoint of each log")
	var tf trustFlags
	fs.StringVar(&tf.bundle, "bundle", "", "trust bundle for the writers' SVIDs")
	fs.StringVar(&tf.td, "trust-domain", "", "trust domain of the bundle (default: of the first --signer)")
	fs.Var(&tf.signers, "signer", "SPIFFE ID of a writer whose checkpoints it cosigns (repeatable; default: any non-task SVID)")
	fs.Var(&tf.configs, "config", "a verifier's or registrar's configuration file: its audit.signer_id is pinned like --signer (repeatable)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := tf.addConfigSigners(); err != nil {
		return err
	}
	if *keyFile == "" || *state == "" || tf.bundle == "" {
		return fmt.Errorf("%w: --key-file, --state and --bundle are required", errUsage)
	}
	if tf.td == "" && len(tf.signers) == 0 {
		return fmt.Errorf("%w: --trust-domain or --signer is required", errUsage)
	}
	opts, err := tf.options(nil)
	if err != nil {
		return err
	}
	key, err := os.ReadFile(*keyFile)
	if err != nil {
		return err
	}
	w, err := witness.New(witness.Config{Key: string(key), StateDir: *state, Bundle: opts.Bundle, Signers: opts.Signers})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stderr, "witness listening on %s\n", ln.Addr())
	srv := &http.Server{Handler: w.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		srv.Shutdown(context.Background())
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (env *cli) auditWitnessLatest(args []string) error {
	fs := env.flags("audit witness latest", "audit witness latest --state DIR --origin O\n\nPrints the last checkpoint the witness cosigned for the log O (its origin, as\naudit verify prints it): give it to audit verify --checkpoint.")
	state := fs.String("state", "", "the witness's state directory")
	origin := fs.String("origin", "", "the log's origin")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	data, err := os.ReadFile(witness.StatePath(*state, *origin))
	if err != nil {
		return err
	}
	_, err = env.stdout.Write(data)
	return err
}

func (env *cli) auditProve(args []string) error {
	fs := env.flags("audit prove", "audit prove --index N [--out FILE] LOG\n\nWrites the receipt of the record at index N (its seq - 1): the record, its\ninclusion proof, the last witnessed (else signed) checkpoint covering it and\nthe key record with the writer's certificates. It reads the tree index the\nwriter keeps beside the log (LOG.tree; checked against the log's signed\ncheckpoint, never trusted), else the whole log.")
	index := fs.Uint64("index", 0, "the record's index in the log (seq - 1)")
	out := fs.String("out", "", "write the receipt here (default: stdout)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: agentid audit prove --index N LOG", errUsage)
	}
	files, err := logFiles(fs.Args())
	if err != nil {
		return err
	}
	r, err := proveReceipt(env, fs.Args(), files, *index)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if *out == "" {
		_, err = env.stdout.Write(data)
		return err
	}
	return os.WriteFile(*out, data, 0o640)
}

// proveReceipt proves from the log's tree index (audit.ProveIndexed) when
// given one log, else, or when the index cannot, by reading the whole log
// (audit.Prove), saying why on stderr.
func proveReceipt(env *cli, args, files []string, index uint64) (*audit.Receipt, error) {
	if len(args) == 1 {
		r, err := audit.ProveIndexed(args[0], index)
		if err == nil {
			return r, nil
		}
		fmt.Fprintf(env.stderr, "note: %v; reading the whole log instead\n", err)
	}
	return audit.Prove(files, index)
}

func (env *cli) auditVerifyReceipt(args []string) error {
	fs := env.flags("audit verify-receipt", "audit verify-receipt FILE --bundle B [--signer ID]... [--witness-key K]...\n\nChecks a receipt (audit prove) offline and prints the record it proves.\nWhen the record holds the agent's own signature of the request (RFC 9421,\nsigned with the task's X.509-SVID key), it is checked with the same bundle\nand must name the record's peer, its time must lie within [created -\nwindow, expires + window], and it must be of the record's action: an http\naction's method and path, an mcp action's method and name read from the\nrecorded body. Without the body (or for another kind) the signature is\nshown as \"not bound to this action\", never OK (exit 0: the record itself\nis proven).")
	var tf trustFlags
	fs.StringVar(&tf.bundle, "bundle", "", "trust bundle for the writer's SVID (required)")
	fs.StringVar(&tf.td, "trust-domain", "", "trust domain of the bundle (default: of the receipt's signer)")
	fs.Var(&tf.signers, "signer", "SPIFFE ID allowed to have written the log (repeatable; default: any non-task SVID)")
	fs.Var(&tf.configs, "config", "a verifier's or registrar's configuration file: its audit.signer_id is pinned like --signer (repeatable)")
	fs.Var(&tf.witnessKey, "witness-key", "trusted witness's cosignature verifier key or a file holding it (repeatable): the checkpoint must be cosigned")
	fs.StringVar(&tf.at, "at", "", "without --witness-key: verify the writer's SVID at this RFC 3339 time instead of now")
	var sigWindow time.Duration
	fs.DurationVar(&sigWindow, "signature-window", httpsig.DefaultWindow, "the verifier's signatures.window: the record's time must lie within [created − it, expires + it] of the agent's signature")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := tf.addConfigSigners(); err != nil {
		return err
	}
	if fs.NArg() != 1 || tf.bundle == "" || sigWindow <= 0 {
		return fmt.Errorf("%w: agentid audit verify-receipt FILE --bundle B [--signature-window D > 0]", errUsage)
	}
	data, err := os.ReadFile(fs.Arg(0))
	if err != nil {
		return err
	}
	var r audit.Receipt
	if err := json.Unmarshal(data, &r); err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	if tf.td == "" && len(tf.signers) == 0 {
		var key audit.Record
		if json.Unmarshal([]byte(r.Key), &key) == nil {
			if id, err := spiffeid.FromString(key.Signer); err == nil {
				tf.td = id.TrustDomain().Name()
			}
		}
	}
	if tf.td == "" && len(tf.signers) == 0 {
		return &exitError{code: 1, msg: "FAILED: the receipt names no signer"}
	}
	opts, err := tf.options(nil)
	if err != nil {
		return err
	}
	res, err := audit.VerifyReceipt(&r, opts)
	if err != nil {
		return &exitError{code: 1, msg: "FAILED: " + strings.TrimPrefix(err.Error(), "audit: ")}
	}
	agentSig, err := agentSignature(&res.Record, opts.Bundle, res.Time, sigWindow)
	if err != nil {
		return &exitError{code: 1, msg: "FAILED: " + err.Error()}
	}
	when := "verification time"
	if res.Witness != "" {
		when = "cosigned by " + res.Witness
	}
	fmt.Fprintf(env.stdout, "OK: record seq %d (index %d) of log %s is in its checkpoint of size %d, signed with the key bound by %s (SVID valid at %s, %s)\n",
		res.Record.Seq, r.Index, r.Origin, res.Size, res.Signer, res.Time.UTC().Format(time.RFC3339), when)
	rec := res.Record
	fmt.Fprintf(env.stdout, "time: %s\ntype: %s\n", rec.Time.UTC().Format(time.RFC3339Nano), rec.Type)
	if rec.Peer != "" {
		fmt.Fprintf(env.stdout, "peer: %s\n", rec.Peer)
	}
	if len(rec.Claims) > 0 {
		fmt.Fprintf(env.stdout, "claims: %s\n", rec.Claims)
	}
	if a := rec.Action; a != nil {
		fmt.Fprintf(env.stdout, "action: %s %s %s %s\n", a.Kind, a.Method, a.Path, a.Name)
	}
	if rec.Decision != "" {
		fmt.Fprintf(env.stdout, "decision: %s %s\n", rec.Decision, strings.Join(rec.Rules, ", "))
	}
	if rec.PolicyDigest != "" {
		fmt.Fprintf(env.stdout, "policy digest: %s\n", rec.PolicyDigest)
	}
	if agentSig != nil {
		printAgentSignature(env.stdout, agentSig)
	}
	return nil
}
