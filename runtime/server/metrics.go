package server

import (
	"net/http"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, on a registry of its own
// (no global state: two servers in one process, as in tests, do not
// collide). Series about a model carry its short name (model) and
// version (the first 12 hex digits of its file's sha256, as /api/ps and
// `hearth ls` show it); a request that never reached a model has both
// empty. Model names in labels are only names that resolved in the store,
// never a client's unchecked string, so the series stay bounded.
type metrics struct {
	reg          *prometheus.Registry
	collectors   []prometheus.Collector // ours, for metricNames
	requests     *prometheus.CounterVec
	duration     *prometheus.HistogramVec
	queue        *prometheus.HistogramVec
	ttft         *prometheus.HistogramVec
	interToken   *prometheus.HistogramVec
	tokensPerSec *prometheus.HistogramVec
	promptTokens *prometheus.CounterVec
	genTokens    *prometheus.CounterVec
	rejected     prometheus.Counter
	loadSeconds  *prometheus.HistogramVec
	loadFailures *prometheus.CounterVec
	swaps        *prometheus.CounterVec

	// LoRA adapters: series of their own, by adapter (its model name) and
	// model (its base), beside the base's series above (which count the
	// adapter's requests and tokens too).
	adapterRequests     *prometheus.CounterVec
	adapterPromptTokens *prometheus.CounterVec
	adapterGenTokens    *prometheus.CounterVec
	adapterLoads        *prometheus.CounterVec
	adapterEvictions    *prometheus.CounterVec
}

var adapterLabels = []string{"adapter", "model"}

var modelLabels = []string{"model", "version"}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_http_requests_total", Help: "HTTP requests by route, status code, model and version.",
		}, []string{"route", "code", "model", "version"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_request_duration_seconds", Help: "From a generation or embedding request's arrival to its end.",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}, []string{"route", "model", "version"}),
		queue: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_queue_seconds", Help: "From a request's arrival until it holds its model (admission and any load).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}, modelLabels),
		ttft: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_time_to_first_token_seconds", Help: "From a generation request's arrival to its first token.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}, modelLabels),
		interToken: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_inter_token_seconds", Help: "Between consecutive pieces of generated text.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, modelLabels),
		tokensPerSec: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_generation_tokens_per_second", Help: "Generation speed of each finished request.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}, modelLabels),
		promptTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_prompt_tokens_total", Help: "Prompt tokens of finished requests.",
		}, modelLabels),
		genTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_generated_tokens_total", Help: "Tokens generated.",
		}, modelLabels),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_rejected_requests_total", Help: "Requests refused with 503 because the queue was full.",
		}),
		loadSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "hearth_model_load_seconds", Help: "Time to load a model version (successful loads).",
			Buckets: prometheus.ExponentialBuckets(0.01, 2, 14),
		}, modelLabels),
		loadFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_model_load_failures_total", Help: "Model versions that failed to load (a failed new version leaves the old one serving).",
		}, modelLabels),
		swaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_model_swaps_total", Help: "Times a new version of a model replaced the one serving, by the new version.",
		}, modelLabels),
		adapterRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_adapter_requests_total", Help: "HTTP requests that named a LoRA adapter, by route, status code, adapter and base model.",
		}, []string{"route", "code", "adapter", "model"}),
		adapterPromptTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_adapter_prompt_tokens_total", Help: "Prompt tokens of finished requests with a LoRA adapter.",
		}, adapterLabels),
		adapterGenTokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_adapter_generated_tokens_total", Help: "Tokens generated with a LoRA adapter.",
		}, adapterLabels),
		adapterLoads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_adapter_loads_total", Help: "Times a LoRA adapter was loaded onto its base model's runner.",
		}, adapterLabels),
		adapterEvictions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_adapter_evictions_total", Help: "Times a LoRA adapter was evicted (least recently used) to make room for another (--max-loras).",
		}, adapterLabels),
	}
	m.collectors = []prometheus.Collector{m.requests, m.duration, m.queue, m.ttft, m.interToken, m.tokensPerSec,
		m.promptTokens, m.genTokens, m.rejected, m.loadSeconds, m.loadFailures, m.swaps,
		m.adapterRequests, m.adapterPromptTokens, m.adapterGenTokens, m.adapterLoads, m.adapterEvictions, &stateCollector{s: s}}
	m.reg.MustRegister(m.collectors...)
	m.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *metrics) observeRequest(route string, code int, model, version string) {
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, strconv.Itoa(code), model, version).Inc()
}

