# agentid policy test examples/authzen-todo/policies

test "morty updates his own todo" {
  authzen = {
    subject  = { type = "user", id = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs" }
    action   = { name = "can_update_todo" }
    resource = { type = "todo", id = "7240d0db-8ff0-41ec-98b2-34a096273b91", properties = { ownerID = "morty@the-citadel.com" } }
  }
  expect = "allow"
  rule   = "update-or-delete-own-todo"
}

test "morty cannot update rick's todo" {
  authzen = {
    subject  = { type = "user", id = "CiRmZDE2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs" }
    action   = { name = "can_update_todo" }
    resource = { type = "todo", id = "7240d0db-8ff0-41ec-98b2-34a096273b92", properties = { ownerID = "rick@the-citadel.com" } }
  }
  expect = "deny"
}

test "rick deletes anyone's todo" {
  authzen = {
    subject  = { type = "user", id = "CiRmZDA2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs" }
    action   = { name = "can_delete_todo" }
    resource = { type = "todo", id = "7240d0db-8ff0-41ec-98b2-34a096273b91", properties = { ownerID = "morty@the-citadel.com" } }
  }
  expect = "allow"
  rule   = "delete-any-todo"
}

test "beth, a viewer, creates nothing" {
  authzen = {
    subject  = { type = "user", id = "CiRmZDM2MTRkMy1jMzlhLTQ3ODEtYjdiZC04Yjk2ZjVhNTEwMGQSBWxvY2Fs" }
    action   = { name = "can_create_todo" }
    resource = { type = "todo", id = "todo-1" }
  }
  expect = "deny"
}

test "an unknown user reads nothing" {
  authzen = {
    subject  = { type = "user", id = "nobody" }
    action   = { name = "can_read_todos" }
    resource = { type = "todo", id = "todo-1" }
  }
  expect = "deny"
}

test "an agent task is not a user" {
  peer {
    spiffe_id = "spiffe://example.org/agent/researcher/task/T-42"
  }
  authzen = {
    action   = { name = "can_read_todos" }
    resource = { type = "todo", id = "todo-1" }
  }
  expect = "deny"
}
