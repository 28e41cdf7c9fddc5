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
