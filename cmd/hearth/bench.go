package main

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"strings"

	"github.com/spf13/pflag"

	"github.com/hearth-llm/hearth/loader/synth"
	"github.com/hearth-llm/hearth/runtime/bench"
)

func benchCmd(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "serve" { // hearth bench serve: load a running server
		return benchServeCmd(args[1:], stdout, stderr)
	}
	fs := pflag.NewFlagSet("bench", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	models := fs.StringSliceP("model", "m", nil, "GGUF files to measure (a list or repeated)")
	shapes := fs.StringSlice("shape", nil, "synthetic model shapes to measure instead (see hearth gen --list); generated on demand into the cache")
	quants := fs.StringSlice("quant", []string{"q4_0"}, "file types of the --shape models: q4_0,q4_k_m,q8_0,…")
	prompt := fs.IntSliceP("n-prompt", "p", []int{512}, "prompt tokens of the pp tests (0: none)")
	gen := fs.IntSliceP("n-gen", "n", []int{128}, "generated tokens of the tg tests (0: none)")
	reps := fs.IntP("repetitions", "r", 5, "timed runs per test, after one warm-up")
	threads := fs.IntSliceP("threads", "t", []int{runtime.NumCPU()}, "thread counts")
	parallel := fs.IntSlice("parallel", nil, "also decode this many sequences together, one token each per forward pass (test \"tgN xP\")")
	batch := fs.IntP("batch-size", "b", 512, "most tokens per forward pass of the pp tests")
	format := fs.StringP("output", "o", "md", "output format: md, json, jsonl, csv")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the measurements (not the bandwidth test) to this file")
	bwMiB := fs.Int("bandwidth-mib", 1024, "MiB read to measure memory bandwidth for the roofline (0: skip)")
	seed := fs.Uint64("seed", 0, "seed of the random prompt and generated tokens")
	device := fs.String("device", "cpu", "where to run: cpu, cuda, or auto (the GPU when one is usable); --gpu-layers alone means auto")
	gpuLayers := gpuLayersFlag(fs)
	progress := progressFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth bench (-m FILE | --shape NAME [--quant LIST]) [flags]\n\n"+
			"Measures prompt processing (ppN) and generation (tgN) speed as llama-bench\n"+
			"does, the memory bandwidth of the machine, and tg as a fraction of its\n"+
			"roofline; --parallel P adds batched decode (tgN xP, aggregate t/s).\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q (models go after -m)", fs.Arg(0))}
	}
	if len(*models) == 0 && len(*shapes) == 0 {
		fs.Usage()
		return usageError{"want -m FILE or --shape NAME"}
	}
	if !slices.Contains(bench.Formats, *format) {
		return usageError{fmt.Sprintf("-o %q: want one of %s", *format, strings.Join(bench.Formats, ", "))}
	}
	if err := checkProgress(*progress); err != nil {
		return err
	}
	for _, v := range [][]int{*prompt, *gen, *threads, *parallel} {
		for _, n := range v {
			if n < 0 {
				return usageError{fmt.Sprintf("negative count %d", n)}
			}
		}
	}
	if *reps < 1 || *batch < 1 {
		return usageError{"-r and -b must be at least 1"}
	}
	if fs.Changed("gpu-layers") && !fs.Changed("device") {
		*device = "auto"
	}
	dev, ngl, err := placement(*device, *gpuLayers)
	if err != nil {
		return err
	}
	if dev == "" {
		dev = "auto" // bench.Options.Device "" is the CPU
	}
	// Resolve the synthetic models first, so a bad name fails before any
	// measurement.
	type synthModel struct {
		s synth.Shape
		q string
	}
	var todo []synthModel
	for _, name := range *shapes {
		s, err := synth.LookupShape(name)
		if err != nil {
			return err
		}
		for _, q := range *quants {
			if _, err := synth.LookupFileType(q); err != nil {
				return err
			}
			todo = append(todo, synthModel{s, strings.ToLower(q)})
		}
	}
	paths := append([]string(nil), *models...)
	for _, m := range todo {
		path, err := generate(m.s, m.q, "", false, synth.Options{}, *progress, stderr)
		if err != nil {
			return err
		}
		paths = append(paths, path)
	}

	sys := bench.Describe()
	if *bwMiB > 0 {
		sys.MeasureBandwidth(int64(*bwMiB)<<20, 0)
	}
	stopProfile, err := startCPUProfile(*cpuProfile)
	if err != nil {
		return err
	}
	defer stopProfile()
	o := bench.Options{Prompt: *prompt, Gen: *gen, Parallel: *parallel, Threads: *threads, Reps: *reps,
		Batch: *batch, Seed: *seed, ReadGBs: sys.ReadGBs, Device: dev, GPULayers: ngl}
	var results []bench.Result
	for _, path := range paths {
		bar := newBar(stderr, *progress, -1, "bench "+bench.ModelName(path), false)
		o.Progress = func(done, total int64) {
			if bar != nil {
				if bar.GetMax64() != total {
					bar.ChangeMax64(total)
				}
				bar.Set64(done)
			}
		}
		rs, err := bench.Run(path, o)
		if bar != nil {
			bar.Finish()
			bar.Exit()
		}
		if err != nil {
			return err
		}
		results = append(results, rs...)
	}
	return bench.WriteReport(stdout, *format, sys, results)
}
