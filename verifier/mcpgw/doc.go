// Package mcpgw is agentid's MCP gateway: an http.Handler in front of any
// MCP server that speaks Streamable HTTP (protocol versions 2025-06-18,
// 2025-11-25 and 2026-07-28), or of a stdio MCP server that it runs as a
// child process.
//
// Every request goes through the verifier pipeline, as in
// [github.com/agentid/agentid/verifier/mcpauth]: the agent authenticates
// with SPIFFE mTLS or a JWT-SVID whose audience is the gateway's resource
// URI; tools/call (with its arguments), prompts/get and resources/read are
// decided by the HCL policy, and completion/complete as the prompts/get or
// resources/read it completes; tools/list, prompts/list, resources/list
// and resources/templates/list answers are filtered to what the task may
// use (JSON or SSE); the upstream's notifications/resources/updated reach
// the agent only for resources it may read; Mcp-Method, Mcp-Name and
// Mcp-Param-* headers must agree with the body (HeaderMismatch otherwise);
// and every decision is audited. The agent's credential never reaches the upstream,
// which can be given its own (Config.UpstreamHeader).
//
// The upstream sees the gateway's request ids, not the agent's (each
// answer goes back under the agent's id as it spelled it), so that an
// answer is known by the id the gateway chose; a list answer not known as
// such is replaced by an error. Sessions are bound to the task that
// opened them, at most Config.MaxSessionsPerTask per task (and forgotten
// after Config.SessionIdleTimeout, when set); a session the gateway
// forgets is ended upstream with DELETE. Stream resumption (Last-Event-ID) is refused, and GET streams carry the
// server's requests and notifications only.
package mcpgw
