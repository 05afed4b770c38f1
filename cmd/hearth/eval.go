package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/spf13/pflag"

	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/eval"
	"github.com/hearth-llm/hearth/runtime/models"
	"github.com/hearth-llm/hearth/runtime/server"
)

// evalCmd is `hearth eval perplexity|suite`. Exit codes, for CI: 0 every
// gate passed, 1 a gate failed (one line naming it, the figure and the
// limit), 2 a usage or input error, or a run that could not finish.
func evalCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" {
		fmt.Fprint(stderr, `Usage: hearth eval perplexity MODEL -f TEXT [flags]
       hearth eval perplexity MODEL --kl-divergence BASE [flags]
       hearth eval suite MODEL CASES.jsonl [flags]
       hearth eval suite --url URL --model NAME CASES.jsonl [flags]

Exit status: 0 pass, 1 a gate failed, 2 usage or input error.
Run 'hearth eval perplexity --help' or 'hearth eval suite --help' for the flags.
`)
		if len(args) == 0 {
			return usageError{"missing perplexity or suite"}
		}
		return nil
	}
	var err error
	switch args[0] {
	case "perplexity", "ppl":
		err = evalPerplexity(args[1:], stdout, stderr)
	case "suite":
		err = evalSuite(args[1:], stdout, stderr)
	default:
		return usageError{fmt.Sprintf("unknown eval command %q: want perplexity or suite", args[0])}
	}
	var ge gateErrors
	var ue usageError
	switch {
	case err == nil, errors.As(err, &ge), errors.As(err, &ue), strings.Contains(err.Error(), "pflag: help requested"):
		return err
	}
	return usageError{err.Error()} // an input error or a run that could not finish: exit 2
}

// gateErrors are the gates that failed: exit 1, one line each.
type gateErrors []error

func (g gateErrors) Error() string { return errors.Join(g...).Error() }

func checkGates(gates []eval.Gate, figures []float64, stderr io.Writer) error {
	errs := eval.CheckAll(gates, figures)
	if len(errs) == 0 {
		return nil
	}
	for _, e := range errs[:len(errs)-1] { // Main prints the last
		fmt.Fprintf(stderr, "hearth eval: %v\n", e)
	}
	return gateErrors(errs[len(errs)-1:])
}

func checkOutput(o string) error {
	if o != "text" && o != "json" {
		return usageError{fmt.Sprintf("--output %q: want text or json", o)}
	}
	return nil
}

func loadEvalModel(path string, threads int, device string, gpuLayers int) (*engine.Model, error) {
	if _, err := os.Stat(path); err != nil {
		return nil, usageError{fmt.Sprintf("model: %v", err)}
	}
	dev, ngl, err := placement(device, gpuLayers)
	if err != nil {
		return nil, err
	}
	m, err := engine.Load(path, engine.Options{Threads: threads, Device: dev, GPULayers: ngl})
	if err != nil {
		return nil, usageError{err.Error()}
	}
	return m, nil
}

