package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"strings"

	"github.com/spf13/pflag"

	"github.com/hearth-llm/hearth/loader/synth"
	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/grammar"
	"github.com/hearth-llm/hearth/runtime/sample"
)

// samplerFlags registers Ollama's sampling options as flags, with Ollama's
// defaults except the repeat penalty, which is off (1.0) as in llama.cpp's
// CLI, so that --temperature 0 gives the model's plain greedy continuation.
func samplerFlags(fs *pflag.FlagSet) *sample.Options {
	o := sample.DefaultOptions()
	o.RepeatPenalty = 1
	fs.Float32Var(&o.Temperature, "temperature", o.Temperature, "sampling temperature; 0 is greedy")
	fs.IntVar(&o.TopK, "top-k", o.TopK, "keep the k most likely tokens (0: all)")
	fs.Float32Var(&o.TopP, "top-p", o.TopP, "keep the smallest set of tokens whose probability reaches p")
	fs.Float32Var(&o.MinP, "min-p", o.MinP, "drop tokens less likely than min-p times the most likely")
	fs.Float32Var(&o.TypicalP, "typical-p", o.TypicalP, "locally typical sampling (1: off)")
	fs.Float32Var(&o.RepeatPenalty, "repeat-penalty", o.RepeatPenalty, "penalty for repeated tokens (1: off)")
	fs.IntVar(&o.RepeatLastN, "repeat-last-n", o.RepeatLastN, "how many recent tokens the penalties look at")
	fs.Float32Var(&o.PresencePenalty, "presence-penalty", o.PresencePenalty, "subtracted once from tokens already seen")
	fs.Float32Var(&o.FrequencyPenalty, "frequency-penalty", o.FrequencyPenalty, "subtracted per occurrence of a seen token")
	fs.Int64Var(&o.Seed, "seed", o.Seed, "random seed (-1: random)")
	return &o
}

func runCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("run", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	n := fs.IntP("num-predict", "n", -1, "tokens to generate (-1: until end of text or a full context)")
	raw := fs.Bool("raw", false, "use the prompt as it is, without the model's chat template")
	system := fs.String("system", "", "system message (with a chat template)")
	numCtx := fs.Int("ctx", 0, "context size in tokens (0: the model's, at most 4096)")
	threads := fs.IntP("threads", "t", 0, "CPU threads (0: all)")
	device := fs.String("device", "auto", "where to run: auto (the GPU when one is usable), cpu or cuda")
	gpuLayers := gpuLayersFlag(fs)
	verbose := fs.BoolP("verbose", "v", false, "print timings to stderr")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the run to this file")
	shape := fs.String("shape", "", "run a synthetic model of this shape instead of MODEL (see hearth gen --list; random weights: for speed, not text), generated on first use")
	quantName := fs.String("quant", "q4_0", "file type of the --shape model")
	format := fs.String("format", "", `constrain the output: "json" (a JSON object), a JSON schema, or @FILE holding one`)
	so := samplerFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth run MODEL [PROMPT] [flags]\n       hearth run --shape NAME [--quant TYPE] [PROMPT] [flags]\n\nThe prompt is read from stdin when none is given.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	args = fs.Args()
	model := ""
	if *shape == "" {
		if len(args) < 1 {
			fs.Usage()
			return usageError{"missing MODEL"}
		}
		model, args = args[0], args[1:]
	}
	if err := so.Validate(); err != nil {
		return usageError{err.Error()}
	}
	dev, ngl, err := placement(*device, *gpuLayers)
	if err != nil {
		return err
	}
	g, err := parseFormat(*format)
	if err != nil {
		return err
	}
	if *shape != "" {
		sh, err := synth.LookupShape(*shape)
		if err != nil {
			return usageError{err.Error()}
		}
		if _, err := synth.LookupFileType(*quantName); err != nil {
			return usageError{err.Error()}
		}
		if model, err = generate(sh, strings.ToLower(*quantName), "", false, synth.Options{}, "auto", stderr); err != nil {
			return err
		}
	}
	prompt := strings.Join(args, " ")
	if len(args) == 0 {
		b, err := io.ReadAll(bufio.NewReader(os.Stdin))
		if err != nil {
			return err
		}
		prompt = strings.TrimRight(string(b), "\n")
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	m, err := engine.Load(model, engine.Options{Threads: *threads, Device: dev, GPULayers: ngl})
	if err != nil {
		return err
	}
	defer m.Close()
	var ids []int32
	if *raw || m.Template == nil {
		ids = m.Tok.Encode(prompt, true, false)
	} else if ids, err = m.ChatPrompt(*system, prompt); err != nil {
		return err
	}
	seq, err := m.NewSequence(*numCtx)
	if err != nil {
		return err
	}
	seq.Constrain(g)
	seq.RawBytes() // the exact bytes of the tokens, as llama.cpp writes them
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	w := bufio.NewWriter(stdout)
	st, err := seq.Generate(ctx, ids, *n, *so, func(text string) error {
		if _, err := w.WriteString(text); err != nil {
			return err
		}
		return w.Flush()
	})
	w.WriteString("\n")
	w.Flush()
	if *verbose {
		rate := func(n int, ns int64) float64 {
			if ns == 0 {
				return 0
			}
			return float64(n) / (float64(ns) / 1e9)
		}
		fmt.Fprintf(stderr, "prompt: %d tokens, %.1f tokens/s; generated: %d tokens, %.1f tokens/s; %s, threads %d; done: %s\n",
			st.PromptTokens, rate(st.PromptTokens, st.PromptNanos), st.Generated, rate(st.Generated, st.GenNanos), m.Backend(), m.Threads(), st.DoneReason)
	}
	return err
}

// parseFormat reads --format: "" (none), "json", a JSON schema, or @FILE.
func parseFormat(f string) (*grammar.Grammar, error) {
	switch {
	case f == "":
		return nil, nil
	case f == "json":
		return grammar.JSON(), nil
	case strings.HasPrefix(f, "@"):
		b, err := os.ReadFile(f[1:])
		if err != nil {
			return nil, fmt.Errorf("--format: %w", err)
		}
		f = string(b)
	}
	g, err := grammar.FromSchema([]byte(f))
	if err != nil {
		return nil, usageError{fmt.Sprintf("--format: %v", err)}
	}
	return g, nil
}

// startCPUProfile profiles the process into path until the returned
// function is called; an empty path profiles nothing.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}
