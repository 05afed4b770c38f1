package server

import (
	"net/http"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the server's Prometheus metrics, on a registry of its own
// (no global state: two servers in one process, as in tests, do not
// collide).
type metrics struct {
	reg          *prometheus.Registry
	requests     *prometheus.CounterVec
	ttft         prometheus.Histogram
	interToken   prometheus.Histogram
	tokensPerSec prometheus.Histogram
	promptTokens prometheus.Counter
	genTokens    prometheus.Counter
	rejected     prometheus.Counter
}

func newMetrics(s *Server) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "hearth_http_requests_total", Help: "HTTP requests by route and status code.",
		}, []string{"route", "code"}),
		ttft: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hearth_time_to_first_token_seconds", Help: "From a generation request's arrival to its first token.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 14),
		}),
		interToken: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hearth_inter_token_seconds", Help: "Between consecutive pieces of generated text.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		tokensPerSec: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "hearth_generation_tokens_per_second", Help: "Generation speed of each finished request.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 14),
		}),
		promptTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_prompt_tokens_total", Help: "Prompt tokens of finished requests.",
		}),
		genTokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_generated_tokens_total", Help: "Tokens generated.",
		}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "hearth_rejected_requests_total", Help: "Requests refused with 503 because the queue was full.",
		}),
	}
	m.reg.MustRegister(m.requests, m.ttft, m.interToken, m.tokensPerSec, m.promptTokens, m.genTokens, m.rejected,
		&stateCollector{s: s},
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *metrics) observeRequest(route string, code int) {
	if route == "" {
		route = "unmatched"
	}
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
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
	descLoaded  = prometheus.NewDesc("hearth_models_loaded", "Models in memory.", nil, nil)
	descFlight  = prometheus.NewDesc("hearth_requests_in_flight", "Generation and embedding requests admitted.", nil, nil)
)

func (c *stateCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descQueue, descRunning, descKVUsed, descKVFree, descPrefix, descLoaded, descFlight} {
		ch <- d
	}
}

func (c *stateCollector) Collect(ch chan<- prometheus.Metric) {
	var st Stats
	loaded := c.s.mgr.snapshot()
	for _, r := range loaded {
		if sr, ok := r.l.runner.(StatsReporter); ok {
			x := sr.Stats()
			st.Waiting += x.Waiting
			st.Running += x.Running
			st.KVBlocksUsed += x.KVBlocksUsed
			st.KVBlocksFree += x.KVBlocksFree
			st.PrefixQueryTokens += x.PrefixQueryTokens
			st.PrefixHitTokens += x.PrefixHitTokens
		}
	}
	inFlight := int(c.s.inFlight.Load())
	// Admitted requests that no runner has yet are waiting too.
	queue := max(st.Waiting, inFlight-st.Running)
	ratio := 0.0
	if st.PrefixQueryTokens > 0 {
		ratio = float64(st.PrefixHitTokens) / float64(st.PrefixQueryTokens)
	}
	g := func(d *prometheus.Desc, v float64) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v)
	}
	g(descQueue, float64(queue))
	g(descRunning, float64(st.Running))
	g(descKVUsed, float64(st.KVBlocksUsed))
	g(descKVFree, float64(st.KVBlocksFree))
	g(descPrefix, ratio)
	g(descLoaded, float64(len(loaded)))
	g(descFlight, float64(inFlight))
}
