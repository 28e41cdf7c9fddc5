package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/agentid/agentid/audit/witness"
	"github.com/agentid/agentid/internal/hclconf"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

var hclTypeString = cty.String

// configSigner reads the audit block's signer_id of a verifier's or a
// registrar's configuration file: the SPIFFE ID that daemon signs its log's
// checkpoints as (its writer refuses to sign as another).
func configSigner(path string) (string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("--config: %w", err)
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return "", fmt.Errorf("--config: %w", hclconf.Errors(diags))
	}
	body := f.Body.(*hclsyntax.Body)
	for _, b := range body.Blocks {
		if b.Type != "audit" {
			continue
		}
		attr, ok := b.Body.Attributes["signer_id"]
		if !ok {
			break
		}
		v, diags := attr.Expr.Value(nil)
		if diags.HasErrors() || !v.Type().Equals(hclTypeString) || v.IsNull() {
			return "", hclconf.At(body, "audit.signer_id", errors.New("audit.signer_id: want a SPIFFE ID string"))
		}
		if _, err := witness.ParseWriterSettings(v.AsString(), "", ""); err != nil {
			return "", hclconf.At(body, "audit.signer_id", err)
		}
		return v.AsString(), nil
	}
	return "", fmt.Errorf("--config %s: no audit { signer_id = … } to pin (set it in the daemon's configuration, or give --signer)", path)
}

// addConfigSigners pins the signer_id of each --config file.
func (f *trustFlags) addConfigSigners() error {
	for _, c := range f.configs {
		id, err := configSigner(c)
		if err != nil {
			return err
		}
		f.signers = append(f.signers, id)
	}
	return nil
}
