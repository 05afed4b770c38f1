package loadgen

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
)

// pipeNet is an in-memory network (net.Pipe) for tests in a synctest
// bubble, where loopback sockets would keep the bubble from going idle and
// its fake clock from advancing.
type pipeNet struct {
	conns chan net.Conn
	done  chan struct{}
	once  sync.Once
}

func newPipeNet() *pipeNet { return &pipeNet{conns: make(chan net.Conn), done: make(chan struct{})} }

func (n *pipeNet) Accept() (net.Conn, error) {
	select {
	case c := <-n.conns:
		return c, nil
	case <-n.done:
		return nil, net.ErrClosed
	}
}

func (n *pipeNet) Close() error   { n.once.Do(func() { close(n.done) }); return nil }
func (n *pipeNet) Addr() net.Addr { return pipeAddr{} }

func (n *pipeNet) dial(ctx context.Context, _, _ string) (net.Conn, error) {
	c, s := net.Pipe()
	select {
	case n.conns <- s:
		return c, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-n.done:
		return nil, net.ErrClosed
	}
}

type pipeAddr struct{}

func (pipeAddr) Network() string { return "pipe" }
func (pipeAddr) String() string  { return "pipe" }

// fakeRequest is what the fake server read from a request.
type fakeRequest struct {
	Body struct {
		Model         string  `json:"model"`
		Stream        bool    `json:"stream"`
		MaxTokens     int     `json:"max_tokens"`
		IgnoreEOS     bool    `json:"ignore_eos"`
		Temperature   float64 `json:"temperature"`
		Prompt        string  `json:"prompt"`
		StreamOptions struct {
			IncludeUsage bool `json:"include_usage"`
		} `json:"stream_options"`
		Messages []struct {
			Role    string `json:"role"`
			Content string `json:"content"`
		} `json:"messages"`
	}
	Auth string
	Path string
}

// words is the prompt's word count: the user message (or the prompt).
func (r *fakeRequest) words() int {
	if len(r.Body.Messages) > 0 {
		return len(strings.Fields(r.Body.Messages[len(r.Body.Messages)-1].Content))
	}
	return len(strings.Fields(r.Body.Prompt))
}

// system is the system message, "" when none.
func (r *fakeRequest) system() string {
	if len(r.Body.Messages) > 1 && r.Body.Messages[0].Role == "system" {
		return r.Body.Messages[0].Content
	}
	return ""
}

// sse writes OpenAI-style server-sent events.
type sse struct {
	w  http.ResponseWriter
	rc *http.ResponseController
}

func newSSE(w http.ResponseWriter) *sse {
	w.Header().Set("Content-Type", "text/event-stream")
	w.WriteHeader(http.StatusOK)
	return &sse{w: w, rc: http.NewResponseController(w)}
}

func (s *sse) raw(text string) error {
	if _, err := fmt.Fprint(s.w, text); err != nil {
		return err
	}
	return s.rc.Flush()
}

func (s *sse) data(v any) error {
	b, _ := json.Marshal(v)
	return s.raw("data: " + string(b) + "\n\n")
}

func (s *sse) content(text string) error {
	return s.data(map[string]any{"object": "chat.completion.chunk",
		"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"content": text}, "finish_reason": nil}}})
}

func (s *sse) role() error {
	return s.data(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{"role": "assistant", "content": ""}}}})
}

func (s *sse) finish(reason string, prompt, completion int) error {
	s.data(map[string]any{"choices": []any{map[string]any{"index": 0, "delta": map[string]any{}, "finish_reason": reason}}})
	s.data(map[string]any{"choices": []any{}, "usage": map[string]int{"prompt_tokens": prompt, "completion_tokens": completion,
		"total_tokens": prompt + completion}})
	return s.raw("data: [DONE]\n\n")
}

// fakeServer serves handle on an in-memory network until the test ends;
// it returns a client for it. Call it inside a synctest bubble.
func fakeServer(t *testing.T, handle func(w http.ResponseWriter, r *http.Request, req *fakeRequest)) *http.Client {
	t.Helper()
	n := newPipeNet()
	var handlers sync.WaitGroup
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handlers.Add(1)
		defer handlers.Done()
		var req fakeRequest
		req.Auth, req.Path = r.Header.Get("Authorization"), r.URL.Path
		if r.Method == http.MethodPost {
			if err := json.NewDecoder(r.Body).Decode(&req.Body); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
		}
		handle(w, r, &req)
	})}
	served := make(chan struct{})
	go func() { defer close(served); srv.Serve(n) }()
	tr := &http.Transport{DialContext: n.dial, MaxIdleConnsPerHost: 1024}
	t.Cleanup(func() {
		tr.CloseIdleConnections()
		srv.Close()
		<-served
		handlers.Wait() // on the fake clock: sleeping handlers finish
	})
	return &http.Client{Transport: tr}
}
