package main

import (
	"fmt"
	"runtime"

	"github.com/agentid/agentid/internal/version"
)

func init() {
	register("version", "print the agentid version", func(env *cli, args []string) error {
		fs := env.flags("version", "version")
		if err := parseFlags(fs, args); err != nil {
			return err
		}
		fmt.Fprintf(env.stdout, "agentid %s %s/%s %s\n", version.String(), runtime.GOOS, runtime.GOARCH, runtime.Version())
		return nil
	})
}
