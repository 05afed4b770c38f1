package loadgen

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// DefaultScrapeMetrics are the series sampled from Config.ScrapeURL when
// Config.ScrapeMetrics is empty: Hearth's load gauges.
var DefaultScrapeMetrics = []string{
	"hearth_kv_blocks_used", "hearth_kv_blocks_free", "hearth_running_sequences",
	"hearth_queue_depth", "hearth_requests_in_flight",
}

// scraper samples Prometheus text-format gauges while a run goes on.
type scraper struct {
	url    string
	names  map[string]bool
	client *http.Client
	auth   string

	mu     sync.Mutex
	gauges map[string]Gauge
	err    error // the first failed scrape
}

func newScraper(url string, names []string, client *http.Client, auth string) *scraper {
	if len(names) == 0 {
		names = DefaultScrapeMetrics
	}
	s := &scraper{url: url, names: map[string]bool{}, client: client, auth: auth, gauges: map[string]Gauge{}}
	for _, n := range names {
		s.names[n] = true
	}
	return s
}

// run samples every interval until ctx ends.
func (s *scraper) run(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.sample(ctx, false)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// sample scrapes once; after also records the values as Gauge.After.
func (s *scraper) sample(ctx context.Context, after bool) {
	vals, err := s.fetch(ctx)
	s.mu.Lock()
	defer s.mu.Unlock()
	if err != nil {
		if s.err == nil && ctx.Err() == nil {
			s.err = err
		}
		return
	}
	for k, v := range vals {
		g := s.gauges[k]
		if g.Samples == 0 {
			g.Min, g.Max = v, v
		}
		g.Samples++
		g.Min, g.Max = min(g.Min, v), max(g.Max, v)
		if after {
			g.After = v
		}
		s.gauges[k] = g
	}
}

func (s *scraper) fetch(ctx context.Context) (map[string]float64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url, nil)
	if err != nil {
		return nil, err
	}
	if s.auth != "" {
		req.Header.Set("Authorization", s.auth)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", s.url, resp.Status)
	}
	return parseMetrics(io.LimitReader(resp.Body, 16<<20), s.names)
}

// parseMetrics reads the Prometheus text format and returns the samples
// whose metric name is in names, keyed by series (name and labels as
// written).
func parseMetrics(r io.Reader, names map[string]bool) (map[string]float64, error) {
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		name := line
		if i := strings.IndexAny(line, "{ "); i >= 0 {
			name = line[:i]
		}
		if !names[name] {
			continue
		}
		series := name
		rest := line[len(name):]
		if strings.HasPrefix(rest, "{") {
			j := strings.LastIndexByte(rest, '}')
			if j < 0 {
				return nil, fmt.Errorf("metrics: bad line %q", line)
			}
			series, rest = name+rest[:j+1], rest[j+1:]
		}
		fields := strings.Fields(rest)
		if len(fields) == 0 {
			return nil, fmt.Errorf("metrics: no value in %q", line)
		}
		v, err := strconv.ParseFloat(fields[0], 64)
		if err != nil {
			return nil, fmt.Errorf("metrics: bad value in %q", line)
		}
		out[series] = v
	}
	return out, sc.Err()
}
