require_signature = "yes"

rule "d" {
  effect            = "deny"
  require_signature = true
  action {
    http {
      methods = ["DELETE"]
    }
  }
}

rule "a" {
  effect            = "allow"
  require_signature = 1
}

rule "b" {
  effect             = "allow"
  require_signatures = true
}
