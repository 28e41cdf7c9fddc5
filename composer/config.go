package composer

import (
	"encoding/asn1"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/agentid/agentid/internal/hclconf"
	"github.com/agentid/agentid/svid"
	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/spiffe/go-spiffe/v2/spiffeid"
)

// Defaults and limits of the configuration.
const (
	// DefaultServerAPISocket is SPIRE server's default socket_path.
	DefaultServerAPISocket = "/tmp/spire-server/private/api.sock"
	// DefaultCacheTTL is how long the claims decoded from one version of
	// an entry are reused. The entry itself is read on every signing.
	DefaultCacheTTL = 5 * time.Second
	// MaxCacheTTL bounds cache_ttl.
	MaxCacheTTL = 10 * time.Minute
	// DefaultNegativeCacheTTL is how long "no such task" is remembered, so
	// that a storm of signings for a revoked task reads the Entry API once
	// per interval: also the longest a task looked up before its entry
	// existed is refused.
	DefaultNegativeCacheTTL = time.Second
	// MaxNegativeCacheTTL bounds negative_cache_ttl.
	MaxNegativeCacheTTL = time.Minute
	// DefaultCacheSize is the number of tasks the cache holds.
	DefaultCacheSize = 10_000
	// MaxCacheSize bounds cache_size.
	MaxCacheSize = 1_000_000
)

// Config is a validated configuration. Build it with [ParseConfig].
type Config struct {
	// ServerAPISocket is the path of the SPIRE server's local API socket.
	ServerAPISocket string
	// OID is the X.509 extension OID of the claims.
	OID asn1.ObjectIdentifier
	// TrustDomains are the trust domains allowed for the SVID and the chain
	// members; the server's own trust domain comes first.
	TrustDomains []spiffeid.TrustDomain
	// CacheTTL is how long the claims decoded from one version of an entry
	// are reused; 0 disables caching. The entry is read on every signing
	// (concurrent lookups of one ID are shared).
	CacheTTL time.Duration
	// NegativeCacheTTL is how long a lookup that found no entry is reused
	// (no_entry refusals only); 0 disables it.
	NegativeCacheTTL time.Duration
	// CacheSize bounds the number of cached entries.
	CacheSize int
	// SelectorType is the type of the selectors that carry the task record.
	SelectorType string
}

// Target is the gRPC target of the server API socket ("unix:///path").
func (c *Config) Target() string { return "unix://" + c.ServerAPISocket }

// rawConfig is the plugin's HCL as written. Pointers tell "absent" from
// "empty"; unknown keys are rejected by gohcl.
type rawConfig struct {
	ServerAPISocket  *string  `hcl:"server_api_socket,optional"`
	ExtensionOID     *string  `hcl:"extension_oid,optional"`
	TrustDomains     []string `hcl:"trust_domains,optional"`
	CacheTTL         *string  `hcl:"cache_ttl,optional"`
	NegativeCacheTTL *string  `hcl:"negative_cache_ttl,optional"`
	CacheSize        *int     `hcl:"cache_size,optional"`
	SelectorType     *string  `hcl:"selector_type,optional"`
}

// ConfigError is a configuration that does not load. Its diagnostics name
// the key at fault and where it is.
type ConfigError struct {
	Diagnostics hcl.Diagnostics
}

func (e *ConfigError) Error() string {
	return hclconf.Format("composer: configuration:", e.Diagnostics, false)
}

// ParseConfig parses the plugin's HCL configuration and validates it
// against the server's trust domain (from SPIRE's core configuration). It is
// the one build function of Configure and Validate: the error is a
// *[ConfigError].
func ParseConfig(src, serverTrustDomain string) (*Config, error) {
	file, diags := hclsyntax.ParseConfig([]byte(src), "plugin_data", hcl.InitialPos)
	if diags.HasErrors() {
		return nil, &ConfigError{diags}
	}
	body := file.Body.(*hclsyntax.Body)
	var raw rawConfig
	if diags := gohcl.DecodeBody(body, nil, &raw); diags.HasErrors() {
		return nil, &ConfigError{hclconf.NameKeys(body, diags)}
	}
	cfg, diags := raw.build(serverTrustDomain, body)
	if diags.HasErrors() {
		return nil, &ConfigError{diags}
	}
	return cfg, nil
}

