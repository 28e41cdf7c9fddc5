variable "prompts" {
  value = ["sha256:nothex"]
}

rule "r" {
  effect = "alow"
  peer {
    spiffe_id              = ["example.org/agent/*", "spiffe://example.org/***"]
    prompt                 = var.prompts
    min_depth              = 3
    max_depth              = 1
    min_deadline_remaining = "5 minutes"
  }
  action {
    http {
      methods = ["get"]
      paths   = ["kb/**"]
    }
  }
}
