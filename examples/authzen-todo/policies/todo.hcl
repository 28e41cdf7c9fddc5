# The AuthZEN Todo interop scenario (openid/authzen,
# interop/authzen-interop-website/docs/scenarios/todo-1.0-id) as agentid
# policy. Subjects are users the PEP (the Todo backend) asserts, by their
# PID; their attributes come from the PIP data in users.json (the
# scenario's, keyed by PID), read here as data.users. Default deny.

data "users" {
  description = "The scenario's PIP: id (email), name, roles, by PID."
  file        = "users.json"
}

variable "editor_roles" {
  description = "Roles that include the editor's rights (admin and evil_genius are editor +)."
  value       = ["admin", "editor", "evil_genius"]
}

# "For simplicity, the policy always returns true" — for known users.
rule "read-users-and-todos" {
  effect = "allow"
  subject {
    type = "user"
  }
  action {
    authzen {
      names = ["can_read_user", "can_read_todos"]
    }
  }
  condition = data.users[subject.id].id != ""
}

rule "create-todo" {
  effect = "allow"
  reason = "admins and editors create todos"
  subject {
    type = "user"
  }
  action {
    authzen {
      names = ["can_create_todo"]
    }
  }
  condition = anytrue([for r in data.users[subject.id].roles : contains(var.editor_roles, r)])
}

rule "update-any-todo" {
  effect = "allow"
  reason = "evil geniuses update anyone's todos"
  subject {
    type = "user"
  }
  resource {
    type = "todo"
  }
  action {
    authzen {
      names = ["can_update_todo"]
    }
  }
  condition = contains(data.users[subject.id].roles, "evil_genius")
}

rule "delete-any-todo" {
  effect = "allow"
  reason = "admins delete anyone's todos"
  subject {
    type = "user"
  }
  resource {
    type = "todo"
  }
  action {
    authzen {
      names = ["can_delete_todo"]
    }
  }
  condition = contains(data.users[subject.id].roles, "admin")
}

rule "update-or-delete-own-todo" {
  effect = "allow"
  reason = "editors update and delete their own todos"
  subject {
    type = "user"
  }
  resource {
    type = "todo"
  }
  action {
    authzen {
      names = ["can_update_todo", "can_delete_todo"]
    }
  }
  condition = (
    anytrue([for r in data.users[subject.id].roles : contains(var.editor_roles, r)])
    && resource.properties.ownerID == data.users[subject.id].id
  )
}
