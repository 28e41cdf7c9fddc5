test "echo with mcp:read" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["mcp:read"] }
  }
  action    = "mcp echo"
  arguments = { message = "hi" }
  expect    = "allow"
  rule      = "everything-read"
}

test "gzip of inline data with mcp:write" {
  peer {
    spiffe_id = "spiffe://example.org/agent/planner/task/T-41"
    claims    = { scope = ["mcp:read", "mcp:write"] }
  }
  action    = "mcp gzip-file-as-resource"
  arguments = { name = "a.gz", data = "data:text/plain;base64,aGVsbG8=" }
  expect    = "allow"
  rule      = "everything-write"
}

test "gzip of a URL is refused" {
  peer {
    spiffe_id = "spiffe://example.org/agent/planner/task/T-41"
    claims    = { scope = ["mcp:read", "mcp:write"] }
  }
  action    = "mcp gzip-file-as-resource"
  arguments = { name = "a.gz", data = "http://169.254.169.254/latest/meta-data/" }
  expect    = "deny"
  rule      = "everything-no-fetch"
}

test "writing tools need mcp:write" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["mcp:read"] }
  }
  action = "mcp toggle-simulated-logging"
  expect = "deny"
}

test "nobody reads the server's environment" {
  peer {
    spiffe_id = "spiffe://example.org/agent/planner/task/T-41"
    claims    = { scope = ["mcp:read", "mcp:write"] }
  }
  action = "mcp get-env"
  expect = "deny"
  rule   = "everything-no-env"
}

test "documents with mcp:read" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["mcp:read"] }
  }
  action = "mcp resources/read demo://resource/static/document/features.md"
  expect = "allow"
  rule   = "everything-docs"
}

test "not the internal architecture notes" {
  peer {
    spiffe_id = "spiffe://example.org/agent/planner/task/T-41"
    claims    = { scope = ["mcp:read", "mcp:write"] }
  }
  action = "mcp resources/read demo://resource/static/document/architecture.md"
  expect = "deny"
  rule   = "everything-docs-internal"
}

test "the prompt with arguments needs mcp:write" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["mcp:read"] }
  }
  action = "mcp prompts/get args-prompt"
  expect = "deny"
}

test "completing a prompt's arguments is getting the prompt: mcp:write" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["mcp:read"] }
  }
  action = "mcp prompts/get completable-prompt"
  expect = "deny"
}
