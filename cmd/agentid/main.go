// Command agentid is the operator and developer CLI of agentid: it launches
// agent tasks (run), manages them (task), inspects and verifies SVIDs (svid),
// hashes prompts (prompt), works with policies (policy) and audit logs
// (audit), and starts a local development stack (dev).
//
// Each command group lives in its own file and registers itself with
// register in an init function.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

// command is one top-level subcommand.
type command struct {
	name    string
	summary string
	run     func(env *cli, args []string) error
}

var commands = map[string]command{}

func register(name, summary string, run func(env *cli, args []string) error) {
	if _, dup := commands[name]; dup {
		panic("agentid: command registered twice: " + name)
	}
	commands[name] = command{name: name, summary: summary, run: run}
}

// cli carries the process's streams so that commands can be tested.
type cli struct {
	stdout, stderr io.Writer
	stdin          io.Reader
}

// exitError makes a command exit with a code without printing usage.
type exitError struct {
	code int
	msg  string
}

func (e *exitError) Error() string { return e.msg }

// errUsage reports a misuse of a command; main prints it with exit code 2.
var errUsage = errors.New("usage")

func main() {
	env := &cli{stdout: os.Stdout, stderr: os.Stderr, stdin: os.Stdin}
	os.Exit(env.main(os.Args[1:]))
}

func (env *cli) main(args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		env.usage()
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(env.stderr, "agentid: unknown command %q\n\n", args[0])
		env.usage()
		return 2
	}
	err := cmd.run(env, args[1:])
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(env.stderr, "agentid %s: %v\n", cmd.name, err)
		return 2
	case errors.As(err, &ee):
		if ee.msg != "" {
			fmt.Fprintf(env.stderr, "agentid %s: %s\n", cmd.name, ee.msg)
		}
		return ee.code
	default:
		fmt.Fprintf(env.stderr, "agentid %s: %v\n", cmd.name, err)
		return 1
	}
}

func (env *cli) usage() {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("Usage: agentid <command> [flags] [args]\n\nCommands:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  %-10s %s\n", n, commands[n].summary)
	}
	b.WriteString("\nRun 'agentid <command> -h' for a command's flags.\n")
	fmt.Fprint(env.stderr, b.String())
}

// flags returns a FlagSet that writes its usage to the command's stderr.
func (env *cli) flags(name, usage string) *flag.FlagSet {
	fs := flag.NewFlagSet("agentid "+name, flag.ContinueOnError)
	fs.SetOutput(env.stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.stderr, "Usage: agentid %s\n\nFlags:\n", usage)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses flags anywhere among the arguments: "audit verify
// FILE --bundle B" reads like "audit verify --bundle B FILE". After "--"
// everything is an argument. fs.Args() then holds the arguments in order.
func parseFlags(fs *flag.FlagSet, args []string) error {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			pos = append(pos, rest...)
			break
		}
		pos, args = append(pos, rest[0]), rest[1:]
	}
	return fs.Parse(append([]string{"--"}, pos...))
}

// subcommands dispatches "agentid <group> <sub> ..." to one of subs.
func (env *cli) subcommands(group string, args []string, subs map[string]func(*cli, []string) error) error {
	names := make([]string, 0, len(subs))
	for n := range subs {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(args) == 0 {
		return fmt.Errorf("%w: agentid %s <%s>", errUsage, group, strings.Join(names, "|"))
	}
	run, ok := subs[args[0]]
	if !ok {
		return fmt.Errorf("%w: unknown subcommand %q, want one of %s", errUsage, args[0], strings.Join(names, ", "))
	}
	return run(env, args[1:])
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	*l = append(*l, v)
	return nil
}
