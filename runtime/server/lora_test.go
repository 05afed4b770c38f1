package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/lora"
)

func TestParseAdapterSpec(t *testing.T) {
	for _, c := range []struct {
		in   string
		want AdapterSpec
	}{
		{"sql=stories:/a/sql.gguf", AdapterSpec{Name: "sql", Base: "stories", Path: "/a/sql.gguf", Scale: 1}},
		{"sql=llama3:8b:/a/sql.gguf", AdapterSpec{Name: "sql", Base: "llama3:8b", Path: "/a/sql.gguf", Scale: 1}},
		{"sql=llama3:8b:/a/sql.gguf:0.5", AdapterSpec{Name: "sql", Base: "llama3:8b", Path: "/a/sql.gguf", Scale: 0.5}},
		{"sql=stories:sql.gguf:-2", AdapterSpec{Name: "sql", Base: "stories", Path: "sql.gguf", Scale: -2}},
		{"team/sql:v2=hf.co/org/base:q4:rel/a.gguf", AdapterSpec{Name: "team/sql:v2", Base: "hf.co/org/base:q4", Path: "rel/a.gguf", Scale: 1}},
		// Two parts are base and file, even when the file looks like a number.
		{"x=stories:2", AdapterSpec{Name: "x", Base: "stories", Path: "2", Scale: 1}},
	} {
		got, err := ParseAdapterSpec(c.in)
		if err != nil || got != c.want {
			t.Errorf("%q: %+v, %v; want %+v", c.in, got, err, c.want)
		}
	}
	for _, c := range []struct{ in, want string }{
		{"sql", "no '='"},
		{"=stories:a.gguf", "name is empty"},
		{"sql=stories", "no ':'"},
		{"sql=:a.gguf", "base model is empty"},
		{"sql=stories:", "file is empty"},
		{"sql=stories:a.gguf:0", "scale 0"},
		{"sql=stories:a.gguf:NaN", "scale NaN"},
		{"sql=stories:a.gguf:inf", "scale inf"},
		{"sql=a:b:c:d.gguf", "too many ':'"},
	} {
		_, err := ParseAdapterSpec(c.in)
		if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "NAME=BASE:FILE[:SCALE]") {
			t.Errorf("%q: %v, want an error about %q and the syntax", c.in, err, c.want)
		}
	}
}

// loraFake is a fakeRunner that serves adapters: it records the loads and
// removals it gets, in order.
type loraFake struct {
	*fakeRunner
	mu     sync.Mutex
	loaded map[string]string // name: path
	events []string          // "+name", "-name"
}

func (f *loraFake) LoadAdapter(name, path string, scale float32) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loaded[name] = path
	f.events = append(f.events, "+"+name)
	return nil
}

func (f *loraFake) RemoveAdapter(name string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.loaded[name]
	delete(f.loaded, name)
	f.events = append(f.events, "-"+name)
	return ok
}

func (f *loraFake) takeEvents() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	ev := f.events
	f.events = nil
	return ev
}

