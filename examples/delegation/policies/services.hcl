# Policies of the knowledge-base and ticket service in the delegation story,
# enforced by the agentid-verifier proxy in front of it.
# Test them with: agentid policy test examples/delegation/policies

variable "user_principals" {
  value = ["spiffe://example.org/user/*"]
}

rule "kb-read" {
  effect = "allow"
  reason = "tasks holding kb:read, working for a user, read the knowledge base"

  peer {
    scopes_all = ["kb:read"]
    principal  = var.user_principals
    max_depth  = 2
  }

  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/**"]
    }
  }
}

rule "tickets-create" {
  effect = "allow"
  reason = "tasks holding tickets:write open tickets"

  peer {
    scopes_all = ["tickets:write"]
    principal  = var.user_principals
  }

  action {
    http {
      methods = ["POST"]
      paths   = ["/tickets"]
    }
  }
}

rule "tickets-need-write-scope" {
  effect = "deny"
  reason = "opening a ticket needs the tickets:write scope"

  peer {
    task_required = true
  }

  action {
    http {
      methods = ["POST"]
      paths   = ["/tickets"]
    }
  }

  condition = !has_scope(peer, "tickets:write")
}

# The same knowledge base and tickets as MCP tools (kbservice -mcp), behind
# the agentid-verifier MCP gateway.

rule "kb-mcp-read" {
  effect = "allow"
  reason = "tasks holding kb:read, working for a user, search and read the knowledge base over MCP"

  peer {
    scopes_all = ["kb:read"]
    principal  = var.user_principals
    max_depth  = 2
  }

  action {
    mcp { tools = ["kb_search", "kb_read"] }
  }
}

rule "tickets-mcp-create" {
  effect = "allow"
  reason = "tasks holding tickets:write open tickets over MCP"

  peer {
    scopes_all = ["tickets:write"]
    principal  = var.user_principals
  }

  action {
    mcp { tools = ["ticket_create"] }
  }
}

rule "tickets-mcp-need-write-scope" {
  effect = "deny"
  reason = "opening a ticket needs the tickets:write scope"

  peer {
    task_required = true
  }

  action {
    mcp { tools = ["ticket_create"] }
  }

  condition = !has_scope(peer, "tickets:write")
}
