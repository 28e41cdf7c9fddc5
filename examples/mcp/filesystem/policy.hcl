# A filesystem MCP server (read_file, list_directory, write_file, …).
# Every task reads the shared tree under /srv; a task writes only below its
# own directory /srv/agents/<task>/. Paths come from the tool arguments.

variable "read_tools" {
  value = ["read_file", "read_text_file", "list_directory", "search_files", "get_file_info"]
}

variable "write_tools" {
  value = ["write_file", "edit_file", "create_directory", "move_file"]
}

variable "dot_segment" {
  description = "a . or .. path segment: refused, whatever the prefix"
  value       = "(^|/)\\.\\.?(/|$)"
}

rule "fs-read" {
  effect = "allow"
  reason = "agent tasks with fs:read read the shared tree under /srv"

  peer {
    trust_domain = "example.org"
    scopes_all   = ["fs:read"]
  }

  action {
    mcp {
      tools = var.read_tools
    }
  }

  condition = startswith(lookup(action.arguments, "path", ""), "/srv/")
}

rule "fs-write" {
  effect = "allow"
  reason = "a task with fs:write writes below its own directory"

  peer {
    trust_domain = "example.org"
    scopes_all   = ["fs:write"]
  }

  action {
    mcp {
      tools = var.write_tools
    }
  }

  condition = startswith(lookup(action.arguments, "path", ""), "/srv/agents/${peer.task}/")
}

rule "fs-write-outside-task" {
  effect = "deny"
  reason = "writes are confined to /srv/agents/<task>/"

  action {
    mcp {
      tools = var.write_tools
    }
  }

  # A write tool's every path argument must be below the task's directory
  # (move_file has source and destination).
  condition = anytrue([for k in ["path", "source", "destination"] :
  can(action.arguments[k]) && !startswith(action.arguments[k], "/srv/agents/${peer.task}/")])
}

rule "fs-dot-segments" {
  effect = "deny"
  reason = "paths with . or .. segments are refused"

  action {
    mcp {
      tools = concat(var.read_tools, var.write_tools)
    }
  }

  condition = anytrue([for k in ["path", "source", "destination"] :
  can(action.arguments[k]) && matches(var.dot_segment, action.arguments[k])])
}

rule "fs-resources" {
  effect = "allow"
  reason = "file resources under /srv are readable with fs:read"

  peer {
    scopes_all = ["fs:read"]
  }

  action {
    mcp {
      resources = ["file:///srv/**"]
    }
  }
}