func (f *loraFake) resident() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for n := range f.loaded {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// writeFakeAdapter writes a random adapter for writeModel's model (on its
// output.weight) at path.
func writeFakeAdapter(t testing.TB, base, path string, seed uint64) {
	t.Helper()
	f, err := gguf.Open(base)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := lora.Random(f, lora.RandomOptions{Seed: seed, Rank: 1, Parts: []string{"output.weight"}})
	if err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
}

// newLoraEnv serves the model "base" through a loraFake, with adapter
// files a0..a(n-1) in the models folder (adapters/aN.gguf, made before
// tweak runs, so Config.Adapters may name them).
func newLoraEnv(t *testing.T, n int, tweak func(*Config)) (*env, *loraFake) {
	t.Helper()
	lf := &loraFake{fakeRunner: newFake("Hello", " world"), loaded: map[string]string{}}
	e := newEnv(t, map[string]*fakeRunner{"base": lf.fakeRunner}, func(c *Config) {
		dir := c.Store.Dir()
		for i := range n {
			writeFakeAdapter(t, filepath.Join(dir, "base.gguf"), filepath.Join(dir, "adapters", fmt.Sprintf("a%d.gguf", i)), uint64(i+1))
		}
		orig := c.Load
		c.Load = func(ctx context.Context, path string) (Runner, error) {
			if _, err := orig(ctx, path); err != nil {
				return nil, err
			}
			return lf, nil
		}
		if tweak != nil {
			tweak(c)
		}
	})
	return e, lf
}

// gen runs a non-streaming /api/generate for model and returns its status
// and body.
func (e *env) gen(model string) (int, string) {
	e.t.Helper()
	code, _, body := e.do("POST", "/api/generate", fmt.Sprintf(`{"model":%q,"prompt":"hi","stream":false}`, model))
	return code, body
}

// TestLoraLoadUnloadHTTP: vLLM's /v1/load_lora_adapter and
// /v1/unload_lora_adapter, their answers and errors; the adapter listed
// with its base in /v1/models and /api/tags; requests for it reach the
// base's runner with Request.Adapter; once unloaded, 404.
func TestLoraLoadUnloadHTTP(t *testing.T) {
	e, lf := newLoraEnv(t, 1, nil)
	tiny := filepath.Join(e.dir, "other.gguf")
	w := gguf.NewWriter() // another model: the same tensor, another shape
	w.Set("general.architecture", gguf.String("llama"))
	w.AddTensor("output.weight", quant.F32, []uint64{8, 2}, make([]byte, 64))
	if err := w.WriteFile(tiny); err != nil {
		t.Fatal(err)
	}
	writeFakeAdapter(t, tiny, filepath.Join(e.dir, "adapters", "other.gguf"), 9)
	os.Remove(tiny)

	code, hdr, body := e.do("POST", "/v1/load_lora_adapter", `{"lora_name":"sql","lora_path":"adapters/a0.gguf"}`)
	if code != 200 || body != "Success: LoRA adapter 'sql' added successfully." || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("load: %d %q", code, body)
	}
	if got := lf.resident(); !slices.Equal(got, []string{"sql"}) {
		t.Errorf("resident after load: %v", got)
	}
	if code, body := e.gen("sql"); code != 200 || !strings.Contains(body, "Hello world") {
		t.Fatalf("generate with the adapter: %d %s", code, body)
	}
	if r := lf.lastRequest(t); r.Adapter != "sql" {
		t.Errorf("the runner got adapter %q", r.Adapter)
	}
	if code, _ := e.gen("base"); code != 200 || lf.lastRequest(t).Adapter != "" {
		t.Errorf("the base: %d, adapter %q", code, lf.lastRequest(t).Adapter)
	}

	_, _, body = e.do("GET", "/v1/models", "")
	var models struct {
		Data []oaiModel `json:"data"`
	}
	json.Unmarshal([]byte(body), &models)
	var ids []string
	for _, m := range models.Data {
		ids = append(ids, m.ID)
		if m.ID == "sql" && (m.Parent == nil || *m.Parent != "base:latest" || m.Root != "adapters/a0.gguf" || !strings.HasPrefix(m.Version, "sha256:")) {
			t.Errorf("/v1/models lists the adapter as %+v", m)
		}
		if m.ID == "base:latest" && (m.Parent != nil || m.Root != "") {
			t.Errorf("/v1/models lists the base as %+v", m)
		}
	}
	if !slices.Equal(ids, []string{"base:latest", "sql"}) { // the adapter files are no models
		t.Errorf("/v1/models: %v", ids)
	}
	if code, _, body := e.do("GET", "/v1/models/sql", ""); code != 200 || !strings.Contains(body, `"parent":"base:latest"`) {
		t.Errorf("/v1/models/sql: %d %s", code, body)
	}
	tags, err := e.ollama.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	parents := map[string]string{}
	for _, m := range tags.Models {
		parents[m.Name] = m.Details.ParentModel
	}
	if !reflect.DeepEqual(parents, map[string]string{"base:latest": "", "sql:latest": "base:latest"}) {
		t.Errorf("/api/tags: %v", parents)
	}
	show, err := e.ollama.Show(context.Background(), &api.ShowRequest{Model: "sql"})
	if err != nil || show.Details.ParentModel != "base:latest" || !strings.Contains(show.Modelfile, "ADAPTER ") {
		t.Errorf("/api/show: %+v %v", show, err)
	}
	_, _, body = e.do("GET", "/api/ps", "")
	if !strings.Contains(body, `"adapters":["sql"]`) {
		t.Errorf("/api/ps: %s", body)
	}

	for _, c := range []struct {
		path, body string
		code       int
		typ, msg   string
	}{
		{"/v1/load_lora_adapter", `{"lora_name":"sql","lora_path":"adapters/a0.gguf"}`, 400, "InvalidUserInput", "has already been loaded"},
		{"/v1/load_lora_adapter", `{"lora_name":"x"}`, 400, "InvalidUserInput", "Both 'lora_name' and 'lora_path' must be provided"},
		{"/v1/load_lora_adapter", `{"lora_name":"x","lora_path":"../etc/passwd"}`, 400, "BadRequestError", "leaves the models folder"},
		{"/v1/load_lora_adapter", `{"lora_name":"x","lora_path":"/etc/passwd"}`, 400, "BadRequestError", "outside the models folder"},
		{"/v1/load_lora_adapter", `{"lora_name":"x","lora_path":"adapters/none.gguf"}`, 404, "NotFoundError", "No adapter found"},
		{"/v1/load_lora_adapter", `{"lora_name":"x","lora_path":"adapters/other.gguf"}`, 400, "BadRequestError",
			"LoRA adapter x does not fit base:latest: other.gguf: adapter tensor \"output.weight\": adapter does not fit the base model: lora_a [8 1] and lora_b [1 2] do not fit the base weight [4 2]"},
		{"/v1/load_lora_adapter", `{"lora_name":"x","lora_path":"base.gguf"}`, 400, "BadRequestError", "not a LoRA adapter"},
		{"/v1/load_lora_adapter", `{"lora_name":"x","lora_path":"adapters/a0.gguf","base_model_name":"nope"}`, 404, "NotFoundError", "nope"},
		{"/v1/load_lora_adapter", `{"lora_name":"base","lora_path":"adapters/a0.gguf"}`, 409, "BadRequestError", "is a model of the store"},
		{"/v1/unload_lora_adapter", `{"lora_name":"nope"}`, 404, "NotFoundError", "The lora adapter 'nope' cannot be found."},
		{"/v1/unload_lora_adapter", `{}`, 400, "InvalidUserInput", "'lora_name' needs to be provided."},
	} {
		code, _, body := e.do("POST", c.path, c.body)
		var er struct {
			Error struct {
				Message, Type string
				Code          int
			}
		}
		json.Unmarshal([]byte(body), &er)
		if code != c.code || er.Error.Type != c.typ || er.Error.Code != c.code || !strings.Contains(er.Error.Message, c.msg) {
			t.Errorf("%s %s: %d %s; want %d %s %q", c.path, c.body, code, body, c.code, c.typ, c.msg)
		}
	}
	if e.srv.loras.lookup("x") != nil {
		t.Error("a failed load left the adapter registered")
	}

	code, _, body = e.do("POST", "/v1/unload_lora_adapter", `{"lora_name":"sql"}`)
	if code != 200 || body != "Success: LoRA adapter 'sql' removed successfully." {
		t.Fatalf("unload: %d %q", code, body)
	}
	if got := lf.resident(); len(got) != 0 {
		t.Errorf("resident after unload: %v", got)
	}
	if code, body := e.gen("sql"); code != 404 {
		t.Errorf("generate with an unloaded adapter: %d %s", code, body)
	}
	oc, _, body := e.do("POST", "/v1/chat/completions", `{"model":"sql","messages":[{"role":"user","content":"hi"}]}`)
	if oc != 404 || !strings.Contains(body, "model_not_found") {
		t.Errorf("OpenAI chat with an unknown adapter: %d %s", oc, body)
	}
}

