package bench

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// Formats WriteReport knows.
var Formats = []string{"md", "json", "jsonl", "csv"}

// WriteReport writes results in format: "md" (llama-bench's markdown
// table after a header naming the machine), "json" (an array of objects
// with llama-bench's field names), "jsonl" (one object per line) or "csv".
func WriteReport(w io.Writer, format string, sys System, results []Result) error {
	switch format {
	case "md":
		return writeMarkdown(w, sys, results)
	case "json":
		if results == nil {
			results = []Result{}
		}
		b, err := json.MarshalIndent(results, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	case "jsonl":
		enc := json.NewEncoder(w)
		for _, r := range results {
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
		return nil
	case "csv":
		return writeCSV(w, results)
	}
	return fmt.Errorf("bench: unknown output format %q (want %s)", format, strings.Join(Formats, ", "))
}

// Header is the description of the machine printed above the table.
func Header(sys System) string {
	var b strings.Builder
	fmt.Fprintf(&b, "CPU: %s, %d cores, SIMD %s, kernels %s (%s, %s)\n", sys.CPU, sys.Cores, sys.SIMD, sys.Kernels, sys.OS, sys.Go)
	if sys.ReadGBs > 0 {
		fmt.Fprintf(&b, "memory bandwidth: read %.1f GB/s, copy %.1f GB/s (read + written; %.2f GiB, %d threads, best of 3)\n",
			sys.ReadGBs, sys.CopyGBs, float64(sys.BandwidthBytes)/(1<<30), sys.BandwidthThreads)
	}
	return b.String()
}

// column is one column of the markdown table.
type column struct {
	name  string
	right bool
	get   func(r Result) string
}

func writeMarkdown(w io.Writer, sys System, results []Result) error {
	var b strings.Builder
	b.WriteString(Header(sys))
	b.WriteString("\n")
	cols := []column{
		{"model", false, func(r Result) string { return r.ModelType }},
		{"size", true, func(r Result) string { return sizeString(r.ModelSize) }},
		{"params", true, func(r Result) string { return paramString(r.ModelParams) }},
		{"active", true, func(r Result) string {
			if r.ActiveParams == 0 {
				return ""
			}
			return paramString(r.ActiveParams)
		}},
		{"backend", false, func(r Result) string { return r.Backends }},
		{"threads", true, func(r Result) string { return strconv.Itoa(r.Threads) }},
		{"test", true, func(r Result) string { return r.Test }},
		{"t/s", true, func(r Result) string { return fmt.Sprintf("%.2f ± %.2f", r.AvgTs, r.StddevTs) }},
		{"roofline", true, func(r Result) string {
			if r.RooflineTs == 0 {
				return ""
			}
			return fmt.Sprintf("%.1f%% of %.1f", r.RooflinePct, r.RooflineTs)
		}},
	}
	// The active parameters only where a mixture of experts ran.
	moe := false
	for _, r := range results {
		moe = moe || r.ActiveParams > 0
	}
	if !moe {
		cols = slices.DeleteFunc(cols, func(c column) bool { return c.name == "active" })
	}
	width := make([]int, len(cols))
	cells := make([][]string, len(results))
	for i, c := range cols {
		width[i] = len([]rune(c.name))
		for j, r := range results {
			if i == 0 {
				cells[j] = make([]string, len(cols))
			}
			cells[j][i] = c.get(r)
			width[i] = max(width[i], len([]rune(cells[j][i])))
		}
	}
	pad := func(s string, n int, right bool) string {
		fill := strings.Repeat(" ", n-len([]rune(s)))
		if right {
			return fill + s
		}
		return s + fill
	}
	b.WriteString("|")
	for i, c := range cols {
		b.WriteString(" " + pad(c.name, width[i], c.right) + " |")
	}
	b.WriteString("\n|")
	for i, c := range cols {
		if c.right {
			b.WriteString(" " + strings.Repeat("-", width[i]-1) + ": |")
		} else {
			b.WriteString(" " + strings.Repeat("-", width[i]) + " |")
		}
	}
	b.WriteString("\n")
	for _, row := range cells {
		b.WriteString("|")
		for i, c := range cols {
			b.WriteString(" " + pad(row[i], width[i], c.right) + " |")
		}
		b.WriteString("\n")
	}
	b.WriteString("\n")
	// Batched decode against one sequence, where both ran.
	for _, r := range results {
		if r.NParallel <= 1 {
			continue
		}
		for _, s := range results {
			if s.NParallel == 1 && s.NPrompt == 0 && s.NGen == r.NGen && s.Threads == r.Threads && s.ModelFile == r.ModelFile && s.AvgTs > 0 {
				fmt.Fprintf(&b, "%s, %d threads: %s aggregate %.2f t/s = %.2f× tg%d\n", r.ModelType, r.Threads, r.Test, r.AvgTs, r.AvgTs/s.AvgTs, r.NGen)
			}
		}
	}
	if len(results) > 0 {
		fmt.Fprintf(&b, "build: %s\n", results[0].BuildCommit)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func sizeString(n uint64) string {
	if n >= 1<<30 {
		return fmt.Sprintf("%.2f GiB", float64(n)/(1<<30))
	}
	return fmt.Sprintf("%.2f MiB", float64(n)/(1<<20))
}

func paramString(n uint64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.2f B", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.2f M", float64(n)/1e6)
	}
	return fmt.Sprintf("%.2f K", float64(n)/1e3)
}

func writeCSV(w io.Writer, results []Result) error {
	cw := csv.NewWriter(w)
	header := []string{"build_commit", "cpu_info", "backends", "model_filename", "model_type", "model_size",
		"model_n_params", "n_batch", "n_ubatch", "n_threads", "type_k", "type_v", "n_prompt", "n_gen", "n_depth",
		"test_time", "avg_ns", "stddev_ns", "avg_ts", "stddev_ts", "samples_ns", "samples_ts",
		"cores", "simd", "kernels", "n_parallel", "test", "active_params", "bytes_per_token", "read_gbs", "roofline_ts", "roofline_pct"}
	cw.Write(header)
	u := func(v uint64) string { return strconv.FormatUint(v, 10) }
	f := func(v float64) string { return strconv.FormatFloat(v, 'f', 6, 64) }
	for _, r := range results {
		ns := make([]string, len(r.SamplesNs))
		ts := make([]string, len(r.SamplesTs))
		for i := range ns {
			ns[i], ts[i] = u(r.SamplesNs[i]), f(r.SamplesTs[i])
		}
		cw.Write([]string{r.BuildCommit, r.CPUInfo, r.Backends, r.ModelFile, r.ModelType, u(r.ModelSize),
			u(r.ModelParams), strconv.Itoa(r.NBatch), strconv.Itoa(r.NUBatch), strconv.Itoa(r.Threads), r.TypeK, r.TypeV,
			strconv.Itoa(r.NPrompt), strconv.Itoa(r.NGen), strconv.Itoa(r.NDepth), r.TestTime, u(r.AvgNs), u(r.StddevNs),
			f(r.AvgTs), f(r.StddevTs), "[" + strings.Join(ns, ", ") + "]", "[" + strings.Join(ts, ", ") + "]",
			strconv.Itoa(r.Cores), r.SIMD, r.Kernels, strconv.Itoa(r.NParallel), r.Test, u(r.ActiveParams), f(r.BytesPerToken), f(r.ReadGBs),
			f(r.RooflineTs), f(r.RooflinePct)})
	}
	cw.Flush()
	return cw.Error()
}