func (r *rawConfig) build(serverTD string, body *hclsyntax.Body) (*Config, hcl.Diagnostics) {
	b := builder{body: body}
	cfg := &Config{
		ServerAPISocket:  b.socket(r.ServerAPISocket),
		OID:              b.oid(r.ExtensionOID),
		TrustDomains:     b.trustDomains(serverTD, r.TrustDomains),
		CacheTTL:         b.ttl("cache_ttl", r.CacheTTL, DefaultCacheTTL, MaxCacheTTL, "5s"),
		NegativeCacheTTL: b.ttl("negative_cache_ttl", r.NegativeCacheTTL, DefaultNegativeCacheTTL, MaxNegativeCacheTTL, "1s"),
		CacheSize:        b.size(r.CacheSize),
		SelectorType:     b.selectorType(r.SelectorType),
	}
	return cfg, b.diags
}

// builder collects one diagnostic per bad key, pointing at its value.
type builder struct {
	body  *hclsyntax.Body
	diags hcl.Diagnostics
}

func (b *builder) fail(key, format string, args ...any) {
	d := &hcl.Diagnostic{
		Severity: hcl.DiagError,
		Summary:  "Invalid " + key,
		Detail:   fmt.Sprintf(format, args...),
	}
	if attr, ok := b.body.Attributes[key]; ok {
		d.Subject = attr.Expr.Range().Ptr()
	}
	b.diags = append(b.diags, d)
}

func (b *builder) socket(v *string) string {
	if v == nil {
		return DefaultServerAPISocket
	}
	p := strings.TrimPrefix(*v, "unix://")
	if !filepath.IsAbs(p) {
		b.fail("server_api_socket", "%q is not an absolute path (or unix:///path).", *v)
	}
	return filepath.Clean(p)
}

func (b *builder) oid(v *string) asn1.ObjectIdentifier {
	if v == nil {
		return svid.DefaultOID
	}
	oid, err := svid.ParseOID(*v)
	if err != nil {
		b.fail("extension_oid", "%v.", err)
	}
	return oid
}

func (b *builder) trustDomains(server string, names []string) []spiffeid.TrustDomain {
	own, err := spiffeid.TrustDomainFromString(server)
	if err != nil {
		b.diags = append(b.diags, &hcl.Diagnostic{Severity: hcl.DiagError,
			Summary: "Invalid core configuration",
			Detail:  fmt.Sprintf("The server's trust domain %q: %v.", server, err)})
		return nil
	}
	tds := []spiffeid.TrustDomain{own}
	for _, n := range names {
		td, err := spiffeid.TrustDomainFromString(n)
		if err != nil {
			b.fail("trust_domains", "%q: %v.", n, err)
			continue
		}
		if !slices.Contains(tds, td) {
			tds = append(tds, td)
		}
	}
	return tds
}

func (b *builder) ttl(key string, v *string, def, limit time.Duration, example string) time.Duration {
	if v == nil {
		return def
	}
	d, err := time.ParseDuration(*v)
	if err != nil || d < 0 || d > limit {
		b.fail(key, "%q is not a duration between 0s and %s (e.g. %q).", *v, limit, example)
	}
	return d
}

func (b *builder) size(v *int) int {
	if v == nil {
		return DefaultCacheSize
	}
	if *v < 1 || *v > MaxCacheSize {
		b.fail("cache_size", "%d is not between 1 and %d.", *v, MaxCacheSize)
	}
	return *v
}

func (b *builder) selectorType(v *string) string {
	if v == nil {
		return svid.DefaultSelectorType
	}
	if *v == "" || strings.ContainsAny(*v, ": \t\n") {
		b.fail("selector_type", "%q is not a selector type (a plugin name, without ':').", *v)
	}
	return *v
}
