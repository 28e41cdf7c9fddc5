# Issuance policy used by the tests: line numbers are asserted.
agent "planner" {
  models     = ["openai/gpt-4o*"]
  prompts    = ["*"]
  scopes     = ["kb:read", "kb:write", "web:*"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "4h"
  max_depth  = 3
  delegators = ["looper"]
}

agent "researcher" {
  models     = ["openai/gpt-4o*", "local/*"]
  prompts    = ["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
  scopes     = ["kb:read", "web:search"]
  principals = ["spiffe://example.org/user/alice", "spiffe://example.org/user/carol"]
  max_ttl    = "2h"
  max_depth  = 2
  delegators = ["planner"]
}

agent "summarizer" {
  models     = ["*"]
  prompts    = ["*"]
  scopes     = ["kb:read", "web:search"]
  principals = ["*"]
  delegators = ["researcher", "planner"]
}

agent "shallow" {
  models     = ["*"]
  prompts    = ["*"]
  scopes     = ["*"]
  principals = ["*"]
  max_depth  = 1
  delegators = ["*"]
}

agent "looper" {
  models     = ["*"]
  prompts    = ["*"]
  scopes     = ["*"]
  principals = ["*"]
  max_ttl    = "2h"
  delegators = ["planner"]
}
