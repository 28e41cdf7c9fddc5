package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/agentid/agentid/audit"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func init() {
	register("audit", "decision logs: audit verify FILE --bundle B [--signer ID] [--witness-key K], audit witness, audit prove, audit verify-receipt, audit export, audit tail, audit dump", func(env *cli, args []string) error {
		return env.subcommands("audit", args, map[string]func(*cli, []string) error{
			"verify":         (*cli).auditVerify,
			"witness":        (*cli).auditWitness,
			"prove":          (*cli).auditProve,
			"verify-receipt": (*cli).auditVerifyReceipt,
			"export":         (*cli).auditExport,
			"tail":           (*cli).auditTail,
			"dump":           (*cli).auditDump,
		})
	})
}

// trustFlags are the flags that say whom a log must be signed by.
type trustFlags struct {
	bundle, td, at               string
	signers, witnessKey, configs stringList
}

func (env *cli) auditVerify(args []string) error {
	fs := env.flags("audit verify", `audit verify --bundle FILE [--signer ID]... [--witness-key K]... [--checkpoint FILE]... [--json] FILE...

Verifies a decision log (one FILE: the log and its rotated files, in order;
several: exactly those, in the order given): the hash chain and the Merkle
tree of its lines, every checkpoint's signature and signer, and the last
checkpoint's signer SVID at a time the log's writer did not choose — the
time a trusted witness cosigned it (--witness-key), else now (--at).
Without --signer, task SPIFFE IDs are never accepted as signers; --config
FILE pins the audit.signer_id of a verifier's or registrar's configuration. With
--checkpoint (a cosigned checkpoint from the witness), the log must extend
it: a cut, rewritten or forked log fails. Records after the last
(witnessed) checkpoint fail beyond --max-unsigned / --max-unsigned-age.
Exits 1 naming what is wrong.`)
	var tf trustFlags
	fs.StringVar(&tf.bundle, "bundle", "", "trust bundle (PEM or SPIFFE bundle JSON) for the signers' SVIDs (required)")
	fs.StringVar(&tf.td, "trust-domain", "", "trust domain of the bundle (default: of the first --signer, else of the log's first signer)")
	fs.Var(&tf.signers, "signer", "SPIFFE ID allowed to sign checkpoints (repeatable; default: any non-task SVID of the bundle)")
	fs.Var(&tf.configs, "config", "a verifier's or registrar's configuration file: its audit.signer_id is pinned like --signer (repeatable)")
	fs.Var(&tf.witnessKey, "witness-key", "trusted witness's cosignature verifier key, or a file holding it (repeatable)")
	fs.StringVar(&tf.at, "at", "", "verify the last checkpoint's SVID at this RFC 3339 time instead of now, when no witness key is given (a time you know the log existed at)")
	var checkpoints stringList
	fs.Var(&checkpoints, "checkpoint", "a cosigned checkpoint file from the witness that the log must extend (repeatable; needs --witness-key)")
	maxUnsigned := fs.Int("max-unsigned", audit.DefaultMaxUnsigned, "most records allowed after the last (witnessed) checkpoint")
	maxAge := fs.Duration("max-unsigned-age", audit.DefaultMaxUnsignedAge, "oldest record allowed after the last (witnessed) checkpoint")
	chainOnly := fs.Bool("chain-only", false, "check the structure only (chain, tree): proves nothing against whoever can write the file")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if err := tf.addConfigSigners(); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: agentid audit verify --bundle FILE FILE...", errUsage)
	}
	files, err := logFiles(fs.Args())
	if err != nil {
		return err
	}
	var sum audit.Summary
	if *chainOnly {
		sum, err = audit.VerifyChain(files)
	} else {
		if tf.bundle == "" {
			return fmt.Errorf("%w: --bundle is required (or --chain-only, which proves nothing about who wrote the log)", errUsage)
		}
		opts, err2 := tf.options(files)
		if err2 != nil {
			return err2
		}
		for _, c := range checkpoints {
			data, err := os.ReadFile(c)
			if err != nil {
				return err
			}
			opts.Witnessed = append(opts.Witnessed, data)
		}
		opts.MaxUnsigned, opts.MaxUnsignedAge = *maxUnsigned, *maxAge
		if idx := audit.TreeIndexPath(fs.Arg(0)); fs.NArg() == 1 {
			if _, err := os.Stat(idx); err == nil {
				opts.TreeIndex = idx // for a --checkpoint older than the files left by retention
			}
		}
		sum, err = audit.Verify(files, opts)
	}
	var ve *audit.VerifyError
	if errors.As(err, &ve) {
		if ve.Line == 0 {
			return &exitError{code: 1, msg: fmt.Sprintf("FAILED (%s, %d records, last seq %d): %s", sum.Format, sum.Records, sum.LastSeq, ve.Reason)}
		}
		return &exitError{code: 1, msg: fmt.Sprintf("BROKEN at %s line %d (seq %d): %s", ve.File, ve.Line, ve.Seq, ve.Reason)}
	}
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(env.stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(sum)
	}
	if *chainOnly {
		fmt.Fprintf(env.stdout, "CHAIN INTACT (structure only, nothing checks who wrote it): %s, %d records in %d file(s), last seq %d\n", sum.Format, sum.Records, sum.Files, sum.LastSeq)
		return nil
	}
	fmt.Fprintf(env.stdout, "OK: %s log %s: %d records in %d file(s), last seq %d, %d signed checkpoint(s) by %s",
		sum.Format, sum.Origin, sum.Records, sum.Files, sum.LastSeq, sum.Checkpoints, strings.Join(sum.Signers, ", "))
	if sum.Witnessed > 0 {
		fmt.Fprintf(env.stdout, ", %d witnessed", sum.Witnessed)
	}
	fmt.Fprintln(env.stdout)
	a := sum.Anchor
	fmt.Fprintf(env.stdout, "anchor: checkpoint at seq %d (tree size %d) by %s, its SVID valid at %s (%s)\n", a.Seq, a.Size, a.Signer, a.Time.UTC().Format(time.RFC3339), a.TimeSource)
	if sum.Start > 0 {
		fmt.Fprintf(env.stdout, "note: the files start at seq %d: the lines before were deleted (retention). Their tree state comes from the first file's segment record, which the checkpoints after it commit to; receipts for them stay valid, and a witness's checkpoint this log extends shows the deleted lines were not rewritten before it\n", sum.Start+1)
	}
	if sum.Format == audit.FormatV1 {
		fmt.Fprintln(env.stdout, "note: hash-chain v1 format (written before issue 13): no Merkle tree, no witness, no receipts")
	}
	if sum.Unsigned > 0 {
		fmt.Fprintf(env.stdout, "note: the last %d record(s), the oldest from %s, follow the anchor: chained but not covered by it (within the checkpoint policy)\n", sum.Unsigned, sum.UnsignedSince.UTC().Format(time.RFC3339))
	}
	return nil
}

