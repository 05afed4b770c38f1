package main

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/spf13/pflag"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	archpkg "github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/cuda"
)

func showCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("show", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	verbose := fs.BoolP("verbose", "v", false, "also print the metadata and the tensor table")
	gpu := fs.Bool("gpu", false, "show the NVIDIA GPUs (NVML: name, compute capability, memory, power, utilisation), with or without a MODEL")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth show MODEL [flags]\n       hearth show --gpu [MODEL]\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *gpu {
		showGPUs(stdout)
		if fs.NArg() == 0 {
			return nil
		}
		fmt.Fprintln(stdout)
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError{"want one MODEL"}
	}
	f, err := gguf.Open(fs.Arg(0))
	if err != nil {
		return err
	}
	defer f.Close()

	arch, _ := f.String("general.architecture")
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	row := func(k string, v any) { fmt.Fprintf(w, "  %s\t%v\n", k, v) }
	fmt.Fprintln(w, "Model")
	if name, ok := f.String("general.name"); ok {
		row("name", name)
	}
	row("architecture", arch)
	var params, bytes uint64
	types := map[quant.Type]int{}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		params += t.Elements()
		bytes += t.Size
		types[t.Type]++
	}
	row("parameters", humanCount(params))
	row("size", fmt.Sprintf("%.2f MiB", float64(bytes)/(1<<20)))
	if ft, ok := f.FileType(); ok {
		row("file type", ft)
	}
	var tl []string
	for t, n := range types {
		tl = append(tl, fmt.Sprintf("%v×%d", t, n))
	}
	sort.Strings(tl)
	if len(tl) > 0 {
		row("tensor types", strings.Join(tl, " "))
	}
	for _, h := range archpkg.Hyperparameters(f) {
		row(h.Key, h.Value)
	}
	fmt.Fprintln(w, "Tokenizer")
	model, _ := f.String("tokenizer.ggml.model")
	pre, _ := f.String("tokenizer.ggml.pre")
	row("model", model)
	if pre != "" {
		row("pre-tokenizer", pre)
	}
	if toks, ok := f.Strings("tokenizer.ggml.tokens"); ok {
		row("vocabulary", len(toks))
	}
	for _, k := range []string{"bos_token_id", "eos_token_id", "add_bos_token", "add_eos_token"} {
		if v, ok := f.Get("tokenizer.ggml." + k); ok {
			row(k, v)
		}
	}
	w.Flush()
	if tmpl, ok := f.String("tokenizer.chat_template"); ok {
		fmt.Fprintf(stdout, "Chat template\n%s\n", indent(tmpl))
	} else {
		fmt.Fprintln(stdout, "Chat template\n  (none)")
	}
	if !*verbose {
		return nil
	}
	fmt.Fprintln(stdout, "Metadata")
	w = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	for _, kv := range f.KV {
		v := kv.Value.String()
		if len(v) > 80 {
			v = v[:77] + "..."
		}
		fmt.Fprintf(w, "  %s\t%s\t%s\n", kv.Key, kv.Value.Type, strings.ReplaceAll(v, "\n", `\n`))
	}
	w.Flush()
	fmt.Fprintln(stdout, "Tensors")
	w = tabwriter.NewWriter(stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "  name\ttype\tshape\tbytes\toffset\t")
	for i := range f.Tensors {
		t := &f.Tensors[i]
		fmt.Fprintf(w, "  %s\t%v\t%v\t%d\t%d\t\n", t.Name, t.Type, t.Dims, t.Size, f.DataOffset+t.Offset)
	}
	return w.Flush()
}

func indent(s string) string {
	return "  " + strings.ReplaceAll(s, "\n", "\n  ")
}

func humanCount(n uint64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2fB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2fM", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.1fK", float64(n)/1e3)
	}
	return fmt.Sprint(n)
}

// showGPUs prints what NVML reports of each GPU, or why there is none.
func showGPUs(stdout io.Writer) {
	w := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	defer w.Flush()
	fmt.Fprintln(w, "GPU")
	for i := 0; ; i++ {
		t, err := cuda.ReadTelemetry(i)
		if err != nil {
			if i == 0 {
				fmt.Fprintf(w, "  none\t%v\n", err)
			}
			return
		}
		fmt.Fprintf(w, "  %d\t%s\tcompute %d.%d\t%.1f of %.1f GiB free\t%.0f W\t%d%% busy (memory %d%%)\t%d °C\n",
			t.Index, t.Name, t.CC[0], t.CC[1], float64(t.MemFree)/(1<<30), float64(t.MemTotal)/(1<<30), t.PowerW, t.UtilGPU, t.UtilMemory, t.TempC)
	}
}