// TestLoraLRU: at most MaxLoras adapters are resident on a base; loading
// another evicts the least recently used idle one, never one in use. When
// every slot is held, a request waits for one (LoraState says so) and,
// past LoraWait, gets 503 with Retry-After.
func TestLoraLRU(t *testing.T) {
	e, lf := newLoraEnv(t, 3, func(c *Config) {
		dir := c.Store.Dir()
		for i := range 3 {
			c.Adapters = append(c.Adapters, AdapterSpec{Name: fmt.Sprintf("a%d", i), Base: "base", Path: filepath.Join(dir, "adapters", fmt.Sprintf("a%d.gguf", i))})
		}
		c.MaxLoras = 2
		c.LoraWait = 200 * time.Millisecond
	})
	run := func(model string) {
		t.Helper()
		if code, body := e.gen(model); code != 200 {
			t.Fatalf("%s: %d %s", model, code, body)
		}
	}
	run("a0")
	run("a1")
	run("a0") // a0 is now the most recently used
	if ev := lf.takeEvents(); !slices.Equal(ev, []string{"+a0", "+a1"}) {
		t.Errorf("loads: %v", ev)
	}
	run("a2") // evicts a1
	if ev := lf.takeEvents(); !slices.Equal(ev, []string{"-a1", "+a2"}) {
		t.Errorf("a2 with a0 and a1 resident: %v", ev)
	}
	run("base")
	run("a1") // evicts a0
	if ev := lf.takeEvents(); !slices.Equal(ev, []string{"-a0", "+a1"}) {
		t.Errorf("a1 with a0 and a2 resident: %v", ev)
	}

	// Hold a1 and a2 with requests that wait on the gate.
	gate := make(chan struct{})
	lf.gate = gate
	var wg sync.WaitGroup
	for _, m := range []string{"a1", "a2"} {
		wg.Add(1)
		go func() { defer wg.Done(); run(m) }()
	}
	waitFor(t, func() bool { return slices.Equal(e.srv.LoraState().Running, []string{"a1", "a2"}) })
	var code int
	var hdr http.Header
	done := make(chan struct{})
	go func() {
		defer close(done)
		code, hdr, _ = e.do("POST", "/api/generate", `{"model":"a0","prompt":"hi","stream":false}`)
	}()
	waitFor(t, func() bool { return slices.Equal(e.srv.LoraState().Waiting, []string{"a0"}) })
	if st := e.srv.LoraState(); st.MaxLoras != 2 || !slices.Equal(st.Running, []string{"a1", "a2"}) {
		t.Errorf("LoraState while a0 waits: %+v", st)
	}
	<-done
	if code != 503 || hdr.Get("Retry-After") == "" {
		t.Errorf("a0 with every slot held: %d, Retry-After %q", code, hdr.Get("Retry-After"))
	}
	if ev := lf.takeEvents(); len(ev) != 0 {
		t.Errorf("an adapter in use was evicted: %v", ev)
	}

	// A request that waits gets the slot as soon as one frees.
	go func() {
		defer close(gate)
		waitFor(t, func() bool { return len(e.srv.LoraState().Waiting) == 1 })
	}()
	run("a0")
	wg.Wait()
	if ev := lf.takeEvents(); len(ev) != 2 || ev[1] != "+a0" {
		t.Errorf("a0 after a slot freed: %v", ev)
	}
	if st := e.srv.LoraState(); len(st.Running) != 0 || len(st.Waiting) != 0 {
		t.Errorf("LoraState when idle: %+v", st)
	}
}

