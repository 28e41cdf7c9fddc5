# MCP tools: search is open to every approved agent task, shell never.

rule "mcp-search" {
  effect = "allow"

  peer {
    trust_domain = "example.org"
    prompt       = var.approved_prompts
    chain_root   = var.trusted_orchestrators
  }

  action {
    mcp {
      tools = ["search_*", "fetch_url"]
    }
  }
}

rule "mcp-no-shell" {
  effect = "deny"
  reason = "shell tools are never available to agents"

  action {
    mcp {
      tools = ["shell", "exec_*"]
    }
  }
}

rule "untrusted-delegation" {
  effect = "deny"
  reason = "tasks delegated by the sandbox agent may not call tools"

  peer {
    delegated_by = ["spiffe://example.org/agent/sandbox/**"]
  }

  action {
    mcp {
      tools = ["**"]
    }
  }
}

rule "queue-publish" {
  effect = "allow"

  peer {
    principal  = ["spiffe://example.org/user/*"]
    scopes_all = ["orders:publish"]
  }

  action {
    generic {
      kind  = "queue"
      names = ["orders.*"]
    }
  }

  condition = anytrue([for n in var.office_networks : cidr_contains(n, request.source)])
}

rule "health" {
  effect = "allow"
  reason = "any workload of the trust domain may probe health"

  peer {
    trust_domain = "example.org"
  }

  action {
    http {
      paths = ["/healthz"]
    }
  }
}
