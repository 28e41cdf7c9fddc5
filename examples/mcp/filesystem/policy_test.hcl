test "reads a shared file" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["fs:read"] }
  }
  action    = "mcp read_file"
  arguments = { path = "/srv/shared/notes.md" }
  expect    = "allow"
  rule      = "fs-read"
}

test "writes below its own directory" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["fs:read", "fs:write"] }
  }
  action    = "mcp write_file"
  arguments = { path = "/srv/agents/T-42/out.md", content = "…" }
  expect    = "allow"
  rule      = "fs-write"
}

test "may not write in another task's directory" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["fs:read", "fs:write"] }
  }
  action    = "mcp write_file"
  arguments = { path = "/srv/agents/T-7/out.md", content = "…" }
  expect    = "deny"
  rule      = "fs-write-outside-task"
}

test "may not climb out with dot segments" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["fs:read", "fs:write"] }
  }
  action    = "mcp write_file"
  arguments = { path = "/srv/agents/T-42/../../../etc/cron.d/x", content = "…" }
  expect    = "deny"
  rule      = "fs-dot-segments"
}

test "move_file checks both paths" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["fs:read", "fs:write"] }
  }
  action    = "mcp move_file"
  arguments = { source = "/srv/agents/T-42/a", destination = "/srv/shared/a" }
  expect    = "deny"
  rule      = "fs-write-outside-task"
}

test "writes need fs:write" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["fs:read"] }
  }
  action    = "mcp write_file"
  arguments = { path = "/srv/agents/T-42/out.md", content = "…" }
  expect    = "deny"
}

test "reads a file resource" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
    claims    = { scope = ["fs:read"] }
  }
  action = "mcp resources/read file:///srv/shared/notes.md"
  expect = "allow"
  rule   = "fs-resources"
}