// TestLoraCreate: Ollama's flow for an ADAPTER (the file uploaded as a
// blob, then /api/create with from and adapters) makes a model that lists
// with its base as parent, runs on the base with the adapter, outlives a
// restart of the server, and goes with /api/delete.
func TestLoraCreate(t *testing.T) {
	e, lf := newLoraEnv(t, 1, nil)
	ctx := context.Background()
	b, err := os.ReadFile(filepath.Join(e.dir, "adapters", "a0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	if code, _, _ := e.do("HEAD", "/api/blobs/"+digest, ""); code != 404 {
		t.Errorf("HEAD of a missing blob: %d", code)
	}
	if code, _, body := e.do("POST", "/api/blobs/sha256:"+strings.Repeat("0", 64), string(b)); code != 400 || !strings.Contains(body, "digest mismatch") {
		t.Errorf("a blob with the wrong digest: %d %s", code, body)
	}
	if err := e.ollama.CreateBlob(ctx, digest, strings.NewReader(string(b))); err != nil {
		t.Fatal(err)
	}
	if code, _, _ := e.do("HEAD", "/api/blobs/"+digest, ""); code != 200 {
		t.Errorf("HEAD of the uploaded blob: %d", code)
	}
	var steps []string
	err = e.ollama.Create(ctx, &api.CreateRequest{Model: "team/sql", From: "base", Adapters: map[string]string{"sql.gguf": digest}},
		func(p api.ProgressResponse) error { steps = append(steps, p.Status); return nil })
	if err != nil || steps[len(steps)-1] != "success" {
		t.Fatalf("create: %v %v", steps, err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "team", "sql.lora.json")); err != nil {
		t.Errorf("no manifest: %v", err)
	}
	// A path in the models folder does as well.
	err = e.ollama.Create(ctx, &api.CreateRequest{Model: "plain", From: "base", Adapters: map[string]string{"a0.gguf": "adapters/a0.gguf"}},
		func(api.ProgressResponse) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		body string
		code int
		msg  string
	}{
		{`{"model":"x","from":"base"}`, 501, "LoRA adapter models only"},
		{`{"model":"x","from":"base","adapters":{"a":"adapters/a0.gguf"},"system":"s"}`, 501, "from and adapters only"},
		{`{"model":"x","from":"nope","adapters":{"a":"adapters/a0.gguf"}}`, 404, "nope"},
		{`{"model":"x","from":"base","adapters":{"a":"sha256:` + strings.Repeat("1", 64) + `"}}`, 400, "not found"},
		{`{"model":"x","from":"base","adapters":{"adapters/a0.gguf":"sha256:` + strings.Repeat("1", 64) + `"}}`, 400, "has digest"},
		{`{"model":"x","from":"team/sql","adapters":{"a":"adapters/a0.gguf"}}`, 400, "itself an adapter"},
	} {
		code, _, body := e.do("POST", "/api/create", c.body)
		if code != c.code || !strings.Contains(body, c.msg) {
			t.Errorf("create %s: %d %s; want %d %q", c.body, code, body, c.code, c.msg)
		}
	}

	listed := func(e *env) map[string]string {
		t.Helper()
		l, err := e.ollama.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, m := range l.Models {
			out[m.Name] = m.Details.ParentModel
		}
		return out
	}
	want := map[string]string{"base:latest": "", "team/sql:latest": "base:latest", "plain:latest": "base:latest"}
	if got := listed(e); !reflect.DeepEqual(got, want) {
		t.Errorf("/api/tags: %v", got)
	}
	if code, body := e.gen("team/sql"); code != 200 || lf.lastRequest(t).Adapter != "team/sql" {
		t.Errorf("generate with the created model: %d %s, adapter %q", code, body, lf.lastRequest(t).Adapter)
	}

	// A new server over the same folder has them.
	lf2 := &loraFake{fakeRunner: newFake("x"), loaded: map[string]string{}}
	e2 := newEnv(t, nil, func(c *Config) {
		c.Store = e.srv.cfg.Store
		c.Load = func(context.Context, string) (Runner, error) { return lf2, nil }
	})
	if got := listed(e2); !reflect.DeepEqual(got, want) {
		t.Errorf("/api/tags after a restart: %v", got)
	}
	if code, body := e2.gen("team/sql"); code != 200 || lf2.lastRequest(t).Adapter != "team/sql" {
		t.Errorf("generate after a restart: %d %s", code, body)
	}
	if err := e2.ollama.Delete(ctx, &api.DeleteRequest{Model: "team/sql"}); err != nil {
		t.Fatal(err)
	}
	if got := lf2.resident(); len(got) != 0 {
		t.Errorf("resident after delete: %v", got)
	}
	if code, _ := e2.gen("team/sql"); code != 404 {
		t.Errorf("generate after delete: %d", code)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "team", "sql.lora.json")); !os.IsNotExist(err) {
		t.Errorf("manifest after delete: %v", err)
	}
	e3 := newEnv(t, nil, func(c *Config) {
		c.Store = e.srv.cfg.Store
		c.Load = func(context.Context, string) (Runner, error) { return lf2, nil }
	})
	if got := listed(e3); !reflect.DeepEqual(got, map[string]string{"base:latest": "", "plain:latest": "base:latest"}) {
		t.Errorf("/api/tags after delete and restart: %v", got)
	}
}