func evalPerplexity(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("eval perplexity", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	file := fs.StringP("file", "f", "", "text file to score")
	nCtx := fs.IntP("ctx-size", "c", 512, "tokens per chunk (llama-perplexity's -c)")
	batch := fs.IntP("batch-size", "b", 0, "tokens per forward pass (0: the engine's, 512)")
	chunks := fs.Int("chunks", 0, "score at most this many chunks (0: all)")
	threads := fs.IntP("threads", "t", 0, "CPU threads (0: all)")
	device := fs.String("device", "auto", "where to run: auto, cpu or cuda")
	gpuLayers := gpuLayersFlag(fs)
	output := fs.String("output", "text", "text (llama-perplexity's lines) or json")
	save := fs.String("save-logits", "", "also write the log-probabilities to this file, in llama-perplexity's --kl-divergence-base format")
	kld := fs.String("kl-divergence", "", "compare with a base log-probabilities file (Hearth's --save-logits or llama-perplexity's --kl-divergence-base); the text and -c come from it")
	maxKLD := fs.Float64("max-kld", -1, "gate: fail when the mean KL-divergence is above this (with --kl-divergence)")
	minTop := fs.Float64("min-same-top", -1, "gate: fail when the same-top-token rate, in percent, is below this (with --kl-divergence)")
	maxRatio := fs.Float64("max-ppl-ratio", -1, "gate: fail when PPL(model)/PPL(base) is above this (with --kl-divergence)")
	progress := progressFlag(fs)
	lora := loraFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth eval perplexity MODEL -f TEXT [-c 512] [--save-logits FILE] [flags]\n       hearth eval perplexity MODEL --kl-divergence BASE [--max-kld X] [--min-same-top P] [--max-ppl-ratio R] [flags]\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError{"want one MODEL"}
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	if err := checkProgress(*progress); err != nil {
		return err
	}
	var gates []eval.Gate
	if *maxKLD >= 0 {
		gates = append(gates, eval.Gate{Flag: "--max-kld", Name: "mean KLD", Limit: *maxKLD, Max: true})
	}
	if *minTop >= 0 {
		if *minTop > 100 {
			return usageError{"--min-same-top is a percentage, 0 to 100"}
		}
		gates = append(gates, eval.Gate{Flag: "--min-same-top", Name: "same top %", Limit: *minTop})
	}
	if *maxRatio >= 0 {
		gates = append(gates, eval.Gate{Flag: "--max-ppl-ratio", Name: "PPL ratio", Limit: *maxRatio, Max: true})
	}
	switch {
	case *kld == "" && *file == "":
		return usageError{"want -f TEXT or --kl-divergence BASE"}
	case *kld != "" && (*file != "" || *save != ""):
		return usageError{"--kl-divergence takes the text from the base file: no -f or --save-logits with it"}
	case *kld == "" && len(gates) > 0:
		return usageError{"--max-kld, --min-same-top and --max-ppl-ratio need --kl-divergence"}
	case *nCtx < 4 || *batch < 0 || *chunks < 0:
		return usageError{"-c must be at least 4, -b and --chunks not negative"}
	}
	loraPath, loraScale, err := parseLoraArg(*lora)
	if err != nil {
		return err
	}
	var text []byte
	var base *eval.LogitsReader
	if *kld != "" {
		f, err := os.Open(*kld)
		if err != nil {
			return usageError{err.Error()}
		}
		defer f.Close()
		if base, err = eval.NewLogitsReader(bufio.NewReaderSize(f, 1<<20)); err != nil {
			return usageError{fmt.Sprintf("%s: %v", *kld, err)}
		}
	} else {
		if text, err = os.ReadFile(*file); err != nil {
			return usageError{err.Error()}
		}
	}
	model := fs.Arg(0)
	m, err := loadEvalModel(model, *threads, *device, *gpuLayers)
	if err != nil {
		return err
	}
	defer m.Close()
	lm := eval.Engine(m)
	if loraPath != "" {
		if err := m.LoadAdapter("lora", loraPath, loraScale); err != nil {
			return usageError{fmt.Sprintf("--lora: %v", err)}
		}
		lm = eval.EngineAdapter(m, "lora")
	}

	o := eval.Options{Ctx: *nCtx, Batch: *batch, Chunks: *chunks}
	if *output == "text" {
		o.Out = stdout
	}
	bar := newBar(stderr, *progress, -1, "eval "+filepath.Base(model), false)
	o.Progress = func(done, total int) {
		if bar != nil {
			bar.ChangeMax(total)
			bar.Set(done)
		}
	}
	defer func() {
		if bar != nil {
			bar.Finish()
		}
	}()
	if base != nil {
		s, err := eval.KLDivergence(lm, base, o)
		if err != nil {
			return err
		}
		if *output == "json" {
			if err := writeJSON(stdout, struct {
				Model string `json:"model"`
				LoRA  string `json:"lora,omitempty"`
				Base  string `json:"base"`
				Ctx   int    `json:"ctx"`
				*eval.KLDSummary
			}{model, *lora, *kld, base.Ctx, s}); err != nil {
				return err
			}
		} else {
			fmt.Fprintln(stdout)
			s.Print(stdout)
		}
		figure := map[string]float64{"--max-kld": s.KLD.Value, "--min-same-top": 100 * s.SameTop.Value, "--max-ppl-ratio": s.PPLRatio.Value}
		figures := make([]float64, len(gates))
		for i, g := range gates {
			figures[i] = figure[g.Flag]
		}
		return checkGates(gates, figures, stderr)
	}
	var sf *os.File
	var sw *bufio.Writer
	if *save != "" {
		if sf, err = os.Create(*save); err != nil {
			return usageError{err.Error()}
		}
		defer sf.Close()
		sw = bufio.NewWriterSize(sf, 1<<20)
		o.SaveLogits = sw
	}
	r, err := eval.Perplexity(lm, string(text), o)
	if err != nil {
		return err
	}
	if sw != nil {
		if err := sw.Flush(); err != nil {
			return err
		}
		if err := sf.Close(); err != nil {
			return err
		}
	}
	if *output == "json" {
		return writeJSON(stdout, struct {
			Model string `json:"model"`
			LoRA  string `json:"lora,omitempty"`
			File  string `json:"file"`
			*eval.PPLResult
		}{model, *lora, *file, r})
	}
	fmt.Fprintf(stdout, "Final estimate: PPL = %.4f +/- %.5f\n", r.PPL, r.Uncertainty)
	return nil
}

func writeJSON(w io.Writer, v any) error {
	e := json.NewEncoder(w)
	e.SetIndent("", "  ")
	return e.Encode(v)
}

func evalSuite(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("eval suite", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "", "an OpenAI-compatible server to ask (its base URL) instead of loading MODEL here")
	name := fs.String("model", "", "the model's name at --url")
	apiKey := fs.String("api-key", os.Getenv("OPENAI_API_KEY"), "bearer token for --url (default $OPENAI_API_KEY)")
	threads := fs.IntP("threads", "t", 0, "CPU threads (0: all)")
	device := fs.String("device", "auto", "where to run: auto, cpu or cuda")
	gpuLayers := gpuLayersFlag(fs)
	output := fs.String("output", "text", "text or json")
	minPass := fs.Float64("min-pass", -1, "gate: fail when the pass rate, in percent, is below this")
	progress := progressFlag(fs)
	lora := loraFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, `Usage: hearth eval suite MODEL CASES.jsonl [--min-pass P] [flags]
       hearth eval suite --url URL --model NAME CASES.jsonl [flags]

Each line of CASES.jsonl is a case: {"id", "prompt" (to /v1/completions) or
"messages" (to /v1/chat/completions, with "tools" and "tool_choice"),
"max_tokens", "check": {"type": "exact"|"contains"|"regex"|"json_schema"|"tool_call",
"value", "schema", "name"}}. Answers are greedy. MODEL is served in this
process on a loopback port for the run.

Flags:`)
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := checkOutput(*output); err != nil {
		return err
	}
	if err := checkProgress(*progress); err != nil {
		return err
	}
	want := 2
	if *url != "" {
		want = 1
	}
	if fs.NArg() != want {
		fs.Usage()
		return usageError{"want MODEL CASES.jsonl, or --url URL --model NAME CASES.jsonl"}
	}
	if *url != "" && *name == "" {
		return usageError{"--url needs --model NAME"}
	}
	if *url != "" && *lora != "" {
		return usageError{"--lora applies to a MODEL run here; with --url, name the server's adapter model in --model"}
	}
	loraPath, loraScale, err := parseLoraArg(*lora)
	if err != nil {
		return err
	}
	if *minPass > 100 {
		return usageError{"--min-pass is a percentage, 0 to 100"}
	}
	f, err := os.Open(fs.Arg(want - 1))
	if err != nil {
		return usageError{err.Error()}
	}
	cases, err := eval.ReadCases(f)
	f.Close()
	if err != nil {
		return usageError{err.Error()}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	cl := &eval.Client{URL: *url, Model: *name, APIKey: *apiKey}
	if *url == "" {
		model := fs.Arg(0)
		if _, err := os.Stat(model); err != nil {
			return usageError{fmt.Sprintf("model: %v", err)}
		}
		var ad *server.AdapterSpec
		if loraPath != "" {
			ad = &server.AdapterSpec{Name: localName(model) + "-lora", Base: localName(model), Path: loraPath, Scale: loraScale}
		}
		addr, done, err := serveLocal(ctx, model, ad, *threads, *device, *gpuLayers, stderr)
		if err != nil {
			return err
		}
		defer done()
		cl.URL, cl.Model, cl.APIKey = "http://"+addr, localName(model), ""
		if ad != nil {
			cl.Model = ad.Name
		}
	}
	bar := newBar(stderr, *progress, int64(len(cases)), "eval suite", false)
	r, err := eval.RunSuite(ctx, cl, cases, func(c eval.CaseResult) {
		if bar != nil {
			bar.Add(1)
		}
	})
	if bar != nil {
		bar.Finish()
	}
	if err != nil {
		return err
	}
	if *output == "json" {
		if err := writeJSON(stdout, r); err != nil {
			return err
		}
	} else {
		for _, c := range r.Cases {
			if c.Pass {
				fmt.Fprintf(stdout, "PASS  %s\n", c.ID)
			} else {
				fmt.Fprintf(stdout, "FAIL  %s: %s\n", c.ID, c.Why)
			}
		}
		fmt.Fprintf(stdout, "passed %d/%d (%.1f%%)\n", r.Passed, r.Total, r.PassRate)
	}
	failed := 0
	for _, c := range r.Cases {
		if c.Error != "" {
			failed++
		}
	}
	if failed == r.Total {
		return fmt.Errorf("every request failed (%s): nothing was measured", r.Cases[0].Error)
	}
	if *minPass >= 0 {
		return checkGates([]eval.Gate{{Flag: "--min-pass", Name: "pass rate %", Limit: *minPass}}, []float64{r.PassRate}, stderr)
	}
	return nil
}

// localName is the name a model file is served under by serveLocal.
func localName(path string) string {
	return strings.ToLower(strings.TrimSuffix(filepath.Base(path), ".gguf"))
}

// serveLocal serves the model file in this process on a loopback port
// (the serial runner: one request at a time, as a suite asks them) and
// returns its address and the function that stops it.
func serveLocal(ctx context.Context, model string, adapter *server.AdapterSpec, threads int, device string, gpuLayers int, stderr io.Writer) (string, func(), error) {
	dev, ngl, err := placement(device, gpuLayers)
	if err != nil {
		return "", nil, err
	}
	abs, err := filepath.Abs(model)
	if err != nil {
		return "", nil, err
	}
	dir, err := os.MkdirTemp("", "hearth-eval-")
	if err != nil {
		return "", nil, err
	}
	if err := os.Symlink(abs, filepath.Join(dir, localName(model)+".gguf")); err != nil {
		os.RemoveAll(dir)
		return "", nil, err
	}
	o := &serveOptions{
		addr: "127.0.0.1:0", threads: threads, device: dev, gpuLayers: ngl, serial: true, logLevel: slog.LevelWarn,
		cfg: server.Config{Store: models.New(models.Options{Dir: dir}), MemoryBudget: -1},
	}
	if adapter != nil {
		o.cfg.Adapters = []server.AdapterSpec{*adapter}
	}
	sctx, cancel := context.WithCancel(ctx)
	ready := make(chan string, 1)
	errc := make(chan error, 1)
	go func() { errc <- runServer(sctx, o, stderr, ready) }()
	done := func() {
		cancel()
		<-errc
		os.RemoveAll(dir)
	}
	select {
	case addr := <-ready:
		return addr, done, nil
	case err := <-errc:
		cancel()
		os.RemoveAll(dir)
		return "", nil, err
	}
}

// loraFlag is eval's --lora FILE[:SCALE].
func loraFlag(fs *pflag.FlagSet) *string {
	return fs.String("lora", "", "apply a LoRA adapter (a llama.cpp GGUF LoRA made for MODEL) to every position: FILE or FILE:SCALE (default scale 1)")
}

// parseLoraArg reads --lora FILE[:SCALE]: a final ":NUMBER" is the scale;
// "" is no adapter.
func parseLoraArg(v string) (path string, scale float32, err error) {
	if v == "" {
		return "", 0, nil
	}
	path, scale = v, 1
	if i := strings.LastIndexByte(v, ':'); i > 0 {
		if f, perr := strconv.ParseFloat(v[i+1:], 32); perr == nil {
			if math.IsNaN(f) || math.IsInf(f, 0) || f == 0 {
				return "", 0, usageError{fmt.Sprintf("--lora %s: scale %s: want a finite number other than 0", v, v[i+1:])}
			}
			path, scale = v[:i], float32(f)
		}
	}
	if _, err := os.Stat(path); err != nil {
		return "", 0, usageError{fmt.Sprintf("--lora: %v", err)}
	}
	if path, err = filepath.Abs(path); err != nil {
		return "", 0, usageError{fmt.Sprintf("--lora: %v", err)}
	}
	return path, scale, nil
}
