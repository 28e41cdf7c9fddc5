rule "r" {
  efect = "allow"
  peer {
    scopes_al = ["kb:read"]
  }
  acton {
  }
}