// TestLoraConfig: Config.Adapters (hearth serve --lora) are served from
// the start; one that does not fit its base stops New with a clear error.
func TestLoraConfig(t *testing.T) {
	e, _ := newLoraEnv(t, 1, func(c *Config) {
		c.Adapters = []AdapterSpec{{Name: "sql", Base: "base", Path: filepath.Join(c.Store.Dir(), "adapters", "a0.gguf"), Scale: 0.5}}
	})
	if code, body := e.gen("sql"); code != 200 {
		t.Errorf("generate: %d %s", code, body)
	}
	if ad := e.srv.loras.lookup("sql"); ad == nil || ad.Scale != 0.5 || ad.source != "flag" {
		t.Errorf("registered as %+v", ad)
	}
	for _, c := range []struct {
		spec AdapterSpec
		want string
	}{
		{AdapterSpec{Name: "x", Base: "base", Path: "/nonexistent.gguf"}, "LoRA adapter x: invalid request: adapter file: stat /nonexistent.gguf: no such file or directory"},
		{AdapterSpec{Name: "x", Base: "nope", Path: filepath.Join(e.dir, "adapters", "a0.gguf")}, `LoRA adapter x: base model of adapter "x"`},
		{AdapterSpec{Name: "x", Base: "base", Path: filepath.Join(e.dir, "base.gguf")}, "not a LoRA adapter"},
		{AdapterSpec{Name: "base", Base: "base", Path: filepath.Join(e.dir, "adapters", "a0.gguf")}, "an adapter needs a name of its own"},
	} {
		_, err := New(Config{Store: e.srv.cfg.Store, Load: e.srv.cfg.Load, Adapters: []AdapterSpec{c.spec}, WatchInterval: -1})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: %v, want %q", c.spec, err, c.want)
		}
	}
}

