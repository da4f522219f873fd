// Command jamba runs, serves, inspects and trains Jamba hybrid Transformer–Mamba
// mixture-of-experts language models stored as Hugging Face checkpoints.
//
// Each subcommand lives in its own file and registers itself with register.
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

// command is one subcommand of jamba.
type command struct {
	name    string
	summary string // one line for the command list
	// run executes the command with the arguments that follow its name.
	// It writes results to stdout and progress to stderr.
	run func(args []string, stdout, stderr io.Writer) error
}

var commands = map[string]*command{}

// register adds a subcommand; called from init functions.
func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("jamba: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// errUsage marks an error caused by bad command-line use; main exits with status 2.
var errUsage = errors.New("usage error")

func usage(w io.Writer) {
	fmt.Fprintf(w, "jamba: run, serve, inspect and train Jamba hybrid Transformer-Mamba MoE models.\n\n")
	fmt.Fprintf(w, "Usage:\n  jamba <command> [flags] [args]\n\nCommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(w, "\nRun 'jamba <command> --help' for the flags of a command.\n")
}

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}

// runMain dispatches to a subcommand and returns the process exit status.
func runMain(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return 2
	}
	name := args[0]
	switch name {
	case "-h", "--help", "help":
		usage(stdout)
		return 0
	}
	c, ok := commands[name]
	if !ok {
		fmt.Fprintf(stderr, "jamba: unknown command %q\n\n", name)
		usage(stderr)
		return 2
	}
	err := c.run(args[1:], stdout, stderr)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 0
	case errors.Is(err, errUsage):
		fmt.Fprintf(stderr, "jamba %s: %v\n", name, err)
		return 2
	default:
		fmt.Fprintf(stderr, "jamba %s: %v\n", name, err)
		return 1
	}
}

// newFlagSet returns a flag set for a subcommand whose --help prints the
// summary, a usage line and the flags.
func newFlagSet(name, usageLine, help string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("jamba "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: jamba %s %s\n\n%s\n\nFlags:\n", name, usageLine, strings.TrimSpace(help))
		fs.PrintDefaults()
		if fs.Lookup("model") != nil && name != "loadtest" {
			fmt.Fprintf(fs.Output(), "\n%s\n", modelFlagNote)
		}
	}
	return fs
}

// parseFlags parses args, mapping parse failures to errUsage, and turns a
// Hugging Face name given to --model into the local path of its files.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	return resolveModelFlag(fs)
}

// stdin is where commands read interactive input; tests replace it.
var stdin io.Reader = os.Stdin
