// Package mcpgw is agentid's MCP gateway: an http.Handler in front of any
// MCP server that speaks Streamable HTTP (protocol versions 2025-06-18,
// 2025-11-25 and 2026-07-28), or of a stdio MCP server that it runs as a
// child process.
//
// Every request goes through the verifier pipeline, as in
// [github.com/agentid/agentid/verifier/mcpauth]: the agent authenticates
// with SPIFFE mTLS or a JWT-SVID whose audience is the gateway's resource
// URI; tools/call (with its arguments), prompts/get and resources/read are
// decided by the HCL policy; tools/list, prompts/list and resources/list
// answers are filtered to what the task may use (JSON or SSE); and every
// decision is audited. The agent's credential never reaches the upstream,
// which can be given its own (Config.UpstreamHeader).
package mcpgw
