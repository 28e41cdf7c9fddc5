# Shared values, referenced from rules as var.<name>.

variable "approved_prompts" {
  description = "System prompts reviewed by the security team (agentid prompt hash)."
  value = [
    "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "sha256:60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
  ]
}

variable "trusted_orchestrators" {
  value = ["spiffe://example.org/agent/planner/**", "spiffe://example.org/agent/orchestrator/**"]
}

variable "office_networks" {
  value = ["10.0.0.0/8", "192.168.0.0/16"]
}