// TestLoraMetricsLog: a request with an adapter has adapter=NAME on its
// access log line (model= its base) and counts in the hearth_adapter_*
// series, by adapter and base.
func TestLoraMetricsLog(t *testing.T) {
	e, _ := newLoraEnv(t, 1, func(c *Config) {
		c.Adapters = []AdapterSpec{{Name: "sql", Base: "base", Path: filepath.Join(c.Store.Dir(), "adapters", "a0.gguf")}}
	})
	e.gen("sql")
	e.gen("sql")
	e.gen("base")
	var line string
	for _, l := range strings.Split(e.logs.String(), "\n") {
		if strings.Contains(l, "msg=request") && strings.Contains(l, "path=/api/generate") {
			line = l
			break
		}
	}
	if !strings.Contains(line, "model=base:latest") || !strings.Contains(line, "adapter=sql") {
		t.Errorf("access log: %s", line)
	}
	if n := strings.Count(e.logs.String(), "adapter=sql"); n < 2 {
		t.Errorf("%d log lines name the adapter:\n%s", n, e.logs.String())
	}
	_, _, body := e.do("GET", "/metrics", "")
	for _, want := range []string{
		`hearth_adapter_requests_total{adapter="sql",code="200",model="base:latest",route="POST /api/generate"} 2`,
		`hearth_adapter_generated_tokens_total{adapter="sql",model="base:latest"} 6`,
		`hearth_adapter_prompt_tokens_total{adapter="sql",model="base:latest"}`,
		`hearth_adapter_loads_total{adapter="sql",model="base:latest"} 1`,
		`hearth_adapters_resident{model="base:latest",`,
		`hearth_max_loras 4`,
		// The base's series count the adapter's requests too.
		`hearth_http_requests_total{code="200",model="base:latest",route="POST /api/generate",`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
