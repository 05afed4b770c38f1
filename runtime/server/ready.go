package server

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultPreloadRetry is Config.PreloadRetry's default.
const DefaultPreloadRetry = 5 * time.Second

// readiness is what GET /ready reports: the preloaded models' state and
// whether the server is draining.
type readiness struct {
	draining atomic.Bool
	mu       sync.Mutex
	errs     map[string]string // by Config.Preload name: the last failure to load it
}

func (rd *readiness) note(name string, err error) {
	rd.mu.Lock()
	defer rd.mu.Unlock()
	if err == nil {
		delete(rd.errs, name)
		return
	}
	if rd.errs == nil {
		rd.errs = map[string]string{}
	}
	rd.errs[name] = err.Error()
}

// preload loads the models of Config.Preload, one after the other, and
// keeps trying every PreloadRetry those that are missing (not yet pulled,
// failed to load, unloaded by an operator) until the server closes.
func (s *Server) preload() {
	defer s.mgr.wg.Done()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.mgr.done:
			cancel()
		case <-ctx.Done():
		}
	}()
	for {
		for _, name := range s.cfg.Preload {
			if s.mgr.serving(name) {
				s.ready.note(name, nil)
				continue
			}
			err := s.preloadOne(ctx, name)
			if ctx.Err() != nil {
				return
			}
			s.ready.note(name, err)
			if err != nil {
				s.log.Warn("preload failed; trying again", "model", name, "in", s.cfg.PreloadRetry, "error", err)
			}
		}
		select {
		case <-s.mgr.done:
			return
		case <-time.After(s.cfg.PreloadRetry):
		}
	}
}

func (s *Server) preloadOne(ctx context.Context, name string) error {
	if _, err := s.mgr.pin(name); err != nil {
		return err
	}
	l, _, err := s.mgr.acquire(ctx, name)
	if err != nil {
		return err
	}
	s.mgr.release(l, -1)
	s.log.Info("model preloaded", "model", l.model.Name.Short(), "version", l.version())
	return nil
}

// Drain makes GET /ready answer 503 from now on, so that load balancers
// stop sending new requests while those in flight finish. Call it when
// shutdown begins; the server keeps serving what reaches it.
func (s *Server) Drain() { s.ready.draining.Store(true) }

// Ready reports whether the server should get traffic: it is not
// draining and every model of Config.Preload is loaded and serving.
// models maps each preloaded name to "serving", "loading", or the error
// of its last load.
func (s *Server) Ready() (ok bool, status string, models map[string]string) {
	models = map[string]string{}
	ok = true
	for _, name := range s.cfg.Preload {
		if s.mgr.serving(name) {
			models[name] = "serving"
			continue
		}
		ok = false
		s.ready.mu.Lock()
		e, failed := s.ready.errs[name]
		s.ready.mu.Unlock()
		if failed {
			models[name] = e
		} else {
			models[name] = "loading"
		}
	}
	status = "ready"
	if !ok {
		status = "loading"
	}
	if s.ready.draining.Load() {
		ok, status = false, "draining"
	}
	return ok, status, models
}

// handleReady is the readiness probe: 200 when Ready, else 503 (Kubernetes
// takes the pod out of its Service's endpoints). The liveness probe is
// /health, which answers 200 as long as the process serves HTTP.
func (s *Server) handleReady(w http.ResponseWriter, r *http.Request) {
	ok, status, models := s.Ready()
	code := http.StatusOK
	if !ok {
		code = http.StatusServiceUnavailable
	}
	writeJSON(w, code, map[string]any{"status": status, "models": models})
}
