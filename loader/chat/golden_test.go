package chat

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// golden.json holds the renders of testdata/templates/*.jinja by Python's
// jinja2, configured as transformers configures it (see gen_golden.py).
type goldenFile struct {
	Now           string                 `json:"now"`
	Conversations map[string][]goldenMsg `json:"conversations"`
	Cases         []goldenCase           `json:"cases"`
}

type goldenMsg struct{ Role, Content string }

type goldenCase struct {
	Template            string         `json:"template"`
	Conversation        string         `json:"conversation"`
	BOS                 string         `json:"bos"`
	EOS                 string         `json:"eos"`
	AddGenerationPrompt bool           `json:"add_generation_prompt"`
	Extra               map[string]any `json:"extra"`
	Want                *string        `json:"want"`
	Error               *string        `json:"error"`
}

func loadGolden(t testing.TB) goldenFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "golden.json"))
	if err != nil {
		t.Fatal(err)
	}
	var g goldenFile
	if err := json.Unmarshal(b, &g); err != nil {
		t.Fatal(err)
	}
	return g
}

func loadTemplate(t testing.TB, name string) *Template {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "templates", name+".jinja"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := New(string(src))
	if err != nil {
		t.Fatalf("New(%s): %v", name, err)
	}
	return tmpl
}

func TestGolden(t *testing.T) {
	g := loadGolden(t)
	now, err := time.Parse("2006-01-02T15:04:05", g.Now)
	if err != nil {
		t.Fatal(err)
	}
	templates := map[string]*Template{}
	for _, c := range g.Cases {
		name := c.Template + "/" + c.Conversation
		if c.Extra != nil {
			extra, _ := json.Marshal(c.Extra)
			name += string(extra)
		}
		t.Run(name, func(t *testing.T) {
			tmpl := templates[c.Template]
			if tmpl == nil {
				tmpl = loadTemplate(t, c.Template)
				templates[c.Template] = tmpl
			}
			var msgs []Message
			for _, m := range g.Conversations[c.Conversation] {
				msgs = append(msgs, Message{Role: m.Role, Content: m.Content})
			}
			// The template as transformers runs it (render): Render's
			// system-message fallback is tested on its own.
			got, err := tmpl.render(context.Background(), msgs, Options{
				BOSToken: c.BOS, EOSToken: c.EOS, AddGenerationPrompt: c.AddGenerationPrompt,
				Extra: c.Extra, Now: now,
			})
			if c.Error != nil {
				var re *RaiseError
				if !errors.As(err, &re) || re.Message != *c.Error {
					t.Fatalf("got (%q, %v), want raise_exception(%q)", got, err, *c.Error)
				}
				return
			}
			if err != nil {
				t.Fatalf("Render: %v", err)
			}
			if got != *c.Want {
				t.Errorf("render differs from jinja2\n got: %q\nwant: %q", got, *c.Want)
			}
		})
	}
}