// logFiles expands one log path to its files.
func logFiles(args []string) ([]string, error) {
	if len(args) != 1 {
		return args, nil
	}
	all, err := audit.Files(args[0])
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("%s: no such log", args[0])
	}
	return all, nil
}

// options builds the verification options from the trust flags.
func (f *trustFlags) options(files []string) (audit.VerifyOptions, error) {
	var opts audit.VerifyOptions
	for _, s := range f.signers {
		id, err := spiffeid.FromString(s)
		if err != nil {
			return opts, fmt.Errorf("--signer %q: %w", s, err)
		}
		opts.Signers = append(opts.Signers, id)
	}
	tdName := f.td
	if tdName == "" && len(opts.Signers) > 0 {
		tdName = opts.Signers[0].TrustDomain().Name()
	}
	b, err := loadAuditBundle(f.bundle, tdName, files)
	if err != nil {
		return opts, err
	}
	opts.Bundle = b
	for _, k := range f.witnessKey {
		if data, err := os.ReadFile(k); err == nil {
			k = strings.TrimSpace(string(data))
		}
		opts.WitnessKeys = append(opts.WitnessKeys, k)
	}
	if f.at != "" {
		t, err := time.Parse(time.RFC3339, f.at)
		if err != nil {
			return opts, fmt.Errorf("--at: %w", err)
		}
		opts.Now = t
	}
	return opts, nil
}

// loadAuditBundle reads a PEM or SPIFFE bundle; the trust domain comes from
// the flag or from the first signer in the log. A log without any signer
// gets no bundle: its verification fails for want of a checkpoint.
func loadAuditBundle(path, tdName string, files []string) (x509bundle.Source, error) {
	if tdName == "" {
		tdName = firstSignerTrustDomain(files)
	}
	if tdName == "" {
		return nil, nil
	}
	td, err := spiffeid.TrustDomainFromString(tdName)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if strings.HasPrefix(strings.TrimSpace(string(data)), "{") {
		return spiffebundle.Parse(td, data)
	}
	return x509bundle.Parse(td, data)
}

func firstSignerTrustDomain(files []string) string {
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(data), "\n") {
			var rec audit.Record
			if json.Unmarshal([]byte(line), &rec) == nil && (rec.Type == audit.TypeCheckpoint || rec.Type == audit.TypeKey) {
				if id, err := spiffeid.FromString(rec.Signer); err == nil {
					return id.TrustDomain().Name()
				}
			}
		}
	}
	return ""
}
