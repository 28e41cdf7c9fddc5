package registrar

import "strings"

// match reports whether s matches the pattern p, in which '*' stands for
// any run of characters (including none, '/' and ':'); every other
// character stands for itself.
func match(p, s string) bool {
	star, resume := -1, 0
	i, j := 0, 0
	for j < len(s) {
		switch {
		case i < len(p) && p[i] == '*':
			star, resume = i, j
			i++
		case i < len(p) && p[i] == s[j]:
			i++
			j++
		case star >= 0:
			resume++
			i, j = star+1, resume
		default:
			return false
		}
	}
	return strings.Trim(p[i:], "*") == ""
}

// matchAny returns the first pattern that s matches.
func matchAny(patterns []string, s string) (string, bool) {
	for _, p := range patterns {
		if match(p, s) {
			return p, true
		}
	}
	return "", false
}
