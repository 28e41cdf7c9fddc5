package main

import (
	"fmt"

	"github.com/agentid/agentid/svid"
)

func init() {
	register("prompt", "hash a system prompt: prompt hash FILE...", func(env *cli, args []string) error {
		return env.subcommands("prompt", args, map[string]func(*cli, []string) error{"hash": (*cli).promptHash})
	})
}

func (env *cli) promptHash(args []string) error {
	fs := env.flags("prompt hash", "prompt hash FILE...\n\nPrints sha256:<hex> of the prompt. Several files (a prompt built from parts)\ngive one digest that does not depend on their order: the SHA-256 of their sorted\nhex digests, one per line.")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return fmt.Errorf("%w: agentid prompt hash FILE...", errUsage)
	}
	d, err := svid.PromptDigestFiles(fs.Args()...)
	if err != nil {
		return err
	}
	fmt.Fprintln(env.stdout, d)
	return nil
}
