package attestor

import (
	"fmt"
	"math"
	"path/filepath"

	"github.com/agentid/agentid/internal/hclconf"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
)

// rawConfig is the plugin's HCL as written; unknown keys are rejected by
// gohcl, naming the key (hcl adds its own "Did you mean" hint).
type rawConfig struct {
	ManifestDir      *string `hcl:"manifest_dir,optional"`
	InheritDepth     *int    `hcl:"inherit_depth,optional"`
	AllowedOwnerUIDs []int64 `hcl:"allowed_owner_uids,optional"`
	RequireExeSHA256 bool    `hcl:"require_exe_sha256,optional"`
	AllowSameUser    bool    `hcl:"allow_same_user,optional"`
	MaxExeBytes      *int64  `hcl:"max_exe_bytes,optional"`
}

// ConfigError is a configuration that does not load. Its diagnostics name
// the key at fault and where it is.
type ConfigError struct {
	Diagnostics hcl.Diagnostics
}

func (e *ConfigError) Error() string {
	err := hclconf.Errors(e.Diagnostics)
	if err == nil {
		return "attestor: configuration: invalid"
	}
	return "attestor: configuration: " + err.Error()
}

// ParseConfig parses the attestor's HCL configuration (the plugin_data of
// the SPIRE agent's WorkloadAttestor "agentid" block):
//
//	manifest_dir       = "/run/agentid/tasks"  # default
//	inherit_depth      = 0                     # 0..8
//	allowed_owner_uids = [0, 1001]             # default: root and the attestor's euid
//	require_exe_sha256 = false
//	max_exe_bytes      = 268435456             # 256 MiB, the largest executable hashed
//	allow_same_user    = false                 # INSECURE, single-user development only
//
// Unknown keys, wrong types and out-of-range values are errors; the error is
// a *[ConfigError]. The returned Config is what [New] accepts.
func ParseConfig(src string) (Config, error) {
	file, diags := hclsyntax.ParseConfig([]byte(src), "plugin_data", hcl.InitialPos)
	if diags.HasErrors() {
		return Config{}, &ConfigError{diags}
	}
	body := file.Body.(*hclsyntax.Body)
	var raw rawConfig
	if diags := gohcl.DecodeBody(body, nil, &raw); diags.HasErrors() {
		return Config{}, &ConfigError{hclconf.NameKeys(body, diags)}
	}
	cfg, diags := raw.build(body)
	if diags.HasErrors() {
		return Config{}, &ConfigError{diags}
	}
	return cfg, nil
}

func (r *rawConfig) build(body *hclsyntax.Body) (Config, hcl.Diagnostics) {
	var diags hcl.Diagnostics
	fail := func(key, format string, args ...any) {
		d := &hcl.Diagnostic{Severity: hcl.DiagError, Summary: "Invalid " + key, Detail: fmt.Sprintf(format, args...)}
		if attr, ok := body.Attributes[key]; ok {
			rng := attr.Expr.Range()
			d.Subject = &rng
		}
		diags = append(diags, d)
	}
	cfg := Config{ManifestDir: DefaultManifestDir, RequireExeSHA256: r.RequireExeSHA256, AllowSameUser: r.AllowSameUser}
	if r.ManifestDir != nil {
		if !filepath.IsAbs(*r.ManifestDir) {
			fail("manifest_dir", "%q is not an absolute path", *r.ManifestDir)
		}
		cfg.ManifestDir = filepath.Clean(*r.ManifestDir)
	}
	if r.InheritDepth != nil {
		if *r.InheritDepth < 0 || *r.InheritDepth > MaxInheritDepth {
			fail("inherit_depth", "%d is not 0..%d", *r.InheritDepth, MaxInheritDepth)
		}
		cfg.InheritDepth = *r.InheritDepth
	}
	if r.AllowedOwnerUIDs != nil {
		cfg.AllowedOwnerUIDs = make([]uint32, 0, len(r.AllowedOwnerUIDs))
		for _, uid := range r.AllowedOwnerUIDs {
			if uid < 0 || uid >= math.MaxUint32 {
				fail("allowed_owner_uids", "%d is not a uid", uid)
				continue
			}
			cfg.AllowedOwnerUIDs = append(cfg.AllowedOwnerUIDs, uint32(uid))
		}
		if len(cfg.AllowedOwnerUIDs) == 0 && len(r.AllowedOwnerUIDs) == 0 {
			fail("allowed_owner_uids", "empty: no manifest could ever be accepted")
		}
	}
	if r.MaxExeBytes != nil {
		if *r.MaxExeBytes < 1 {
			fail("max_exe_bytes", "%d is not a positive number of bytes", *r.MaxExeBytes)
		}
		cfg.MaxExeBytes = *r.MaxExeBytes
	}
	return cfg, diags
}
