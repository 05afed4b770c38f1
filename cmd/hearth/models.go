package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/ollama/ollama/api"
	"github.com/schollz/progressbar/v3"
	"github.com/spf13/pflag"

	"github.com/hearth-llm/hearth/runtime/models"
)

func shortDigest(d string) string {
	d = strings.TrimPrefix(d, "sha256:")
	if len(d) > 12 {
		d = d[:12]
	}
	return d
}

func lsCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("ls", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	dir, ollamaDir := modelsFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth ls [flags]\n\nLists the models of the models folder and of Ollama's store.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	store, err := openStore(*dir, *ollamaDir)
	if err != nil {
		return err
	}
	all, err := store.List()
	if err != nil {
		return err
	}
	sort.SliceStable(all, func(i, j int) bool { return all[i].ModifiedAt.After(all[j].ModifiedAt) })
	w := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(w, "NAME\tID\tSIZE\tMODIFIED\tFROM")
	for _, m := range all {
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", m.Name.Short(), shortDigest(m.Digest), humanize.Bytes(uint64(m.Size)),
			humanize.Time(m.ModifiedAt), m.Source)
	}
	return w.Flush()
}

func rmCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("rm", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	dir, ollamaDir := modelsFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth rm MODEL... [flags]\n\nRemoves models from the models folder (never from Ollama's store).\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return usageError{"missing MODEL"}
	}
	store, err := openStore(*dir, *ollamaDir)
	if err != nil {
		return err
	}
	for _, name := range fs.Args() {
		if err := store.Delete(name); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "deleted '%s'\n", name)
	}
	return nil
}

func pullCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("pull", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	dir, ollamaDir := modelsFlags(fs)
	registry := fs.String("registry", envOr(models.DefaultRegistry, "HEARTH_REGISTRY"), "Ollama registry base URL (env HEARTH_REGISTRY)")
	name := fs.String("name", "", "local name for a URL pull (default: the file's name)")
	progress := progressFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth pull NAME|URL [flags]\n\n"+
			"Downloads a model into the models folder: an Ollama registry name (llama3.2,\n"+
			"llama3.2:1b, user/model:tag) or the URL of a GGUF file, such as\n"+
			"https://huggingface.co/ORG/REPO/resolve/main/FILE.gguf. An interrupted\n"+
			"download resumes; the sha256 digest is checked before the file is used.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return usageError{"want one NAME or URL"}
	}
	if err := checkProgress(*progress); err != nil {
		return err
	}
	store, err := openStore(*dir, *ollamaDir)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	var bar *progressbar.ProgressBar
	last := ""
	m, err := store.Pull(ctx, fs.Arg(0), models.PullOptions{Registry: *registry, Name: *name, Progress: func(p models.Progress) {
		if p.Total > 0 && p.Status != "" && strings.HasPrefix(p.Status, "pulling ") && p.Status != "pulling manifest" {
			if bar == nil {
				if bar = newBar(stderr, *progress, p.Total, p.Status, true); bar == nil && last != p.Status {
					fmt.Fprintln(stderr, p.Status)
				}
				last = p.Status
			}
			if bar != nil {
				bar.Set64(p.Completed)
			}
			return
		}
		if bar != nil {
			bar.Finish()
			bar = nil
		}
		if p.Status != last && p.Status != "success" {
			fmt.Fprintln(stderr, p.Status)
		}
		last = p.Status
	}})
	if bar != nil {
		bar.Exit()
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "pulled %s (%s) to %s\n", m.Name.Short(), humanize.Bytes(uint64(m.Size)), m.Path)
	return nil
}

// serverClient is an Ollama API client for a running Hearth, found with
// --host (HEARTH_HOST, then OLLAMA_HOST, then 127.0.0.1:11434).
func serverClient(host, apiKey string) (*api.Client, error) {
	h, p, err := hostPort(host)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	if p == 0 {
		p = defaultPort
	}
	switch h {
	case "", "0.0.0.0", "::":
		h = "127.0.0.1"
	}
	scheme := "http"
	if strings.HasPrefix(host, "https://") {
		scheme = "https"
	}
	u := &url.URL{Scheme: scheme, Host: joinHostPort(h, p)}
	var rt http.RoundTripper = http.DefaultTransport
	if apiKey != "" {
		rt = bearerTransport{key: apiKey, rt: rt}
	}
	return api.NewClient(u, &http.Client{Transport: rt, Timeout: 30 * time.Second}), nil
}

func joinHostPort(h string, p int) string {
	if strings.Contains(h, ":") {
		return "[" + h + "]:" + strconv.Itoa(p)
	}
	return h + ":" + strconv.Itoa(p)
}

type bearerTransport struct {
	key string
	rt  http.RoundTripper
}

func (b bearerTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.rt.RoundTrip(r)
}

func psCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("ps", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	host := fs.String("host", envOr("127.0.0.1", "HEARTH_HOST", "OLLAMA_HOST"), "the server, host or host:port (env HEARTH_HOST, OLLAMA_HOST)")
	apiKey := fs.String("api-key", os.Getenv("HEARTH_API_KEY"), "the server's API key (env HEARTH_API_KEY)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth ps [flags]\n\nLists the models a running server has loaded.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	c, err := serverClient(*host, *apiKey)
	if err != nil {
		return err
	}
	ps, err := c.ListRunning(context.Background())
	if err != nil {
		var se api.StatusError
		if errors.As(err, &se) {
			return err
		}
		return fmt.Errorf("no server at %s (start one with `hearth serve`): %w", *host, err)
	}
	w := tabwriter.NewWriter(stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(w, "NAME\tID\tSIZE\tPROCESSOR\tCONTEXT\tUNTIL")
	for _, m := range ps.Models {
		proc := "100% CPU"
		if m.SizeVRAM > 0 {
			proc = fmt.Sprintf("%d%% GPU", int(100*float64(m.SizeVRAM)/float64(max(m.Size, 1))))
		}
		until := humanize.Time(m.ExpiresAt)
		if m.ExpiresAt.Year() > 2200 {
			until = "Forever"
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%d\t%s\n", m.Name, shortDigest(m.Digest), humanize.Bytes(uint64(m.Size)), proc,
			m.ContextLength, until)
	}
	return w.Flush()
}

func cpCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("cp", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	dir, ollamaDir := modelsFlags(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth cp SOURCE DESTINATION [flags]\n\n"+
			"Makes the model SOURCE also available as DESTINATION in the models folder (a hard\n"+
			"link where possible, else a copy), replacing DESTINATION atomically. A running\n"+
			"`hearth serve` notices and swaps DESTINATION to the new version without failing\n"+
			"requests: `hearth cp app:v2 app` rolls out, `hearth cp app:v1 app` rolls back.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return usageError{"want SOURCE and DESTINATION"}
	}
	store, err := openStore(*dir, *ollamaDir)
	if err != nil {
		return err
	}
	m, err := store.Copy(fs.Arg(0), fs.Arg(1))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "copied '%s' to '%s' (version %s)\n", fs.Arg(0), m.Name.Short(), shortDigest(m.Version))
	return nil
}
