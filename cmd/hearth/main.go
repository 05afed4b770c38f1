// Command hearth loads GGUF models and runs them: `hearth run`, `hearth
// tokenize`, `hearth show`. Output that a user asked for goes to stdout;
// logs and diagnostics go to stderr.
package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strings"
)

type command struct {
	name, usage, summary string
	run                  func(args []string, stdout, stderr io.Writer) error
}

var commands = []command{
	{"run", "run MODEL [PROMPT]", "generate text from a prompt (stdin when none is given)", runCmd},
	{"tokenize", "tokenize MODEL TEXT", "print the token ids of TEXT", tokenizeCmd},
	{"show", "show MODEL", "print a model's architecture, size, types and tokenizer", showCmd},
	{"gen", "gen --shape S --quant Q", "write a random-weight model of a real model's shape", genCmd},
	{"bench", "bench -m MODEL | --shape S", "measure prompt and generation speed, as llama-bench does", benchCmd},
	{"serve", "serve [--host H] [--port P]", "serve the Ollama and OpenAI APIs (127.0.0.1:11434)", serveCmd},
	{"ls", "ls", "list the models of the models folder and Ollama's store", lsCmd},
	{"ps", "ps", "list the models a running server has loaded", psCmd},
	{"rm", "rm MODEL...", "remove models from the models folder", rmCmd},
	{"cp", "cp SOURCE DEST", "copy (or re-point) a model name in the models folder", cpCmd},
	{"pull", "pull NAME|URL", "download a model (Ollama registry name or GGUF URL)", pullCmd},
	{"eval", "eval perplexity|suite", "measure a model: perplexity, KL-divergence, task suites; gates for CI", evalCmd},
}

// usageError is a mistake in the command line: main prints usage with it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usage(w io.Writer) {
	fmt.Fprintln(w, "Usage: hearth COMMAND [flags] [args]\n\nCommands:")
	sort.Slice(commands, func(i, j int) bool { return commands[i].name < commands[j].name })
	for _, c := range commands {
		fmt.Fprintf(w, "  %-22s %s\n", c.usage, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'hearth COMMAND --help' for a command's flags.")
}

func main() {
	os.Exit(Main(os.Args[1:], os.Stdout, os.Stderr))
}

// Main runs the command line args and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	slog.SetDefault(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})))
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands {
		if c.name == args[0] {
			err := c.run(args[1:], stdout, stderr)
			if err == nil {
				return 0
			}
			if strings.Contains(err.Error(), "pflag: help requested") {
				return 0
			}
			fmt.Fprintf(stderr, "hearth %s: %v\n", c.name, err)
			if _, ok := err.(usageError); ok {
				return 2
			}
			return 1
		}
	}
	fmt.Fprintf(stderr, "hearth: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}
