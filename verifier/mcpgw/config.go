package mcpgw

import (
	"log/slog"
	"net/http"
	"net/url"
	"time"
)

// Config configures a Gateway. agentid-verifier fills it from its
// mcp { … } block (docs/mcp.md, "The gateway").
type Config struct {
	// Resource is the gateway's resource URI (RFC 8707 / RFC 9728), e.g.
	// "https://files.example.org/mcp": the audience a JWT-SVID must name.
	// Required.
	Resource string
	// Path is the MCP endpoint on the gateway's listener (default: the
	// path of Resource, "/mcp" when it has none).
	Path string

	// Upstream is the Streamable HTTP endpoint of the MCP server. Exactly
	// one of Upstream and Command is set.
	Upstream *url.URL
	// Transport carries requests to Upstream (default: a clone of
	// http.DefaultTransport keeping up to 256 idle connections).
	Transport http.RoundTripper

	// Command runs a stdio MCP server as a child process (argv); the
	// gateway serves it over Streamable HTTP behind the same checks and
	// restarts it when it exits.
	Command []string
	// Env is the child's whole environment ("KEY=value"): it does not
	// inherit the verifier's, which may hold secrets.
	Env []string
	// Dir is the child's working directory ("" for the verifier's).
	Dir string
	// StderrBytes bounds the child's stderr kept and logged (default
	// DefaultStderrBytes).
	StderrBytes int

	// UpstreamHeader, when set, is a header sent on every request to
	// Upstream with the value UpstreamValue (e.g. "Authorization" and
	// "Bearer <key>"): the MCP server's credential, which the agent
	// never holds. The agent's own credential is never forwarded.
	UpstreamHeader string
	UpstreamValue  string
	// UpstreamValueFunc, when set, gives the value for each request in
	// place of UpstreamValue: a credential that rotates (agentid-verifier
	// reads value_file again when it changes). It is called on every
	// request to the upstream and must be fast and safe for concurrent use.
	UpstreamValueFunc func() string

	// ScopesSupported, ResourceName and AuthorizationServers go into the
	// RFC 9728 metadata.
	ScopesSupported      []string
	ResourceName         string
	AuthorizationServers []string

	// MaxSessionsPerTask bounds the MCP sessions one peer (SPIFFE ID and
	// task) holds through the gateway (default DefaultMaxSessionsPerTask):
	// a peer opening more forgets its own oldest, whose client gets 404
	// and starts a new one; the sessions of all peers together are bounded
	// too (65,536, the oldest forgotten first).
	MaxSessionsPerTask int
	// SessionIdleTimeout, when set, forgets a session that had no request
	// and no stream open for that long: its client gets 404 and starts a
	// new one. 0: sessions are forgotten only to make room. Forgotten
	// sessions are ended upstream with DELETE.
	SessionIdleTimeout time.Duration

	// Log receives the child's stderr and the gateway's faults (default:
	// slog.Default()).
	Log *slog.Logger
}

// DefaultStderrBytes is the default bound of a stdio child's stderr log.
const DefaultStderrBytes = 64 << 10
