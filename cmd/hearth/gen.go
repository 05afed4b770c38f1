package main

import (
	"fmt"
	"io"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/hearth-llm/hearth/loader/synth"
)

func genCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("gen", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	shape := fs.String("shape", "", "model shape (see --list)")
	quants := fs.StringSlice("quant", nil, "file types, as llama-quantize names them: q4_0, q4_k_m, q8_0, … (a list writes one file each)")
	out := fs.StringP("output", "o", "", "file to write (default: the cache, "+cacheHint()+")")
	threads := fs.IntP("threads", "t", 0, "threads that generate and quantize (0: all)")
	seed := fs.Uint64("seed", 0, "random seed of the weights")
	force := fs.Bool("force", false, "rewrite a cached file even when it is complete")
	list := fs.Bool("list", false, "list the shapes and file types")
	progress := progressFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth gen --shape NAME --quant TYPE [-o FILE] [flags]\n\n"+
			"Writes a GGUF file of a real model's shape with random weights, quantized as\n"+
			"llama-quantize would, and prints its path. Without -o the file goes to the\n"+
			"cache and is reused when already there.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *list {
		printShapes(stdout)
		return nil
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if *shape == "" || len(*quants) == 0 {
		fs.Usage()
		return usageError{"want --shape and --quant (see --list)"}
	}
	if *out != "" && len(*quants) > 1 {
		return usageError{"-o writes one file: give one --quant"}
	}
	if err := checkProgress(*progress); err != nil {
		return err
	}
	s, err := synth.LookupShape(*shape)
	if err != nil {
		return err
	}
	for _, q := range *quants {
		if _, err := synth.LookupFileType(q); err != nil {
			return err
		}
	}
	for _, q := range *quants {
		path, err := generate(s, q, *out, *force, synth.Options{Threads: *threads, Seed: *seed}, *progress, stderr)
		if err != nil {
			return err
		}
		fmt.Fprintln(stdout, path)
	}
	return nil
}

// generate writes the model of shape s and file type q to out, or to the
// cache when out is empty (reusing a complete cached file unless force),
// with a progress bar on stderr, and returns its path.
func generate(s synth.Shape, q, out string, force bool, o synth.Options, progress string, stderr io.Writer) (string, error) {
	path := out
	if path == "" {
		var err error
		if path, err = synth.CachePath(s.Name, q); err != nil {
			return "", err
		}
		if !force && synth.Check(path, s, q, o.Seed) == nil {
			return path, nil
		}
		if err := os.MkdirAll(dirOf(path), 0o755); err != nil {
			return "", err
		}
	}
	ft, err := synth.LookupFileType(q)
	if err != nil {
		return "", err
	}
	var total int64
	for _, t := range synth.Plan(s, ft) {
		total += t.Bytes()
	}
	bar := newBar(stderr, progress, total, "gen "+s.Name+" "+q, true)
	if bar != nil {
		o.Progress = func(done, _ int64) { bar.Set64(done) }
	}
	start := time.Now()
	err = synth.WriteWith(path, s, q, o)
	if bar != nil {
		bar.Finish()
		bar.Exit()
	}
	if err != nil {
		return "", err
	}
	if st, err := os.Stat(path); err == nil {
		fmt.Fprintf(stderr, "wrote %s (%.2f GiB in %.1fs)\n", path, float64(st.Size())/(1<<30), time.Since(start).Seconds())
	}
	return path, nil
}

func dirOf(path string) string {
	if i := strings.LastIndexByte(path, os.PathSeparator); i >= 0 {
		return path[:i]
	}
	return "."
}

func cacheHint() string {
	if dir, err := synth.CacheDir(); err == nil {
		return dir
	}
	return "the user cache folder"
}

func printShapes(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "shape\tarch\tn_embd\tlayers\theads\tkv heads\thead\tn_ff\texperts\tvocab\toutput\tparams\tactive\tabout")
	for _, s := range synth.Shapes() {
		out := "tied"
		if !s.Tied {
			out = "separate"
		}
		ff, experts, active := "-", "-", "-"
		if s.FF > 0 {
			ff = fmt.Sprint(s.FF)
		}
		if s.Experts > 0 {
			experts = fmt.Sprintf("%d of %d × %d", s.ExpertsUsed, s.Experts, s.ExpertFF)
			active = humanCount(s.ActiveParams())
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t%d\t%s\t%s\t%s\t%s\n", s.Name, s.Architecture(), s.Embd, s.Layers,
			s.Heads, s.KVHeads, s.HeadDim(), ff, experts, s.Vocab, out, humanCount(s.Params()), active, s.About)
	}
	tw.Flush()
	var names []string
	for _, ft := range synth.FileTypes() {
		names = append(names, ft.Name)
	}
	fmt.Fprintf(w, "\nfile types: %s\n", strings.Join(names, ", "))
}

// progressFlag registers --progress: auto (a bar when stderr is a
// terminal), always or never.
func progressFlag(fs *pflag.FlagSet) *string {
	return fs.String("progress", "auto", "progress bar on stderr: auto (when a terminal), always, never")
}

func checkProgress(p string) error {
	switch p {
	case "auto", "always", "never":
		return nil
	}
	return usageError{fmt.Sprintf("--progress %q: want auto, always or never", p)}
}

// newBar returns a progress bar on stderr, or nil when none is wanted.
func newBar(stderr io.Writer, mode string, max int64, desc string, bytes bool) *progressbar.ProgressBar {
	switch mode {
	case "never":
		return nil
	case "auto":
		f, ok := stderr.(*os.File)
		if !ok || !term.IsTerminal(int(f.Fd())) {
			return nil
		}
	}
	return progressbar.NewOptions64(max,
		progressbar.OptionSetWriter(stderr),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowBytes(bytes),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(30),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionClearOnFinish(),
		progressbar.OptionSetRenderBlankState(true),
	)
}
