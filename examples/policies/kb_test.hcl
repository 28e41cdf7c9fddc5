# Tests for kb.hcl: agentid policy test examples/policies

test "researcher reads a document" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims = {
      model     = "openai/gpt-4o-2024-08-06"
      prompt    = var.approved_prompts[0]
      scope     = ["kb:read"]
      principal = "spiffe://example.org/user/alice"
      chain     = ["spiffe://example.org/agent/planner/task/T-41"]
      deadline  = "2030-01-01T00:00:00Z"
    }
  }
  action = "http GET /kb/docs/7"
  expect = "allow"
  rule   = "kb-read"
}

test "researcher reads over gRPC" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { model = "anthropic/claude", prompt = var.approved_prompts[1], scope = ["kb:read"], deadline = "2030-01-01T00:00:00Z" }
  }
  action = "grpc /kb.v1.KB/GetDocument"
  expect = "allow"
  rule   = "kb-read"
}

test "unapproved prompt is denied" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { model = "openai/gpt-4o", prompt = "sha256:0000000000000000000000000000000000000000000000000000000000000000", scope = ["kb:read"], deadline = "2030-01-01T00:00:00Z" }
  }
  action = "http GET /kb/docs/7"
  expect = "deny"
}

test "delegation too deep" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-44"
    claims = {
      model = "openai/gpt-4o", prompt = var.approved_prompts[0], scope = ["kb:read"], deadline = "2030-01-01T00:00:00Z"
      chain = ["spiffe://example.org/agent/planner/task/T-1", "spiffe://example.org/agent/a/task/T-2", "spiffe://example.org/agent/b/task/T-3"]
    }
  }
  action = "http GET /kb/docs/7"
  expect = "deny"
}

test "plain SVID cannot read" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
  }
  action = "http GET /kb/docs/7"
  expect = "deny"
}

test "nobody deletes" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { model = "openai/gpt-4o", prompt = var.approved_prompts[0], scope = ["kb:read", "kb:admin"], deadline = "2030-01-01T00:00:00Z" }
  }
  action = "http DELETE /kb/docs/7"
  expect = "deny"
  rule   = "kb-no-deletes"
}

test "writer with a ticket in office hours" {
  peer {
    spiffe_id = "spiffe://example.org/agent/writer/task/W-1"
    claims    = { scope = ["kb:write"], chain = ["spiffe://example.org/agent/planner/task/T-41"], deadline = "2030-01-01T10:00:00Z" }
  }
  action = "http PUT /kb/docs/7"
  request {
    headers = { "X-Change-Ticket" = "CHG-1234" }
  }
  now    = "2030-01-01T09:30:00Z"
  expect = "allow"
  rule   = "kb-write"
}

test "writer at night" {
  peer {
    spiffe_id = "spiffe://example.org/agent/writer/task/W-1"
    claims    = { scope = ["kb:write"], deadline = "2030-01-02T10:00:00Z" }
  }
  action = "http PUT /kb/docs/7"
  request {
    headers = { "x-change-ticket" = "CHG-1234" }
  }
  now    = "2030-01-01T23:30:00Z"
  expect = "deny"
}

test "writer close to its deadline" {
  peer {
    spiffe_id = "spiffe://example.org/agent/writer/task/W-1"
    claims    = { scope = ["kb:write"], deadline = "2030-01-01T09:31:00Z" }
  }
  action = "http PUT /kb/docs/7"
  request {
    headers = { "x-change-ticket" = "CHG-1234" }
  }
  now    = "2030-01-01T09:30:00Z"
  expect = "deny"
}

test "writer delegated by an untrusted agent" {
  peer {
    spiffe_id = "spiffe://example.org/agent/writer/task/W-1"
    claims    = { scope = ["kb:write"], chain = ["spiffe://example.org/agent/intern/task/I-1"], deadline = "2030-01-01T10:00:00Z" }
  }
  action = "http PUT /kb/docs/7"
  request {
    headers = { "x-change-ticket" = "CHG-1234" }
  }
  now    = "2030-01-01T09:30:00Z"
  expect = "deny"
}

# A saved X.509-SVID (e.g. from `agentid svid inspect` or the Workload API)
# as the peer: its SPIFFE ID and task claims come from the certificate.
test "saved researcher SVID reads a document" {
  peer {
    certificate = "testdata/researcher-T-42.pem"
  }
  action = "http GET /kb/docs/7"
  now    = "2026-11-29T09:30:00Z"
  expect = "allow"
  rule   = "kb-read"
}
