package server_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/server"
	"github.com/hearth-llm/hearth/runtime/server/batched"
)

// TestGatewayMetricsEngine is the model-server protocol's conformance
// under a 64-way load on the real batched engine (runtime/server's
// TestGatewayMetricsConformance does it on a fake runner whose numbers it
// sets): 64 streamed requests over stories260K and four LoRA adapters of
// it, 16 running at most, each held to 200 tokens by a JSON schema (an
// array of at least 100 integers, so no end of generation comes early).
// Each scrape is compared with the scheduler's own counts (the runner's
// Stats: the block allocator's used and free blocks, its queue), read
// just before and just after; a scrape during which those changed is
// taken again. The adapters with requests in flight are listed.
func TestGatewayMetricsEngine(t *testing.T) {
	const load, slots = 64, 16
	var mu sync.Mutex
	var runner server.Runner
	inner := batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 8 << 20, MaxRunning: slots})
	c, base, _, _ := loraServer(t, func(ctx context.Context, path string) (server.Runner, error) {
		r, err := inner(ctx, path)
		mu.Lock()
		runner = r
		mu.Unlock()
		return r, err
	}, 4)
	stats := func() server.Stats {
		mu.Lock()
		defer mu.Unlock()
		if runner == nil {
			return server.Stats{}
		}
		return runner.(interface{ Stats() server.Stats }).Stats()
	}
	models := []string{"stories", "a0", "a1", "a2", "a3"}
	schema := []byte(`{"type":"array","items":{"type":"integer","minimum":0,"maximum":9},"minItems":100}`)
	var wg sync.WaitGroup
	errs := make(chan error, load)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := range load {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := c.Generate(ctx, &api.GenerateRequest{Model: models[i%len(models)], Prompt: fmt.Sprint("Numbers ", i), Format: schema,
				Options: map[string]any{"num_predict": 200, "temperature": 0.8, "seed": i}},
				func(api.GenerateResponse) error { return nil })
			if err != nil && ctx.Err() == nil {
				errs <- err
			}
		}()
	}
	deadline := time.Now().Add(2 * time.Minute)
	for st := stats(); st.Waiting+st.Running < load || st.Running < slots; st = stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the load never arrived: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}

	var table strings.Builder
	fmt.Fprintf(&table, "\n%-8s %-70s %10s  %s\n", "phase", "series", "scraped", "scheduler's own count")
	check := func(phase string, wantAdapters string) {
		t.Helper()
		for try := 0; ; try++ {
			before := stats()
			got := scrapeURL(t, base)
			after := stats()
			if !reflect.DeepEqual(before, after) {
				if try > 500 {
					t.Fatalf("%s: the scheduler never held still across a scrape", phase)
				}
				continue
			}
			st := before
			total := st.KVBlocksUsed + st.KVBlocksFree
			rows := []struct {
				series    string
				got, want float64
				own       string
			}{
				{"vllm:num_requests_waiting", got["vllm:num_requests_waiting"], float64(st.Waiting), fmt.Sprintf("queue %d", st.Waiting)},
				{"vllm:num_requests_running", got["vllm:num_requests_running"], float64(st.Running), fmt.Sprintf("running %d", st.Running)},
				{"vllm:kv_cache_usage_perc", got["vllm:kv_cache_usage_perc"], float64(st.KVBlocksUsed) / float64(total),
					fmt.Sprintf("blocks used %d of %d", st.KVBlocksUsed, total)},
				{fmt.Sprintf(`vllm:cache_config_info{block_size="%d",num_gpu_blocks="%d"}`, st.KVBlockSize, total),
					got[fmt.Sprintf(`vllm:cache_config_info{block_size="%d",num_gpu_blocks="%d"}`, st.KVBlockSize, total)], 1,
					fmt.Sprintf("block size %d, %d blocks", st.KVBlockSize, total)},
				{`vllm:lora_requests_info{max_lora="4",running_lora_adapters="` + wantAdapters + `",waiting_lora_adapters=""}`,
					got[`vllm:lora_requests_info{max_lora="4",running_lora_adapters="`+wantAdapters+`",waiting_lora_adapters=""}`], 0,
					"adapters with requests in flight: " + wantAdapters},
			}
			for i, r := range rows {
				ok := r.got == r.want
				if i == len(rows)-1 { // the value is the scrape time
					ok = r.got > float64(time.Now().Add(-time.Minute).Unix())
				}
				if !ok {
					t.Errorf("%s %s = %v, want %v (%s); scrape: %v", phase, r.series, r.got, r.want, r.own, got)
				}
				fmt.Fprintf(&table, "%-8s %-70s %10.4g  %s\n", phase, r.series, r.got, r.own)
			}
			return
		}
	}
	check("loaded", "a0,a1,a2,a3")
	if st := stats(); st.Running != slots || st.Waiting == 0 {
		t.Errorf("under load: %+v, want %d running and some waiting", st, slots)
	}
	// Later, with the running sequences some blocks into their answers.
	for st := stats(); st.KVBlocksUsed < 3*slots; st = stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the running sequences never grew: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
	check("growing", "a0,a1,a2,a3")
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	check("idle", "")
	t.Log(table.String())
}

var (
	metricLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$`)
	modelLabel = regexp.MustCompile(`model_name="[^"]*",?`)
)

// scrapeURL reads /metrics into values by series (name and labels as
// written), the vllm:* series only.
func scrapeURL(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %v", resp.StatusCode, err)
	}
	out := map[string]float64{}
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "vllm:") {
			continue
		}
		m := metricLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("/metrics: unparsable line %q", line)
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatal(err)
		}
		// model_name is the one label the test does not spell out.
		key := modelLabel.ReplaceAllString(m[1], "")
		key = strings.TrimSuffix(strings.ReplaceAll(key, ",}", "}"), "{}")
		out[key] = v
	}
	return out
}
