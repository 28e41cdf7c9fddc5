test "a select is allowed" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["db:read"] }
  }
  action    = "mcp query"
  arguments = { sql = "SELECT id, title FROM docs WHERE owner = 'alice'" }
  expect    = "allow"
  rule      = "db-query"
}

test "a delete through query is refused" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["db:read"] }
  }
  action    = "mcp query"
  arguments = { sql = "DELETE FROM docs" }
  expect    = "deny"
  rule      = "db-query-read-only"
}

test "a second statement is refused" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["db:read"] }
  }
  action    = "mcp query"
  arguments = { sql = "select 1; drop table docs" }
  expect    = "deny"
  rule      = "db-query-read-only"
}

test "query without sql is refused" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["db:read"] }
  }
  action = "mcp query"
  expect = "deny"
  rule   = "db-query-read-only"
}

test "execute needs the etl agent and db:write" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["db:read", "db:write"] }
  }
  action    = "mcp execute"
  arguments = { sql = "UPDATE docs SET title = 'x'" }
  expect    = "deny"
}

test "a prompt of the server" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["db:read"] }
  }
  action = "mcp prompts/get explain_query"
  expect = "allow"
  rule   = "db-prompts"
}

test "a tool pattern never matches a prompt" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["db:read"] }
  }
  action = "mcp prompts/get query"
  expect = "deny"
}
