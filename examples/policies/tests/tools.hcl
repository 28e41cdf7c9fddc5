# Tests for tools.hcl.

test "search tool for a task started by the planner" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { prompt = var.approved_prompts[0], chain = ["spiffe://example.org/agent/planner/task/T-41"], deadline = "2030-01-01T00:00:00Z" }
  }
  action = "mcp search_docs"
  expect = "allow"
  rule   = "mcp-search"
}

test "root task started by the orchestrator itself" {
  peer {
    spiffe_id = "spiffe://example.org/agent/orchestrator/task/O-1"
    claims    = { prompt = var.approved_prompts[1], deadline = "2030-01-01T00:00:00Z" }
  }
  action = "mcp fetch_url"
  expect = "allow"
}

test "shell is never allowed" {
  peer {
    spiffe_id = "spiffe://example.org/agent/orchestrator/task/O-1"
    claims    = { prompt = var.approved_prompts[1], deadline = "2030-01-01T00:00:00Z" }
  }
  action = "mcp shell"
  expect = "deny"
  rule   = "mcp-no-shell"
}

test "sandbox in the chain blocks tools" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-50"
    claims = {
      prompt   = var.approved_prompts[0]
      chain    = ["spiffe://example.org/agent/planner/task/T-41", "spiffe://example.org/agent/sandbox/task/S-1"]
      deadline = "2030-01-01T00:00:00Z"
    }
  }
  action = "mcp search_docs"
  expect = "deny"
  rule   = "untrusted-delegation"
}

test "publish orders from the office" {
  peer {
    spiffe_id = "spiffe://example.org/agent/clerk/task/C-1"
    claims    = { principal = "spiffe://example.org/user/bob", scope = ["orders:publish"], deadline = "2030-01-01T00:00:00Z" }
  }
  action = "queue orders.created"
  request {
    source = "10.1.2.3:40000"
  }
  expect = "allow"
  rule   = "queue-publish"
}

test "publish orders from outside" {
  peer {
    spiffe_id = "spiffe://example.org/agent/clerk/task/C-1"
    claims    = { principal = "spiffe://example.org/user/bob", scope = ["orders:publish"], deadline = "2030-01-01T00:00:00Z" }
  }
  action = "queue orders.created"
  request {
    source = "203.0.113.9:40000"
  }
  expect = "deny"
}

test "publish without a source address fails closed" {
  peer {
    spiffe_id = "spiffe://example.org/agent/clerk/task/C-1"
    claims    = { principal = "spiffe://example.org/user/bob", scope = ["orders:publish"], deadline = "2030-01-01T00:00:00Z" }
  }
  action = "queue orders.created"
  expect = "deny"
}

test "plain workload probes health" {
  peer {
    spiffe_id = "spiffe://example.org/service/monitor"
  }
  action = "http GET /healthz"
  expect = "allow"
  rule   = "health"
}

test "other trust domain cannot probe health" {
  peer {
    spiffe_id = "spiffe://evil.example/service/monitor"
  }
  action = "http GET /healthz"
  expect = "deny"
}
