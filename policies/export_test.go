package policies

// SetLoadHook sets a function run at steps of a load ("listed": between
// listing the policy directory and reading its files; "data": before
// reading a data file), for a test that changes the directory there; the
// returned function removes it.
func SetLoadHook(f func(step string)) (restore func()) {
	loadHook = f
	return func() { loadHook = nil }
}
