# Costly patterns (warnings) and conditions whose cost would grow faster
# than the request (errors): issue 16.
variable "pats" {
  value = ["/kb/*", "/docs/**"]
}

rule "costly-patterns" {
  effect = "allow"
  action {
    http { paths = ["/**a**b**c**d**e", "/*abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopq*"] }
  }
}

rule "too-long-span" {
  effect = "allow"
  action {
    mcp { tools = ["*abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz*"] }
  }
}

rule "linear-conditions" {
  effect = "allow"
  condition = (anytrue([for p in var.pats : glob(p, action.path)])
    && alltrue([for s in split("/", action.path) : length(s) < 64 && s != peer.agent])
    && length([for s in split("/", action.path) : [for c in split("", s) : c == "x"]]) < 100
    && regex("^/kb/", action.path) != ""
    && join(",", distinct(split("/", action.path))) != ""
    && subset(split("/", action.path), ["", "kb", "docs"])
    && replace(action.path, "/", "_") != ""
    && length(regexall("/", join(",", var.pats))) == 4)
}

rule "quadratic-conditions" {
  effect = "deny"
  condition = (glob(request.headers["x-pattern"], action.path)
    || regex(lookup(request.headers, "x-re", ""), action.path) != ""
    || glob(peer.agent, action.name)
    || join(action.path, split("", action.path)) != ""
    || replace(action.path, "", action.path) != ""
    || length(setunion(split("/", action.path), ["a"])) > 3
    || anytrue([for s in split("/", action.path) : contains(split("/", action.path), s)])
    || anytrue([for s in split("/", action.path) : anytrue([for c in split("", s) : c == s])])
    || anytrue([for k, v in request.headers : glob(v, action.path)])
    || length(regexall("a[^x]*x|a", request.headers["x-q"])) > 0
    || length(regexall("a", peer.prompt)) > 0)
}
