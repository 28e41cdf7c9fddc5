# A database MCP server with a "query" tool (SQL text in "sql") and an
# "execute" tool for statements that change data.

variable "read_only_sql" {
  description = "one statement that starts with a read-only verb: no ; inside, at most one at the end"
  value       = "^\\s*(?i:select|with|explain|show)\\s[^;]*;?\\s*$"
}

rule "db-query" {
  effect = "allow"
  reason = "tasks with db:read run read-only queries"

  peer {
    trust_domain = "example.org"
    scopes_all   = ["db:read"]
  }

  action {
    mcp {
      tools = ["query", "list_tables", "describe_table"]
    }
  }
}

rule "db-query-read-only" {
  effect = "deny"
  reason = "query takes one read-only statement (SELECT, WITH, EXPLAIN, SHOW)"

  action {
    mcp {
      tools = ["query"]
    }
  }

  condition = !matches(var.read_only_sql, lookup(action.arguments, "sql", ""))
}

rule "db-execute" {
  effect = "allow"
  reason = "statements that change data need db:write, and a task of the etl agent"

  peer {
    agent      = ["etl"]
    scopes_all = ["db:write"]
  }

  action {
    mcp {
      tools = ["execute"]
    }
  }
}

rule "db-prompts" {
  effect = "allow"

  peer {
    scopes_all = ["db:read"]
  }

  action {
    mcp {
      prompts = ["explain_*"]
    }
  }
}