// loadDone is the manager's hook: load time or failure per version.
func (m *metrics) loadDone(l *loaded, err error) {
	name, v := l.model.Name.Short(), l.version()
	if err != nil {
		m.loadFailures.WithLabelValues(name, v).Inc()
		return
	}
	m.loadSeconds.WithLabelValues(name, v).Observe(l.loadDur.Seconds())
}

var descName = regexp.MustCompile(`fqName: "([^"]+)"`)

// metricNames are the names of the metrics the server exports (its own,
// without the Go runtime's and the process's), for the dashboard test.
func (m *metrics) metricNames() map[string]bool {
	ch := make(chan *prometheus.Desc, 64)
	go func() {
		for _, c := range m.collectors {
			c.Describe(ch)
		}
		close(ch)
	}()
	names := map[string]bool{}
	for d := range ch {
		if sm := descName.FindStringSubmatch(d.String()); sm != nil {
			names[sm[1]] = true
		}
	}
	return names
}

// stateCollector reads the gauges from the server and its runners when
// scraped.
type stateCollector struct{ s *Server }

var (
	descQueue   = prometheus.NewDesc("hearth_queue_depth", "Requests admitted and waiting: for a model to load or for their runner.", nil, nil)
	descRunning = prometheus.NewDesc("hearth_running_sequences", "Sequences generating now.", nil, nil)
	descKVUsed  = prometheus.NewDesc("hearth_kv_blocks_used", "KV cache blocks in use (runners with a paged cache).", nil, nil)
	descKVFree  = prometheus.NewDesc("hearth_kv_blocks_free", "KV cache blocks free (runners with a paged cache).", nil, nil)
	descPrefix  = prometheus.NewDesc("hearth_prefix_cache_hit_ratio", "Share of looked-up prompt tokens found in a prefix cache.", nil, nil)
	descLoaded  = prometheus.NewDesc("hearth_models_loaded", "Model versions in memory (a model being swapped counts twice until its old version's requests end).", nil, nil)
	descFlight  = prometheus.NewDesc("hearth_requests_in_flight", "Generation and embedding requests admitted.", nil, nil)
	descModel   = prometheus.NewDesc("hearth_model_loaded", "1 for each model version in memory; state is serving, or retired (replaced, finishing its requests).",
		[]string{"model", "version", "state"}, nil)
	descModelReqs = prometheus.NewDesc("hearth_model_requests_active", "Requests holding each model version.",
		[]string{"model", "version"}, nil)
	descModelBytes = prometheus.NewDesc("hearth_model_memory_bytes", "Memory counted for each model version (its file and KV cache) against the budget.",
		[]string{"model", "version"}, nil)
	descSwapFailing = prometheus.NewDesc("hearth_model_swap_failing", "1 while a model's newest version is not serving because it failed to load (or waits for memory).",
		[]string{"model", "version"}, nil)
	descAdapterRunning = prometheus.NewDesc("hearth_adapter_requests_running", "Requests holding each LoRA adapter (generating, or about to).",
		[]string{"adapter"}, nil)
	descAdapterWaiting = prometheus.NewDesc("hearth_adapter_requests_waiting", "Requests waiting for a slot to load each LoRA adapter (all --max-loras slots held).",
		[]string{"adapter"}, nil)
	descAdaptersResident = prometheus.NewDesc("hearth_adapters_resident", "LoRA adapters loaded on each model version's runner.",
		[]string{"model", "version"}, nil)
	descMaxLoras = prometheus.NewDesc("hearth_max_loras", "LoRA adapters a model's runner holds at most (--max-loras).", nil, nil)
)

