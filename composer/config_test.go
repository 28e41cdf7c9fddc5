package composer_test

import (
	"encoding/asn1"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/agentid/agentid/composer"
	"github.com/agentid/agentid/svid"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

func TestParseConfig(t *testing.T) {
	own := spiffeid.RequireTrustDomainFromString("example.org")
	other := spiffeid.RequireTrustDomainFromString("partner.example")
	tests := []struct {
		name string
		hcl  string
		want composer.Config
	}{
		{name: "defaults", hcl: "", want: composer.Config{
			ServerAPISocket: composer.DefaultServerAPISocket, OID: svid.DefaultOID,
			TrustDomains: []spiffeid.TrustDomain{own}, CacheTTL: 5 * time.Second, NegativeCacheTTL: time.Second,
			CacheSize: composer.DefaultCacheSize, SelectorType: "agentid"}},
		{name: "everything", hcl: `
server_api_socket = "unix:///run/spire/server/api.sock"
extension_oid     = "1.3.6.1.4.1.99999.7"
trust_domains     = ["partner.example", "example.org"]
cache_ttl         = "30s"
negative_cache_ttl = "250ms"
cache_size        = 500
selector_type     = "aid"
`, want: composer.Config{
			ServerAPISocket: "/run/spire/server/api.sock", OID: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 7},
			TrustDomains: []spiffeid.TrustDomain{own, other}, CacheTTL: 30 * time.Second, NegativeCacheTTL: 250 * time.Millisecond,
			CacheSize: 500, SelectorType: "aid"}},
		{name: "HCL v1 printer layout", hcl: "trust_domains = [\n  \"partner.example\",\n]\n\ncache_ttl = \"0s\"\n",
			want: composer.Config{
				ServerAPISocket: composer.DefaultServerAPISocket, OID: svid.DefaultOID,
				TrustDomains: []spiffeid.TrustDomain{own, other}, CacheTTL: 0, NegativeCacheTTL: time.Second,
				CacheSize: composer.DefaultCacheSize, SelectorType: "agentid"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := composer.ParseConfig(tt.hcl, "example.org")
			if err != nil {
				t.Fatal(err)
			}
			if got.ServerAPISocket != tt.want.ServerAPISocket || !got.OID.Equal(tt.want.OID) ||
				!slices.Equal(got.TrustDomains, tt.want.TrustDomains) || got.CacheTTL != tt.want.CacheTTL || got.NegativeCacheTTL != tt.want.NegativeCacheTTL ||
				got.CacheSize != tt.want.CacheSize || got.SelectorType != tt.want.SelectorType {
				t.Fatalf("config = %+v, want %+v", *got, tt.want)
			}
		})
	}
}

func TestParseConfigErrors(t *testing.T) {
	tests := []struct {
		name, hcl, serverTD, want string
	}{
		{name: "unknown key", hcl: `cach_ttl = "5s"`,
			want: `composer: configuration: 1:1: Unsupported argument; An argument named "cach_ttl" is not expected here. Did you mean "cache_ttl"?`},
		{name: "unknown block", hcl: "cache {\n}\n",
			want: `composer: configuration: 1:1: Unsupported block type; Blocks of type "cache" are not expected here.`},
		{name: "syntax", hcl: `cache_ttl = `,
			want: `composer: configuration: 1:13: Missing expression; Expected the start of an expression, but found the end of the file.`},
		{name: "relative socket", hcl: `server_api_socket = "api.sock"`,
			want: `composer: configuration: 1:21: Invalid server_api_socket; "api.sock" is not an absolute path (or unix:///path).`},
		{name: "bad OID", hcl: `extension_oid = "2.25.x"`,
			want: `composer: configuration: 1:17: Invalid extension_oid; svid: extension OID "2.25.x": arc "x" is not a non-negative int without leading zeros.`},
		{name: "bad trust domain", hcl: `trust_domains = ["Example.ORG"]`,
			want: `composer: configuration: 1:17: Invalid trust_domains; "Example.ORG": trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores.`},
		{name: "bad TTL", hcl: `cache_ttl = "5"`,
			want: `composer: configuration: 1:13: Invalid cache_ttl; "5" is not a duration between 0s and 10m0s (e.g. "5s").`},
		{name: "TTL too long", hcl: `cache_ttl = "1h"`,
			want: `composer: configuration: 1:13: Invalid cache_ttl; "1h" is not a duration between 0s and 10m0s (e.g. "5s").`},
		{name: "negative TTL too long", hcl: `negative_cache_ttl = "2m"`,
			want: `composer: configuration: 1:22: Invalid negative_cache_ttl; "2m" is not a duration between 0s and 1m0s (e.g. "1s").`},
		{name: "size zero", hcl: `cache_size = 0`,
			want: `composer: configuration: 1:14: Invalid cache_size; 0 is not between 1 and 1000000.`},
		{name: "size not a number", hcl: `cache_size = "many"`,
			want: `composer: configuration: 1:15: Unsuitable value type for cache_size; Unsuitable value: a number is required`},
		{name: "selector type with colon", hcl: `selector_type = "agentid:task"`,
			want: `composer: configuration: 1:17: Invalid selector_type; "agentid:task" is not a selector type (a plugin name, without ':').`},
		{name: "two errors", hcl: "cache_size = 0\nselector_type = \"\"\n",
			want: `composer: configuration: 1:14: Invalid cache_size; 0 is not between 1 and 1000000. 2:17: Invalid selector_type; "" is not a selector type (a plugin name, without ':').`},
		{name: "no server trust domain", hcl: "", serverTD: "-",
			want: `composer: configuration: Invalid core configuration; The server's trust domain "": trust domain is missing.`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			td := "example.org"
			if tt.serverTD == "-" {
				td = ""
			}
			_, err := composer.ParseConfig(tt.hcl, td)
			var ce *composer.ConfigError
			if !errors.As(err, &ce) {
				t.Fatalf("error %v is not a *ConfigError", err)
			}
			if err.Error() != tt.want {
				t.Fatalf("error =\n%s\nwant\n%s", err, tt.want)
			}
		})
	}
}

func FuzzParseConfig(f *testing.F) {
	for _, s := range []string{"", `cache_ttl = "5s"`, `trust_domains = ["a.b", "c"]`, `cache_size = 1e9`,
		`extension_oid = "1.2.840.1"`, "cache {\n x = 1\n}", `server_api_socket = "unix:///a"`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, src string) {
		cfg, err := composer.ParseConfig(src, "example.org")
		if err != nil {
			if !strings.HasPrefix(err.Error(), "composer: configuration:") {
				t.Fatalf("error without prefix: %v", err)
			}
			return
		}
		if cfg.CacheSize < 1 || cfg.CacheTTL < 0 || len(cfg.TrustDomains) == 0 || cfg.SelectorType == "" {
			t.Fatalf("accepted an invalid config %+v from %q", cfg, src)
		}
	})
}
