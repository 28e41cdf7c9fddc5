# HTTP path patterns are decided against canonical paths only: each of
# these denies would never match, so each is an error naming the
# canonical spelling (or why there is none).
rule "read" {
  effect = "allow"
  action {
    http { paths = ["/kb/**"] }
  }
}

rule "no-keys" {
  effect = "deny"
  action {
    http {
      paths = [
        "/kb/my docs/**",
        "/kb/café/**",
        "/kb/%40ops/**",
        "/kb/caf%c3%a9/**",
        "/kb/a;v=1/**",
        "/kb/x/../keys",
        "/kb/a%2Fb/**",
        "/kb/my%20docs/**",
      ]
    }
  }
}

# In a condition, a literal glob pattern over action.path is checked too
# (a warning: action.path is also a gRPC method).
rule "no-drafts" {
  effect    = "deny"
  condition = glob("/kb/my drafts/**", action.path) || glob("**/café/**", action.path) || glob("/kb/ok%20/**", action.path)
}