// Model-server protocol series (the Gateway API Inference Extension's,
// kubernetes-sigs/gateway-api-inference-extension docs/proposals/003):
// its endpoint picker reads vLLM's names by default, so Hearth exports
// them under those names, beside its own. Each is one series per pod,
// summed over the models in memory (the picker takes one series per
// metric, and a replica's queue is the whole process's), labelled
// model_name as vLLM labels them: the names of the models serving,
// sorted and joined by commas ("" when none). A pod serving one model
// (the Helm chart's) therefore looks exactly like a vLLM replica.
var (
	descVLLMWaiting = prometheus.NewDesc("vllm:num_requests_waiting",
		"Requests waiting: admitted but not yet running (the same count as hearth_queue_depth).", []string{"model_name"}, nil)
	descVLLMRunning = prometheus.NewDesc("vllm:num_requests_running",
		"Sequences running in the models' batches (hearth_running_sequences).", []string{"model_name"}, nil)
	descVLLMKVUsage = prometheus.NewDesc("vllm:kv_cache_usage_perc",
		"KV cache usage as a fraction 0..1: blocks used / (used + free), over the paged caches in memory; 0 without one.",
		[]string{"model_name"}, nil)
	descVLLMCacheConfig = prometheus.NewDesc("vllm:cache_config_info",
		"Information of the KV cache (value 1): positions per block and blocks in all, over the paged caches in memory.",
		[]string{"model_name", "block_size", "num_gpu_blocks"}, nil)
	descVLLMLoRA = prometheus.NewDesc("vllm:lora_requests_info",
		"LoRA adapters running and waiting (comma-separated) and the most held at once; the value is the Unix time of the scrape, as vLLM's set_to_current_time.",
		[]string{"max_lora", "running_lora_adapters", "waiting_lora_adapters"}, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueue, descRunning, descKVUsed, descKVFree, descPrefix, descLoaded, descFlight,
		descModel, descModelReqs, descModelBytes, descSwapFailing, descAdapterRunning, descAdapterWaiting, descAdaptersResident, descMaxLoras,
		descVLLMWaiting, descVLLMRunning, descVLLMKVUsage, descVLLMCacheConfig, descVLLMLoRA} {
		ch <- d
	}
}

// podLoad is the process's load, summed over its runners, for one scrape.
type podLoad struct {
	Stats
	Queue, InFlight int
	Serving         []string // names of the models serving, sorted, unique
}

