package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/agentid/agentid/audit"
	"github.com/spiffe/go-spiffe/v2/bundle/spiffebundle"
	"github.com/spiffe/go-spiffe/v2/bundle/x509bundle"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func init() {
	register("audit", "verify a hash-chained audit log: audit verify FILE --bundle B", func(env *cli, args []string) error {
		return env.subcommands("audit", args, map[string]func(*cli, []string) error{"verify": (*cli).auditVerify})
	})
}

func (env *cli) auditVerify(args []string) error {
	fs := env.flags("audit verify", "audit verify [--bundle FILE] [--trust-domain TD] [--json] FILE...\n\nChecks the hash chain of the log (one FILE: the log and its rotated files,\nin order; several: exactly those, in the order given) and the signature of\nevery checkpoint against the bundle. Exits 1 naming the first broken line.")
	bundlePath := fs.String("bundle", "", "trust bundle (PEM or SPIFFE bundle JSON) for the checkpoint signatures")
	tdName := fs.String("trust-domain", "", "trust domain of the bundle (default: taken from the first checkpoint's signer)")
	asJSON := fs.Bool("json", false, "print the summary as JSON")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: agentid audit verify [--bundle FILE] FILE...", errUsage)
	}
	files := fs.Args()
	if len(files) == 1 {
		all, err := audit.Files(files[0])
		if err != nil {
			return err
		}
		if len(all) == 0 {
			return fmt.Errorf("%s: no such log", files[0])
		}
		files = all
	}
	var bundle x509bundle.Source
	if *bundlePath != "" {
		b, err := loadAuditBundle(*bundlePath, *tdName, files)
		if err != nil {
			return err
		}
		bundle = b
	}
	sum, err := audit.Verify(files, bundle)
	var ve *audit.VerifyError
	if errors.As(err, &ve) {
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
	fmt.Fprintf(env.stdout, "OK: %d records in %d file(s), last seq %d, %d signed checkpoint(s)", sum.Records, sum.Files, sum.LastSeq, sum.Checkpoints)
	if len(sum.Signers) > 0 {
		fmt.Fprintf(env.stdout, " by %s", strings.Join(sum.Signers, ", "))
	}
	fmt.Fprintln(env.stdout)
	if sum.Unsigned > 0 {
		fmt.Fprintf(env.stdout, "note: the last %d record(s) follow the last checkpoint: chained but not yet signed\n", sum.Unsigned)
	}
	return nil
}

// loadAuditBundle reads a PEM or SPIFFE bundle; the trust domain comes from
// the flag or from the first checkpoint signer in the log.
func loadAuditBundle(path, tdName string, files []string) (x509bundle.Source, error) {
	if tdName == "" {
		tdName = firstSignerTrustDomain(files)
	}
	if tdName == "" {
		return nil, errors.New("--trust-domain is required: the log has no checkpoint naming its signer")
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
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Type == audit.TypeCheckpoint {
				if id, err := spiffeid.FromString(rec.Signer); err == nil {
					return id.TrustDomain().Name()
				}
			}
		}
	}
	return ""
}
