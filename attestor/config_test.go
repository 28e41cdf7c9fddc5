package attestor

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestParseConfig(t *testing.T) {
	cfg, err := ParseConfig(`
manifest_dir       = "/var/run/agentid/tasks/"
inherit_depth      = 2
allowed_owner_uids = [0, 1001]
require_exe_sha256 = true
max_exe_bytes      = 1048576
`)
	if err != nil {
		t.Fatal(err)
	}
	want := Config{ManifestDir: "/var/run/agentid/tasks", InheritDepth: 2, AllowedOwnerUIDs: []uint32{0, 1001}, RequireExeSHA256: true}
	if cfg.ManifestDir != want.ManifestDir || cfg.InheritDepth != want.InheritDepth ||
		!slices.Equal(cfg.AllowedOwnerUIDs, want.AllowedOwnerUIDs) || cfg.RequireExeSHA256 != want.RequireExeSHA256 {
		t.Errorf("ParseConfig = %+v, want %+v", cfg, want)
	}
	if cfg.MaxExeBytes != 1<<20 {
		t.Errorf("max_exe_bytes = %d, want %d", cfg.MaxExeBytes, 1<<20)
	}
	empty, err := ParseConfig("")
	if err != nil || empty.ManifestDir != DefaultManifestDir || empty.InheritDepth != 0 || empty.AllowedOwnerUIDs != nil {
		t.Errorf("empty config = %+v, %v", empty, err)
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct{ name, src, want string }{
		// hcl suggests only keys not set already.
		{"unknown key", "manifest_dir = \"/run/x\"\nmanifest_dirs = \"/run/y\"\n",
			`plugin_data:2:1: Unsupported argument; An argument named "manifest_dirs" is not expected here.`},
		{"unknown block", "policy {\n}\n", `plugin_data:1:1: Unsupported block type`},
		{"syntax", "inherit_depth = = 1\n", `plugin_data:1:17: Invalid expression`},
		{"wrong type", "inherit_depth = \"one\"\n", `plugin_data:1:18: Unsuitable value type for inherit_depth`},
		{"depth range", "inherit_depth = 9\n", `plugin_data:1:17: Invalid inherit_depth; 9 is not 0..8`},
		{"negative depth", "inherit_depth = -1\n", `Invalid inherit_depth; -1 is not 0..8`},
		{"relative dir", "manifest_dir = \"tasks\"\n", `plugin_data:1:16: Invalid manifest_dir; "tasks" is not an absolute path`},
		{"bad uid", "allowed_owner_uids = [0, -5]\n", `Invalid allowed_owner_uids; -5 is not a uid`},
		{"empty uids", "allowed_owner_uids = []\n", `Invalid allowed_owner_uids; empty`},
		{"bool type", "require_exe_sha256 = \"yes\"\n", `Unsuitable value type for require_exe_sha256`},
		{"zero max_exe_bytes", "max_exe_bytes = 0\n", `plugin_data:1:17: Invalid max_exe_bytes; 0 is not a positive number of bytes`},
		{"negative max_exe_bytes", "inherit_depth = 1\nmax_exe_bytes = -1\n", `plugin_data:2:17: Invalid max_exe_bytes; -1 is not a positive number of bytes`},
		{"max_exe_bytes type", "max_exe_bytes = \"256MiB\"\n", `plugin_data:1:18: Unsuitable value type for max_exe_bytes`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseConfig(tt.src)
			var ce *ConfigError
			if !errors.As(err, &ce) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseConfig error = %v\nwant it to contain %q", err, tt.want)
			}
		})
	}
}

// TestParseConfigHintOnce: hcl's own "Did you mean" hint comes once, with
// file:line:col, as in the registrar's and the verifier's configurations
// (the attestor used to append a second copy of it).
func TestParseConfigHintOnce(t *testing.T) {
	_, err := ParseConfig("inherit_depth = 1\nmanifest_dirs = \"/run/y\"\n")
	if err == nil {
		t.Fatal("unknown key accepted")
	}
	want := `attestor: configuration: plugin_data:2:1: Unsupported argument; An argument named "manifest_dirs" is not expected here. Did you mean "manifest_dir"?`
	if got := err.Error(); got != want || strings.Count(got, "Did you mean") != 1 {
		t.Errorf("error = %q\nwant    %q", got, want)
	}
}
