# The knowledge base service: researchers read, writers write.

rule "kb-read" {
  effect = "allow"
  reason = "researchers with kb:read may read the knowledge base"

  peer {
    spiffe_id  = ["spiffe://example.org/agent/researcher/**"]
    model      = ["openai/gpt-4o*", "anthropic/*"]
    prompt     = var.approved_prompts
    scopes_all = ["kb:read"]
    max_depth  = 2
  }

  action {
    http {
      methods = ["GET", "HEAD"]
      paths   = ["/kb/**"]
    }
    grpc {
      methods = ["/kb.v1.KB/Get*", "/kb.v1.KB/Search"]
    }
  }
}

rule "kb-write" {
  effect = "allow"
  reason = "writers may change documents during office hours"

  peer {
    agent                  = ["writer"]
    scopes_any             = ["kb:write", "kb:admin"]
    delegators_allowed     = var.trusted_orchestrators
    min_deadline_remaining = "2m"
  }

  action {
    http {
      methods = ["PUT", "POST"]
      paths   = ["/kb/docs/*"]
    }
  }

  condition = hour(now) >= 8 && hour(now) < 18 && contains(keys(request.headers), "x-change-ticket")
}

rule "kb-no-deletes" {
  effect = "deny"
  reason = "nobody deletes from the knowledge base through an agent"

  action {
    http {
      methods = ["DELETE"]
      paths   = ["/kb/**"]
    }
  }
}
