package deploy

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	chart "helm.sh/helm/v4/pkg/chart/v2"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"sigs.k8s.io/yaml"
)

const (
	chartDir    = "helm/hearth"
	releaseName = "demo"
	namespace   = "llm"
	fullname    = "demo-hearth" // hearth.fullname of releaseName
)

// -manifests DIR writes each rendering's manifests to DIR/NAME.yaml, for
// reading: go test -run Chart -args -manifests /tmp/hearth-manifests
var manifestsDir = flag.String("manifests", "", "write the rendered manifests to this folder")

// object is one rendered manifest: where it came from, its kind and name,
// and its JSON.
type object struct {
	source, apiVersion, kind, name string
	json                           []byte
}

func (o object) String() string { return o.kind + "/" + o.name }

// loadChart loads the chart as helm install does.
func loadChart(t *testing.T) *chart.Chart {
	t.Helper()
	c, err := loader.LoadDir(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// valuesFile reads a values file of the chart's ci/ folder ("" for none:
// the defaults alone).
func valuesFile(t *testing.T, name string) map[string]any {
	t.Helper()
	if name == "" {
		return map[string]any{}
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "ci", name))
	if err != nil {
		t.Fatal(err)
	}
	var v map[string]any
	if err := yaml.UnmarshalStrict(b, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

// render renders the chart with vals over its defaults, as `helm template
// demo deploy/helm/hearth -n llm` does, and splits the manifests into
// objects (NOTES.txt apart), sorted by kind and name.
func render(c *chart.Chart, vals map[string]any) ([]object, string, error) {
	caps := common.DefaultCapabilities.Copy()
	top, err := util.ToRenderValues(c, vals, common.ReleaseOptions{
		Name: releaseName, Namespace: namespace, Revision: 1, IsInstall: true,
	}, caps)
	if err != nil {
		return nil, "", err
	}
	files, err := engine.Render(c, top)
	if err != nil {
		return nil, "", err
	}
	var objs []object
	var notes string
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		text := files[name]
		if strings.HasSuffix(name, "NOTES.txt") {
			notes = text
			continue
		}
		for i, doc := range regexp.MustCompile(`(?m)^---\s*$`).Split(text, -1) {
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue
			}
			// Strict: duplicate keys fail.
			j, err := yaml.YAMLToJSONStrict([]byte(doc))
			if err != nil {
				return nil, "", fmt.Errorf("%s #%d: %w\n%s", name, i, err, doc)
			}
			var head struct {
				APIVersion string `json:"apiVersion"`
				Kind       string `json:"kind"`
				Metadata   struct {
					Name string `json:"name"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(j, &head); err != nil {
				return nil, "", fmt.Errorf("%s #%d: %w", name, i, err)
			}
			objs = append(objs, object{name, head.APIVersion, head.Kind, head.Metadata.Name, j})
		}
	}
	sort.Slice(objs, func(i, j int) bool { return objs[i].String() < objs[j].String() })
	return objs, notes, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

// kinds maps each kind the chart may render to its API version and a new
// value of its Go type. Kubernetes' own kinds are k8s.io/api's types, the
// ServiceMonitor the Prometheus Operator's; the other custom resources
// have no Go types that come without their projects' whole dependency
// trees, so crd_types_test.go declares the fields of their published
// types that the chart uses, with the same JSON names.
var kinds = map[string]struct {
	apiVersion string
	new        func() any
}{
	"Deployment":              {"apps/v1", func() any { return new(appsv1.Deployment) }},
	"Service":                 {"v1", func() any { return new(corev1.Service) }},
	"Secret":                  {"v1", func() any { return new(corev1.Secret) }},
	"PersistentVolumeClaim":   {"v1", func() any { return new(corev1.PersistentVolumeClaim) }},
	"Job":                     {"batch/v1", func() any { return new(batchv1.Job) }},
	"HorizontalPodAutoscaler": {"autoscaling/v2", func() any { return new(autoscalingv2.HorizontalPodAutoscaler) }},
	"ServiceMonitor":          {"monitoring.coreos.com/v1", func() any { return new(monitoringv1.ServiceMonitor) }},
	"ScaledObject":            {"keda.sh/v1alpha1", func() any { return new(ScaledObject) }},
	"InferencePool":           {"inference.networking.k8s.io/v1", func() any { return new(InferencePool) }},
	"ServingRuntime":          {"serving.kserve.io/v1alpha1", func() any { return new(ServingRuntime) }},
}

// decode decodes o strictly into its Go type: a field the type lacks
// fails, as the API server's strict field validation would.
func decode(o object) (any, error) {
	k, ok := kinds[o.kind]
	if !ok {
		return nil, fmt.Errorf("%s: a kind the test does not know", o)
	}
	if o.apiVersion != k.apiVersion {
		return nil, fmt.Errorf("%s: apiVersion %s, want %s", o, o.apiVersion, k.apiVersion)
	}
	v := k.new()
	dec := json.NewDecoder(bytes.NewReader(o.json))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return nil, fmt.Errorf("%s (%s): %w", o, o.source, err)
	}
	return v, nil
}

// rendered is one rendering, decoded.
type rendered struct {
	objs  []object
	typed map[string]any // by kind/name
	notes string
}

func renderDecoded(t *testing.T, c *chart.Chart, vals map[string]any) rendered {
	t.Helper()
	objs, notes, err := render(c, vals)
	if err != nil {
		t.Fatal(err)
	}
	if *manifestsDir != "" {
		var b bytes.Buffer
		for _, o := range objs {
			y, err := yaml.JSONToYAML(o.json)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(&b, "---\n# %s\n%s", o.source, y)
		}
		fmt.Fprintf(&b, "---\n# NOTES.txt\n%s", regexp.MustCompile(`(?m)^`).ReplaceAllString(notes, "# "))
		if err := os.MkdirAll(*manifestsDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(*manifestsDir, t.Name()+".yaml"), b.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r := rendered{objs: objs, typed: map[string]any{}, notes: notes}
	for _, o := range objs {
		v, err := decode(o)
		if err != nil {
			t.Fatal(err)
		}
		if _, dup := r.typed[o.String()]; dup {
			t.Fatalf("%s rendered twice", o)
		}
		r.typed[o.String()] = v
	}
	return r
}

func get[T any](t *testing.T, r rendered, kind string) T {
	t.Helper()
	v, ok := r.typed[kind+"/"+fullname]
	if !ok {
		t.Fatalf("no %s/%s in %v", kind, fullname, r.objs)
	}
	return v.(T)
}

// serveFlags is the flags of hearth serve, read from its source (this
// module does not import hearth's), with pull's.
func serveFlags(t *testing.T) map[string]bool {
	t.Helper()
	flags := map[string]bool{}
	for _, f := range []string{"../cmd/hearth/serve.go", "../cmd/hearth/gpulayers.go"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range regexp.MustCompile(`fs\.[A-Z][A-Za-z0-9]*\(\s*"([a-z0-9-]+)"`).FindAllSubmatch(b, -1) {
			flags[string(m[1])] = true
		}
	}
	if len(flags) < 20 || !flags["kv-budget"] || !flags["shutdown-grace"] || !flags["models"] {
		t.Fatalf("serve flags read from the source: %v", flags)
	}
	return flags
}

// envFlag is the flag that HEARTH_NAME sets.
func envFlag(name string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(name, "HEARTH_")), "_", "-")
}

func envOf(c corev1.Container) map[string]string {
	m := map[string]string{}
	for _, e := range c.Env {
		m[e.Name] = e.Value
	}
	return m
}

// checkEnv: every HEARTH_ variable of a serve container is a serve flag,
// and those the probes and the drain depend on are set.
func checkEnv(t *testing.T, what string, c corev1.Container, flags map[string]bool) map[string]string {
	t.Helper()
	env := envOf(c)
	for name := range env {
		if strings.HasPrefix(name, "HEARTH_") && !flags[envFlag(name)] {
			t.Errorf("%s: %s names no hearth serve flag", what, name)
		}
	}
	for _, need := range []string{"HEARTH_HOST", "HEARTH_PORT", "HEARTH_MODELS", "HEARTH_PUBLIC_METRICS", "HEARTH_SHUTDOWN_GRACE"} {
		if env[need] == "" {
			t.Errorf("%s: %s not set", what, need)
		}
	}
	if env["HEARTH_HOST"] != "0.0.0.0" || env["HEARTH_PUBLIC_METRICS"] != "true" {
		t.Errorf("%s: HEARTH_HOST %q HEARTH_PUBLIC_METRICS %q", what, env["HEARTH_HOST"], env["HEARTH_PUBLIC_METRICS"])
	}
	if (env["HEARTH_API_KEY_FILE"] == "") == (env["HEARTH_INSECURE"] != "true") {
		t.Errorf("%s: want either a key file or HEARTH_INSECURE: %v", what, env)
	}
	return env
}

func probePath(p *corev1.Probe) string {
	if p == nil || p.HTTPGet == nil {
		return ""
	}
	return p.HTTPGet.Path
}

// checkDeployment holds the invariants of every rendering: pods select
// themselves, run as non-root on a read-only root, probe /ready and
// /health, and outlast their drain.
func checkDeployment(t *testing.T, r rendered, flags map[string]bool) (*appsv1.Deployment, map[string]string) {
	t.Helper()
	d := get[*appsv1.Deployment](t, r, "Deployment")
	pod := d.Spec.Template
	sel := labels.SelectorFromSet(d.Spec.Selector.MatchLabels)
	if !sel.Matches(labels.Set(pod.Labels)) {
		t.Errorf("Deployment selector %v does not select its pods %v", d.Spec.Selector.MatchLabels, pod.Labels)
	}
	psc := pod.Spec.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Errorf("pod security context %+v: want non-root", psc)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]
	all := append(slices.Clone(pod.Spec.InitContainers), c)
	for _, x := range all {
		sc := x.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
			t.Errorf("container %s security context %+v", x.Name, sc)
		}
		mounted := map[string]bool{}
		for _, m := range x.VolumeMounts {
			mounted[m.MountPath] = true
		}
		if !mounted["/models"] || !mounted["/tmp"] {
			t.Errorf("container %s mounts %v: want /models and /tmp", x.Name, x.VolumeMounts)
		}
	}
	if len(c.Args) == 0 || c.Args[0] != "serve" {
		t.Errorf("args %v", c.Args)
	}
	for _, a := range c.Args[min(1, len(c.Args)):] { // --flag=value, each a serve flag
		name, _, _ := strings.Cut(strings.TrimPrefix(a, "--"), "=")
		if !strings.HasPrefix(a, "--") || !flags[name] {
			t.Errorf("argument %q is no serve flag", a)
		}
	}
	env := checkEnv(t, "Deployment", c, flags)
	if len(c.Ports) != 1 || c.Ports[0].Name != "http" || fmt.Sprint(c.Ports[0].ContainerPort) != env["HEARTH_PORT"] {
		t.Errorf("ports %v, HEARTH_PORT %s", c.Ports, env["HEARTH_PORT"])
	}
	if probePath(c.ReadinessProbe) != "/ready" || probePath(c.LivenessProbe) != "/health" {
		t.Errorf("readiness %q liveness %q", probePath(c.ReadinessProbe), probePath(c.LivenessProbe))
	}
	grace, err := time.ParseDuration(env["HEARTH_SHUTDOWN_GRACE"])
	if err != nil {
		t.Fatal(err)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil || c.Lifecycle.PreStop.Sleep == nil {
		t.Fatalf("no preStop sleep: %+v", c.Lifecycle)
	}
	pre := time.Duration(c.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	term := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if term <= pre+grace {
		t.Errorf("terminationGracePeriodSeconds %v not beyond preStop %v + --shutdown-grace %v", term, pre, grace)
	}
	// Init containers pull each model (and nothing else).
	for _, ic := range pod.Spec.InitContainers {
		if len(ic.Args) != 4 || ic.Args[0] != "pull" || ic.Args[2] != "--progress" || ic.Args[3] != "never" {
			t.Errorf("init container %s args %v", ic.Name, ic.Args)
		}
		if envOf(ic)["HEARTH_MODELS"] != "/models" {
			t.Errorf("init container %s env %v", ic.Name, ic.Env)
		}
	}

	svc := get[*corev1.Service](t, r, "Service")
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(pod.Labels)) {
		t.Errorf("Service selector %v does not select the pods %v", svc.Spec.Selector, pod.Labels)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort.StrVal != "http" {
		t.Errorf("Service ports %v", svc.Spec.Ports)
	}
	return d, env
}

func objectList(objs []object) string {
	var b strings.Builder
	for _, o := range objs {
		fmt.Fprintf(&b, "  %-24s %-32s %-34s %s\n", o.kind, o.name, o.apiVersion, o.source)
	}
	return b.String()
}

// TestChartDefaults renders the chart with its default values: a
// Deployment of one CPU pod, its Service and the generated API key.
func TestChartDefaults(t *testing.T) {
	c := loadChart(t)
	flags := serveFlags(t)
	r := renderDecoded(t, c, valuesFile(t, ""))
	t.Logf("default values: %d objects\n%s", len(r.objs), objectList(r.objs))
	var got []string
	for _, o := range r.objs {
		got = append(got, o.String())
	}
	want := []string{"Deployment/demo-hearth", "Secret/demo-hearth-api-key", "Service/demo-hearth"}
	if !slices.Equal(got, want) {
		t.Errorf("objects %v, want %v", got, want)
	}
	d, env := checkDeployment(t, r, flags)
	if *d.Spec.Replicas != 1 {
		t.Errorf("replicas %d", *d.Spec.Replicas)
	}
	ctr := d.Spec.Template.Spec.Containers[0]
	if _, ok := ctr.Resources.Limits["nvidia.com/gpu"]; ok || env["HEARTH_DEVICE"] != "cpu" {
		t.Errorf("a GPU by default: %v, HEARTH_DEVICE %s", ctr.Resources.Limits, env["HEARTH_DEVICE"])
	}
	if len(d.Spec.Template.Spec.InitContainers) != 0 || env["HEARTH_PRELOAD"] != "" {
		t.Errorf("pulls or preloads by default: %v %q", d.Spec.Template.Spec.InitContainers, env["HEARTH_PRELOAD"])
	}
	if d.Spec.Template.Spec.Volumes[0].EmptyDir == nil {
		t.Errorf("models volume %+v: want an emptyDir", d.Spec.Template.Spec.Volumes[0])
	}
	sec := r.typed["Secret/demo-hearth-api-key"].(*corev1.Secret)
	if len(sec.Data["api-key"]) != 40 || env["HEARTH_API_KEY_FILE"] != "/etc/hearth/api-key" {
		t.Errorf("generated key of %d bytes, key file %q", len(sec.Data["api-key"]), env["HEARTH_API_KEY_FILE"])
	}
	if !strings.Contains(r.notes, "port-forward svc/demo-hearth") {
		t.Errorf("NOTES.txt:\n%s", r.notes)
	}
}

// TestChartGPU renders ci/gpu-values.yaml: a GPU per pod, models pulled
// into a shared volume and preloaded, an HPA on queue depth, a
// ServiceMonitor and an InferencePool.
func TestChartGPU(t *testing.T) {
	c := loadChart(t)
	flags := serveFlags(t)
	r := renderDecoded(t, c, valuesFile(t, "gpu-values.yaml"))
	var pullJob string
	for _, o := range r.objs {
		if o.kind == "Job" {
			pullJob = o.name
		}
	}
	t.Logf("ci/gpu-values.yaml: %d objects\n%s", len(r.objs), objectList(r.objs))
	var got []string
	for _, o := range r.objs {
		got = append(got, o.String())
	}
	want := []string{"Deployment/demo-hearth", "HorizontalPodAutoscaler/demo-hearth", "InferencePool/demo-hearth",
		"Job/" + pullJob, "PersistentVolumeClaim/demo-hearth-models", "Secret/demo-hearth-api-key", "Service/demo-hearth", "ServiceMonitor/demo-hearth"}
	if !slices.Equal(got, want) {
		t.Errorf("objects %v, want %v", got, want)
	}
	d, env := checkDeployment(t, r, flags)
	pod := d.Spec.Template
	ctr := pod.Spec.Containers[0]
	if q := ctr.Resources.Limits["nvidia.com/gpu"]; q.Value() != 1 || env["HEARTH_DEVICE"] != "cuda" {
		t.Errorf("GPU limit %v, HEARTH_DEVICE %s", ctr.Resources.Limits, env["HEARTH_DEVICE"])
	}
	if want := []string{"serve", "--max-loras=4", "--lora=sql-lora=llama3.2:1b:/models/adapters/sql.gguf:0.8"}; !slices.Equal(ctr.Args, want) {
		t.Errorf("args %q, want %q", ctr.Args, want)
	}
	if q := ctr.Resources.Limits["memory"]; q.String() != "32Gi" {
		t.Errorf("memory limit %v: the values' limits are kept beside the GPU", q)
	}
	if pod.Spec.RuntimeClassName == nil || *pod.Spec.RuntimeClassName != "nvidia" {
		t.Errorf("runtimeClassName %v", pod.Spec.RuntimeClassName)
	}
	tolerated := false
	for _, tol := range pod.Spec.Tolerations {
		tolerated = tolerated || tol.Key == "nvidia.com/gpu"
	}
	if !tolerated {
		t.Errorf("tolerations %v", pod.Spec.Tolerations)
	}
	if d.Spec.Replicas != nil {
		t.Errorf("replicas %d set beside an autoscaler", *d.Spec.Replicas)
	}
	// The claim is filled once by the Job, one pull after the other; the
	// pods preload (and are unready until the files are there).
	job := r.typed["Job/"+pullJob].(*batchv1.Job)
	jp := job.Spec.Template.Spec
	var pulled []string
	for _, x := range append(slices.Clone(jp.InitContainers), jp.Containers...) {
		if len(x.Args) != 4 || x.Args[0] != "pull" || x.Args[3] != "never" || envOf(x)["HEARTH_MODELS"] != "/models" {
			t.Errorf("pull container %+v", x)
		}
		pulled = append(pulled, x.Args[1])
	}
	if !slices.Equal(pulled, []string{"llama3.2:1b", "qwen3:0.6b"}) || env["HEARTH_PRELOAD"] != "llama3.2:1b,qwen3:0.6b" ||
		len(pod.Spec.InitContainers) != 0 {
		t.Errorf("pulled %v by the Job, preloaded %q, init containers %v", pulled, env["HEARTH_PRELOAD"], pod.Spec.InitContainers)
	}
	if !strings.HasPrefix(pullJob, "demo-hearth-pull-") || jp.RestartPolicy != corev1.RestartPolicyOnFailure ||
		jp.Volumes[0].PersistentVolumeClaim == nil || jp.Volumes[0].PersistentVolumeClaim.ClaimName != "demo-hearth-models" ||
		jp.SecurityContext == nil || !*jp.SecurityContext.RunAsNonRoot {
		t.Errorf("pull Job %s: %+v", pullJob, jp)
	}
	if env["HEARTH_KV_TYPE"] != "q8_0" || env["HEARTH_KV_BUDGET"] != "8GiB" {
		t.Errorf("server env %v", env)
	}
	pvc := r.typed["PersistentVolumeClaim/demo-hearth-models"].(*corev1.PersistentVolumeClaim)
	if !slices.Equal(pvc.Spec.AccessModes, []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}) ||
		pvc.Annotations["helm.sh/resource-policy"] != "keep" {
		t.Errorf("models claim %+v", pvc)
	}
	if v := pod.Spec.Volumes[0]; v.PersistentVolumeClaim == nil || v.PersistentVolumeClaim.ClaimName != "demo-hearth-models" {
		t.Errorf("models volume %+v", v)
	}

	hpa := get[*autoscalingv2.HorizontalPodAutoscaler](t, r, "HorizontalPodAutoscaler")
	if hpa.Spec.ScaleTargetRef.Kind != "Deployment" || hpa.Spec.ScaleTargetRef.Name != d.Name ||
		*hpa.Spec.MinReplicas != 2 || hpa.Spec.MaxReplicas != 16 {
		t.Errorf("HPA %+v", hpa.Spec)
	}
	m := hpa.Spec.Metrics[0]
	if m.Type != autoscalingv2.PodsMetricSourceType || m.Pods.Metric.Name != "hearth_queue_depth" ||
		m.Pods.Target.Type != autoscalingv2.AverageValueMetricType || m.Pods.Target.AverageValue.Value() != 4 {
		t.Errorf("HPA metric %+v", m)
	}

	sm := get[*monitoringv1.ServiceMonitor](t, r, "ServiceMonitor")
	svc := get[*corev1.Service](t, r, "Service")
	if !labels.SelectorFromSet(sm.Spec.Selector.MatchLabels).Matches(labels.Set(svc.Labels)) ||
		len(sm.Spec.Endpoints) != 1 || sm.Spec.Endpoints[0].Port != svc.Spec.Ports[0].Name || sm.Spec.Endpoints[0].Path != "/metrics" {
		t.Errorf("ServiceMonitor %+v does not scrape Service %v", sm.Spec, svc.Labels)
	}
	if sm.Labels["release"] != "kube-prometheus-stack" {
		t.Errorf("ServiceMonitor labels %v", sm.Labels)
	}

	pool := get[*InferencePool](t, r, "InferencePool")
	if !labels.SelectorFromSet(pool.Spec.Selector.MatchLabels).Matches(labels.Set(pod.Labels)) {
		t.Errorf("InferencePool selector %v does not select the pods %v", pool.Spec.Selector.MatchLabels, pod.Labels)
	}
	if len(pool.Spec.TargetPorts) != 1 || pool.Spec.TargetPorts[0].Number != ctr.Ports[0].ContainerPort {
		t.Errorf("InferencePool targetPorts %v, container port %d", pool.Spec.TargetPorts, ctr.Ports[0].ContainerPort)
	}
	if ep := pool.Spec.EndpointPickerRef; ep == nil || ep.Name != "hearth-epp" || ep.Port == nil || ep.Port.Number != 9002 || ep.FailureMode != "FailClose" {
		t.Errorf("endpointPickerRef %+v", pool.Spec.EndpointPickerRef)
	}
	if pod.Labels["inference.networking.k8s.io/engine-type"] != "vllm" {
		t.Errorf("pod labels %v: the picker reads vLLM's metric names", pod.Labels)
	}
	if !strings.Contains(r.notes, "custom.metrics.k8s.io") || !strings.Contains(r.notes, "InferencePool demo-hearth") {
		t.Errorf("NOTES.txt:\n%s", r.notes)
	}
}

// TestChartKEDAKServe renders ci/keda-kserve-values.yaml: a KEDA
// ScaledObject instead of the HPA, a KServe ServingRuntime, an existing
// key Secret and models claim.
func TestChartKEDAKServe(t *testing.T) {
	c := loadChart(t)
	flags := serveFlags(t)
	r := renderDecoded(t, c, valuesFile(t, "keda-kserve-values.yaml"))
	t.Logf("ci/keda-kserve-values.yaml: %d objects\n%s", len(r.objs), objectList(r.objs))
	var got []string
	for _, o := range r.objs {
		got = append(got, o.String())
	}
	want := []string{"Deployment/demo-hearth", "ScaledObject/demo-hearth", "Service/demo-hearth",
		"ServiceMonitor/demo-hearth", "ServingRuntime/demo-hearth"}
	if !slices.Equal(got, want) {
		t.Errorf("objects %v, want %v", got, want)
	}
	d, env := checkDeployment(t, r, flags)
	if env["HEARTH_PRELOAD"] != "llama3.2:1b" || len(d.Spec.Template.Spec.InitContainers) != 0 {
		t.Errorf("preload %q, init containers %v", env["HEARTH_PRELOAD"], d.Spec.Template.Spec.InitContainers)
	}
	vols := d.Spec.Template.Spec.Volumes
	if vols[0].PersistentVolumeClaim == nil || vols[0].PersistentVolumeClaim.ClaimName != "models-ro" {
		t.Errorf("models volume %+v", vols[0])
	}
	key := vols[len(vols)-1]
	if key.Secret == nil || key.Secret.SecretName != "hearth-key" || key.Secret.Items[0].Key != "token" {
		t.Errorf("key volume %+v", key)
	}

	so := get[*ScaledObject](t, r, "ScaledObject")
	if so.Spec.ScaleTargetRef.Name != d.Name || *so.Spec.MinReplicaCount != 1 || *so.Spec.MaxReplicaCount != 8 || len(so.Spec.Triggers) != 1 {
		t.Errorf("ScaledObject %+v", so.Spec)
	}
	tr := so.Spec.Triggers[0]
	wantQuery := `sum(hearth_queue_depth{namespace="llm",service="demo-hearth"})`
	if tr.Type != "prometheus" || tr.Metadata["query"] != wantQuery || tr.Metadata["threshold"] != "4" ||
		tr.MetricType != "AverageValue" || tr.AuthenticationRef == nil || tr.AuthenticationRef.Name != "prometheus-auth" {
		t.Errorf("trigger %+v", tr)
	}

	sr := get[*ServingRuntime](t, r, "ServingRuntime")
	if len(sr.Spec.SupportedModelFormats) != 1 || sr.Spec.SupportedModelFormats[0].Name != "gguf" || len(sr.Spec.Containers) != 1 {
		t.Fatalf("ServingRuntime %+v", sr.Spec)
	}
	kc := sr.Spec.Containers[0]
	kenv := checkEnv(t, "ServingRuntime", kc, flags)
	if kc.Name != "kserve-container" || kenv["HEARTH_MODELS"] != "/mnt/models" ||
		probePath(kc.ReadinessProbe) != "/ready" || probePath(kc.LivenessProbe) != "/health" {
		t.Errorf("ServingRuntime container %+v", kc)
	}
}

// TestChartRefuses: values that cannot work fail the rendering with a
// message instead of making manifests.
func TestChartRefuses(t *testing.T) {
	c := loadChart(t)
	for _, tc := range []struct {
		name string
		vals string
		want string
	}{
		{"unknown autoscaler", `{autoscaling: {mode: vpa}}`, `autoscaling.mode "vpa"`},
	} {
		var vals map[string]any
		if err := yaml.Unmarshal([]byte(tc.vals), &vals); err != nil {
			t.Fatal(err)
		}
		_, _, err := render(c, vals)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
	}
}

// TestChartLint runs helm lint's rules (chart file, values, templates,
// deprecated APIs) with each values file.
func TestChartLint(t *testing.T) {
	for _, f := range []string{"", "gpu-values.yaml", "keda-kserve-values.yaml"} {
		res := lint.RunAll(chartDir, valuesFile(t, f), namespace)
		for _, m := range res.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("lint (%q): %s", f, m)
			} else {
				t.Logf("lint (%q): %s", f, m)
			}
		}
	}
}

// TestChartPullPerPod: without a claim each pod pulls the models into its
// emptyDir in init containers, and preloads them.
func TestChartPullPerPod(t *testing.T) {
	c := loadChart(t)
	var vals map[string]any
	if err := yaml.Unmarshal([]byte(`{models: {pull: [llama3.2:1b, "https://huggingface.co/o/r/resolve/main/m.gguf"], preload: [llama3.2:1b]}}`), &vals); err != nil {
		t.Fatal(err)
	}
	r := renderDecoded(t, c, vals)
	d, env := checkDeployment(t, r, serveFlags(t))
	for _, o := range r.objs {
		if o.kind == "Job" || o.kind == "PersistentVolumeClaim" {
			t.Errorf("%s without a claim", o)
		}
	}
	var pulled []string
	for _, ic := range d.Spec.Template.Spec.InitContainers {
		pulled = append(pulled, ic.Args[1])
	}
	if !slices.Equal(pulled, []string{"llama3.2:1b", "https://huggingface.co/o/r/resolve/main/m.gguf"}) || env["HEARTH_PRELOAD"] != "llama3.2:1b" {
		t.Errorf("pulled %v, preloaded %q", pulled, env["HEARTH_PRELOAD"])
	}
	if v := d.Spec.Template.Spec.Volumes[0]; v.EmptyDir == nil || v.EmptyDir.SizeLimit.String() != "20Gi" {
		t.Errorf("models volume %+v", v)
	}
}
