# A policy for @modelcontextprotocol/server-everything (the MCP reference
# server) behind the agentid-verifier MCP gateway: e2e.TestMCPGatewayOnRealSPIRE
# and `make demo` use it (docs/mcp.md).

variable "everything_read_tools" {
  value = ["echo", "get-sum", "get-tiny-image", "get-annotated-message", "get-structured-content"]
}

variable "everything_write_tools" {
  value = ["gzip-file-as-resource", "toggle-simulated-logging", "toggle-subscriber-updates"]
}

rule "everything-read" {
  effect = "allow"
  peer {
    trust_domain = "example.org"
    scopes_all   = ["mcp:read"]
  }
  action {
    mcp { tools = var.everything_read_tools }
  }
}

rule "everything-write" {
  effect = "allow"
  peer { scopes_all = ["mcp:write"] }
  action {
    mcp { tools = var.everything_write_tools }
  }
}

# gzip-file-as-resource fetches the URL it is given: from the server's
# network, not the agent's. Only inline data: URIs.
rule "everything-no-fetch" {
  effect = "deny"
  reason = "the server fetches no URL for an agent: give the content as a data: URI"
  action {
    mcp { tools = ["gzip-file-as-resource"] }
  }
  condition = !startswith(lookup(action.arguments, "data", ""), "data:")
}

rule "everything-no-env" {
  effect = "deny"
  reason = "get-env shows the server's environment, where its secrets are"
  action {
    mcp { tools = ["get-env"] }
  }
}

rule "everything-docs" {
  effect = "allow"
  peer { scopes_all = ["mcp:read"] }
  action {
    mcp { resources = ["demo://resource/static/document/*"] }
  }
}

rule "everything-docs-internal" {
  effect = "deny"
  reason = "the architecture notes are internal"
  action {
    mcp { resources = ["demo://resource/static/document/architecture.md"] }
  }
}

rule "everything-prompts" {
  effect = "allow"
  peer { scopes_all = ["mcp:read"] }
  action {
    mcp { prompts = ["simple-prompt"] }
  }
}

rule "everything-prompts-with-arguments" {
  effect = "allow"
  peer { scopes_all = ["mcp:write"] }
  action {
    mcp { prompts = ["args-prompt", "completable-prompt"] } # completion/complete of their arguments too
  }
}
