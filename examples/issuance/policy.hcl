# Sample issuance policy for `agentid task create --policy` and the
# registrar daemon. See docs/registrar.md for the reference.
#
# A planner runs on behalf of users, may create root tasks of up to 4 hours
# and delegate to researchers, who may delegate read-only work to
# summarizers. No chain may be deeper than 2 (planner -> researcher ->
# summarizer).

agent "planner" {
  models     = ["openai/gpt-4o*", "anthropic/claude-*"]
  prompts    = ["*"]
  scopes     = ["kb:read", "kb:write", "web:search", "tickets:*"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "4h"
  max_depth  = 2
}

agent "researcher" {
  models     = ["openai/gpt-4o*", "local/llama3@sha256:*"]
  prompts    = ["sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"]
  scopes     = ["kb:read", "web:search"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "2h"
  max_depth  = 2
  delegators = ["planner"]
}

agent "summarizer" {
  models     = ["local/*"]
  prompts    = ["*"]
  scopes     = ["kb:read"]
  principals = ["spiffe://example.org/user/*"]
  max_ttl    = "30m"
  max_depth  = 2
  delegators = ["researcher"]
}

# Any other agent: short, read-only root tasks for the ops team only, and
# never a delegate.
agent "*" {
  models     = ["*"]
  prompts    = ["*"]
  scopes     = ["kb:read"]
  principals = ["spiffe://example.org/team/ops"]
  max_ttl    = "15m"
  max_depth  = 0
}
