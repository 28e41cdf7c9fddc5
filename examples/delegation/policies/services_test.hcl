# agentid policy test examples/delegation/policies

test "the planner reads and opens tickets" {
  peer {
    spiffe_id = "spiffe://example.org/agent/planner/task/T-planner"
    claims    = { scope = ["tickets:read", "tickets:write", "kb:read"], principal = "spiffe://example.org/user/alice" }
  }
  action = "http POST /tickets"
  expect = "allow"
  rule   = "tickets-create"
}

test "the researcher reads the knowledge base" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-researcher"
    claims = {
      scope     = ["kb:read"]
      principal = "spiffe://example.org/user/alice"
      chain     = ["spiffe://example.org/agent/planner/task/T-planner"]
    }
  }
  action = "http GET /kb/onboarding"
  expect = "allow"
  rule   = "kb-read"
}

test "the researcher cannot open tickets" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-researcher"
    claims = {
      scope     = ["kb:read"]
      principal = "spiffe://example.org/user/alice"
      chain     = ["spiffe://example.org/agent/planner/task/T-planner"]
    }
  }
  action = "http POST /tickets"
  expect = "deny"
  rule   = "tickets-need-write-scope"
}

test "a plain workload SVID reads nothing" {
  peer {
    spiffe_id = "spiffe://example.org/workload/cron"
  }
  action = "http GET /kb/onboarding"
  expect = "deny"
}

test "the researcher searches the knowledge base over MCP" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-researcher"
    claims = {
      scope     = ["kb:read"]
      principal = "spiffe://example.org/user/alice"
      chain     = ["spiffe://example.org/agent/planner/task/T-planner"]
    }
  }
  action    = "mcp kb_search"
  arguments = { query = "onboarding" }
  expect    = "allow"
  rule      = "kb-mcp-read"
}

test "the researcher cannot open tickets over MCP" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-researcher"
    claims = {
      scope     = ["kb:read"]
      principal = "spiffe://example.org/user/alice"
      chain     = ["spiffe://example.org/agent/planner/task/T-planner"]
    }
  }
  action    = "mcp ticket_create"
  arguments = { title = "x" }
  expect    = "deny"
  rule      = "tickets-mcp-need-write-scope"
}

test "the planner opens tickets over MCP" {
  peer {
    spiffe_id = "spiffe://example.org/agent/planner/task/T-planner"
    claims    = { scope = ["tickets:read", "tickets:write", "kb:read"], principal = "spiffe://example.org/user/alice" }
  }
  action    = "mcp ticket_create"
  arguments = { title = "x" }
  expect    = "allow"
  rule      = "tickets-mcp-create"
}
