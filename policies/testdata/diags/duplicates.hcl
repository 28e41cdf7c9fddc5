variable "v" {
  value = 1
}

variable "v" {
  value = 2
}

rule "dup" {
  effect = "deny"
}

rule "dup" {
  effect = "deny"
}

rule "bad name!" {
  effect = "deny"
}
