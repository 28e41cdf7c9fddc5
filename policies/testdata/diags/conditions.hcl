variable "approved" {
  value = ["a"]
}

rule "a" {
  effect    = "allow"
  condition = globb("x", peer.id)
}

rule "b" {
  effect    = "allow"
  condition = peer.scops == []
}

rule "c" {
  effect    = "allow"
  condition = contains(var.aproved, peer.agent)
}

rule "d" {
  effect    = "allow"
  condition = peers.agent == "x"
}

rule "e" {
  effect    = "allow"
  condition = peer.agent
}
