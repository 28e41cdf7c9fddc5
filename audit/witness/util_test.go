package witness_test

import (
	"os"
	"testing"
)

func must(t *testing.T, path string) string {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(data)
}

func writeFile(path, data string) error { return os.WriteFile(path, []byte(data), 0o600) }
