package policies

// SetAfterList sets a function run between listing the policy directory
// and reading its files, for a test that changes the directory there; the
// returned function removes it.
func SetAfterList(f func()) (restore func()) {
	afterList = f
	return func() { afterList = nil }
}