// load sums the runners' Stats. Admitted requests that no runner has yet
// (waiting for their model to load, say) count as waiting.
func (s *Server) load(loaded []running) podLoad {
	var p podLoad
	running := map[string]bool{}
	waiting := map[string]bool{}
	seen := map[string]bool{}
	for _, r := range loaded {
		if name := r.l.model.Name.Short(); !r.retired && !seen[name] {
			seen[name] = true
			p.Serving = append(p.Serving, name)
		}
		sr, ok := r.l.runner.(StatsReporter)
		if !ok {
			continue
		}
		x := sr.Stats()
		p.Waiting += x.Waiting
		p.Running += x.Running
		p.KVBlocksUsed += x.KVBlocksUsed
		p.KVBlocksFree += x.KVBlocksFree
		if p.KVBlockSize == 0 {
			p.KVBlockSize = x.KVBlockSize // the first (by name): runners share the engine's default
		}
		p.PrefixQueryTokens += x.PrefixQueryTokens
		p.PrefixHitTokens += x.PrefixHitTokens
		p.MaxLoRA += x.MaxLoRA
		for _, a := range x.RunningLoRA {
			running[a] = true
		}
		for _, a := range x.WaitingLoRA {
			waiting[a] = true
		}
	}
	sort.Strings(p.Serving)
	p.RunningLoRA, p.WaitingLoRA = sortedKeys(running), sortedKeys(waiting)
	p.InFlight = int(s.inFlight.Load())
	p.Queue = max(p.Waiting, p.InFlight-p.Running)
	return p
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// KVUsage is the fraction of KV cache blocks in use, 0..1 (0 without a
// paged cache).
func (p podLoad) KVUsage() float64 {
	if total := p.KVBlocksUsed + p.KVBlocksFree; total > 0 {
		return float64(p.KVBlocksUsed) / float64(total)
	}
	return 0
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	loaded := c.s.mgr.snapshot()
	st := c.s.load(loaded)
	ratio := 0.0
	if st.PrefixQueryTokens > 0 {
		ratio = float64(st.PrefixHitTokens) / float64(st.PrefixQueryTokens)
	}
	g := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	g(descQueue, float64(st.Queue))
	g(descRunning, float64(st.Running))
	g(descKVUsed, float64(st.KVBlocksUsed))
	g(descKVFree, float64(st.KVBlocksFree))
	g(descPrefix, ratio)
	g(descLoaded, float64(len(loaded)))
	g(descFlight, float64(st.InFlight))
	for _, r := range loaded {
		name, v := r.l.model.Name.Short(), r.l.version()
		state := "serving"
		if r.retired {
			state = "retired"
		}
		g(descModel, 1, name, v, state)
		g(descModelReqs, float64(r.refs), name, v)
		g(descModelBytes, float64(r.l.model.Size+c.s.mgr.kvBytes), name, v)
		if r.failed != nil {
			g(descSwapFailing, 1, name, shortVersion(r.failed.version))
		}
		if n := len(r.l.resident()); n > 0 {
			g(descAdaptersResident, float64(n), name, v)
		}
	}
	a := c.s.loras
	a.mu.Lock()
	for n, k := range a.running {
		g(descAdapterRunning, float64(k), n)
	}
	for n, k := range a.waiting {
		g(descAdapterWaiting, float64(k), n)
	}
	a.mu.Unlock()
	g(descMaxLoras, float64(a.max))

	model := strings.Join(st.Serving, ",")
	g(descVLLMWaiting, float64(st.Queue), model)
	g(descVLLMRunning, float64(st.Running), model)
	g(descVLLMKVUsage, st.KVUsage(), model)
	if total := st.KVBlocksUsed + st.KVBlocksFree; total > 0 {
		g(descVLLMCacheConfig, 1, model, strconv.Itoa(st.KVBlockSize), strconv.Itoa(total))
	}
	lora := c.s.loraInfo(st)
	g(descVLLMLoRA, float64(c.s.now().Unix()), strconv.Itoa(lora.MaxLoras),
		strings.Join(lora.Running, ","), strings.Join(lora.Waiting, ","))
}

// loraInfo is what vllm:lora_requests_info reports: the LoRA adapters
// (by the model name a request gives, as the endpoint picker matches
// them) with sequences running, those only waiting requests ask for, each
// list sorted, and the most adapters held at once.
type loraInfo struct {
	Running, Waiting []string
	MaxLoras         int
}

// loraInfo is the one place /metrics reads the adapters' state from: the
// server's adapters (LoraState: those served as models, by name; the most
// resident per base, --max-loras), with any a runner reports in its
// Stats, summed by load.
func (s *Server) loraInfo(p podLoad) loraInfo {
	st := s.LoraState()
	merge := func(a, b []string) []string {
		out := slices.Concat(a, b)
		slices.Sort(out)
		return slices.Compact(out)
	}
	return loraInfo{Running: merge(p.RunningLoRA, st.Running), Waiting: merge(p.WaitingLoRA, st.Waiting), MaxLoras: max(p.MaxLoRA, st.MaxLoras)}
}
