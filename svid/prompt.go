package svid

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"slices"
	"strings"
)

// PromptDigest returns "sha256:<hex>" of one system prompt's bytes, the
// same hex that `sha256sum` prints for the file.
func PromptDigest(prompt []byte) string {
	sum := sha256.Sum256(prompt)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// PromptDigestFiles digests a system prompt kept in one or more files.
//
// One file: [PromptDigest] of its bytes. Several files (a prompt assembled
// from parts): the SHA-256 of the sorted per-file hex digests, each followed
// by a newline — equal to `sha256sum FILES | cut -d' ' -f1 | sort | sha256sum`.
// The result does not depend on the order of the files or their names, only
// on their contents; repeating a file changes it.
func PromptDigestFiles(paths ...string) (string, error) {
	hexes := make([]string, 0, len(paths))
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			return "", err
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return "", err
		}
		hexes = append(hexes, hex.EncodeToString(h.Sum(nil)))
	}
	if len(hexes) == 1 {
		return "sha256:" + hexes[0], nil
	}
	slices.Sort(hexes)
	return PromptDigest([]byte(strings.Join(hexes, "\n") + "\n")), nil
}
