rule "r" {
  effect = "allow"
  condition = peer.agent == 
}
