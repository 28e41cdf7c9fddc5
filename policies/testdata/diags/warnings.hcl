variable "unused" {
  value = 1
}

rule "everything" {
  effect = "allow"
}

rule "kb" {
  effect = "allow"
  action {
    http {
      paths = ["/kb/docs/*"]
    }
  }
}

rule "kb-dup" {
  effect = "allow"
  action {
    http {
      methods = ["GET"]
      paths   = ["/kb/docs/x"]
    }
  }
}

rule "no-kb" {
  effect = "deny"
  peer {
    delegators_forbidden = ["spiffe://example.org/agent/x/**"]
  }
  action {
    http {
      paths = ["/kb/**"]
    }
  }
}

rule "no-kb-at-all" {
  effect = "deny"
  action {
    http {
      paths = ["/kb/**"]
    }
  }
}
