package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/loader/tokenizer"
)

func tokenizeCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("tokenize", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.BoolP("verbose", "v", false, "also print each token's id and piece, one per line")
	noSpecial := fs.Bool("no-special", false, "add no BOS/EOS (the convention of llama.cpp's tokenizer test vectors)")
	parseSpecial := fs.Bool("parse-special", false, "turn special-token text such as <|eot_id|> into those tokens")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth tokenize MODEL TEXT [flags]\n\nWorks on vocab-only GGUF files too.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() < 2 {
		fs.Usage()
		return usageError{"want MODEL and TEXT"}
	}
	f, err := gguf.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		return fmt.Errorf("%s: %w", fs.Arg(0), err)
	}
	ids := tok.Encode(strings.Join(fs.Args()[1:], " "), !*noSpecial, *parseSpecial)
	parts := make([]string, len(ids))
	for i, id := range ids {
		parts[i] = strconv.Itoa(int(id))
	}
	fmt.Fprintln(stdout, strings.Join(parts, " "))
	if *verbose {
		for _, id := range ids {
			fmt.Fprintf(stdout, "%6d %q\n", id, tok.Piece(id))
		}
	}
	return nil
}
