package deploy

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// instruction is one Dockerfile instruction, continuation lines joined.
type instruction struct {
	cmd, args string
}

// parseDockerfile splits the Dockerfile into instructions, grouped by
// build stage (the first group is what comes before the first FROM).
func parseDockerfile(t *testing.T, path string) [][]instruction {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	stages := [][]instruction{nil}
	var cur strings.Builder
	for _, line := range strings.Split(string(b), "\n") {
		trimmed := strings.TrimSpace(line)
		if cur.Len() == 0 && (trimmed == "" || strings.HasPrefix(trimmed, "#")) {
			continue
		}
		if strings.HasSuffix(trimmed, "\\") {
			cur.WriteString(strings.TrimSuffix(trimmed, "\\") + " ")
			continue
		}
		cur.WriteString(trimmed)
		cmd, args, _ := strings.Cut(cur.String(), " ")
		cur.Reset()
		in := instruction{strings.ToUpper(cmd), strings.TrimSpace(args)}
		if in.cmd == "FROM" {
			stages = append(stages, nil)
		}
		stages[len(stages)-1] = append(stages[len(stages)-1], in)
	}
	return stages
}

// TestDockerfile holds the image's invariants that can be checked without
// building it (nothing here can run docker): a Go build stage that builds
// ./cmd/hearth as `make build` does (cgo on, for NVML's binding) with the
// module's Go, and a final stage with nothing of CUDA, a non-root user,
// the /models volume, the chart's port, HEARTH_* defaults that are serve
// flags, and hearth serve as its command. The .dockerignore keeps every
// file the build needs.
func TestDockerfile(t *testing.T) {
	stages := parseDockerfile(t, "Dockerfile")
	if len(stages) < 3 {
		t.Fatalf("%d build stages, want a build stage and a runtime stage", len(stages)-1)
	}
	var goVersion string
	for _, in := range stages[0] {
		if in.cmd == "ARG" && strings.HasPrefix(in.args, "GO_VERSION=") {
			goVersion = strings.TrimPrefix(in.args, "GO_VERSION=")
		}
	}
	mod, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(mod)
	if m == nil || goVersion != string(m[1]) {
		t.Errorf("ARG GO_VERSION=%s, go.mod says go %s", goVersion, m[1])
	}

	build, final := stages[1], stages[len(stages)-1]
	if !strings.HasPrefix(build[0].args, "golang:") {
		t.Errorf("build stage FROM %s", build[0].args)
	}
	built := false
	for _, in := range build {
		if in.cmd == "RUN" && strings.Contains(in.args, "go build") {
			built = strings.Contains(in.args, "./cmd/hearth") && strings.Contains(in.args, "CGO_ENABLED=1")
		}
	}
	if !built {
		t.Error("the build stage does not run CGO_ENABLED=1 go build ./cmd/hearth")
	}

	// The final stage.
	for _, st := range stages[1:] {
		for _, in := range st {
			if l := strings.ToLower(in.args); (in.cmd == "FROM" || in.cmd == "RUN") && (strings.Contains(l, "cuda") || strings.Contains(l, "nvidia/")) {
				t.Errorf("%s %s: nothing of CUDA belongs in the image (the toolkit mounts the driver)", in.cmd, in.args)
			}
		}
	}
	got := map[string][]string{}
	env := map[string]string{}
	for _, in := range final {
		got[in.cmd] = append(got[in.cmd], in.args)
		if in.cmd == "ENV" {
			for _, kv := range regexp.MustCompile(`(\S+)=(\S+)`).FindAllStringSubmatch(in.args, -1) {
				env[kv[1]] = kv[2]
			}
		}
	}
	user := got["USER"]
	if len(user) != 1 {
		t.Fatalf("USER %v in the final stage, want one", user)
	}
	uid, _, _ := strings.Cut(user[0], ":")
	if uid == "0" || uid == "root" || !regexp.MustCompile(`^[1-9][0-9]*$`).MatchString(uid) {
		t.Errorf("USER %s: want a numeric non-root user (runAsNonRoot checks numbers)", user[0])
	}
	if v := got["VOLUME"]; len(v) != 1 || v[0] != "/models" {
		t.Errorf("VOLUME %v", v)
	}
	var values struct {
		Service struct {
			TargetPort int `json:"targetPort"`
		} `json:"service"`
		PodSecurityContext struct {
			RunAsUser int `json:"runAsUser"`
		} `json:"podSecurityContext"`
	}
	b, err := os.ReadFile(filepath.Join(chartDir, "values.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &values); err != nil {
		t.Fatal(err)
	}
	if port := strings.TrimSpace(strings.Join(got["EXPOSE"], " ")); port != env["HEARTH_PORT"] || port != strconv.Itoa(values.Service.TargetPort) {
		t.Errorf("EXPOSE %s, HEARTH_PORT %s, chart port %d", port, env["HEARTH_PORT"], values.Service.TargetPort)
	}
	if uid != strconv.Itoa(values.PodSecurityContext.RunAsUser) {
		t.Errorf("USER %s, the chart's runAsUser %d", uid, values.PodSecurityContext.RunAsUser)
	}
	flags := serveFlags(t)
	for k := range env {
		if strings.HasPrefix(k, "HEARTH_") && !flags[envFlag(k)] {
			t.Errorf("ENV %s names no hearth serve flag", k)
		}
	}
	if env["HEARTH_HOST"] != "0.0.0.0" || env["HEARTH_MODELS"] != "/models" {
		t.Errorf("ENV %v", env)
	}
	if e := got["ENTRYPOINT"]; len(e) != 1 || !strings.Contains(e[0], "hearth") {
		t.Errorf("ENTRYPOINT %v", e)
	}
	if c := got["CMD"]; len(c) != 1 || c[0] != `["serve"]` {
		t.Errorf("CMD %v", c)
	}

	// .dockerignore drops no file of the main module's packages (a
	// folder with a go.mod of its own is another module).
	ign, err := os.ReadFile("Dockerfile.dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	var patterns []string
	for _, l := range strings.Split(string(ign), "\n") {
		if l = strings.TrimSpace(l); l != "" && !strings.HasPrefix(l, "#") {
			patterns = append(patterns, strings.TrimPrefix(l, "/"))
		}
	}
	needed := 0
	err = filepath.WalkDir("..", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel("..", p)
		if d.IsDir() {
			if rel != "." {
				if _, err := os.Stat(filepath.Join(p, "go.mod")); err == nil || strings.HasPrefix(d.Name(), ".") || strings.HasPrefix(d.Name(), "_") || d.Name() == "testdata" {
					return filepath.SkipDir
				}
			}
			return nil
		}
		if ext := filepath.Ext(p); (ext != ".go" && ext != ".s" && ext != ".ptx" && rel != "go.mod" && rel != "go.sum") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		needed++
		for _, pat := range patterns {
			if ignored(pat, filepath.ToSlash(rel)) {
				t.Errorf(".dockerignore %q drops %s, which the build needs", pat, rel)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if needed < 100 {
		t.Errorf("%d source files found: the walk is wrong", needed)
	}
}

// ignored reports whether a .dockerignore pattern excludes path: the
// pattern matches the path or a folder above it ("**/" any folders).
func ignored(pattern, path string) bool {
	parts := strings.Split(path, "/")
	for i := 1; i <= len(parts); i++ {
		prefix := strings.Join(parts[:i], "/")
		if ok, _ := filepath.Match(pattern, prefix); ok {
			return true
		}
		if rest, ok := strings.CutPrefix(pattern, "**/"); ok {
			if m, _ := filepath.Match(rest, parts[i-1]); m {
				return true
			}
		}
	}
	return false
}
