package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/hearth-llm/hearth/loader/chat"
	"github.com/hearth-llm/hearth/runtime/models"
	"github.com/hearth-llm/hearth/runtime/sample"
)

// statusClientClosed is nginx's "client closed request": logged, never
// sent (nobody is listening).
const statusClientClosed = 499

// retryAfterSeconds is the Retry-After of a 503.
const retryAfterSeconds = 1

// apiError is an error with the HTTP status it should be answered with.
type apiError struct {
	status int
	msg    string
	code   string // OpenAI's error code ("model_not_found"), optional
	param  string // OpenAI's param: the request field at fault, optional
	// typ is the OpenAI error type when not the one the status gives
	// (vLLM's "NotFoundError", "InvalidUserInput" on its LoRA routes).
	typ string
	// wrapped is the sentinel the error stands for (ErrUnknownAdapter),
	// for errors.Is; optional.
	wrapped error
}

func (e *apiError) Error() string { return e.msg }

func (e *apiError) Unwrap() error { return e.wrapped }

func errorf(status int, format string, args ...any) *apiError {
	return &apiError{status: status, msg: fmt.Sprintf(format, args...)}
}

// classify maps an error to its status and the message a client sees.
func classify(err error) *apiError {
	var ae *apiError
	var mbe *http.MaxBytesError
	var raise *chat.RaiseError
	switch {
	case errors.As(err, &ae):
		return ae
	case errors.As(err, &mbe):
		return errorf(http.StatusRequestEntityTooLarge, "request body is larger than %d bytes", mbe.Limit)
	case errors.Is(err, context.Canceled):
		return errorf(statusClientClosed, "request cancelled")
	case errors.Is(err, context.DeadlineExceeded):
		return errorf(http.StatusGatewayTimeout, "request timed out")
	case errors.Is(err, models.ErrInvalidName):
		return errorf(http.StatusBadRequest, "%v", err)
	case errors.Is(err, models.ErrNotFound):
		return &apiError{status: http.StatusNotFound, msg: err.Error(), code: "model_not_found"}
	case errors.Is(err, models.ErrReadOnly):
		return errorf(http.StatusForbidden, "%v", err)
	case errors.As(err, &raise):
		return errorf(http.StatusBadRequest, "chat template: %s", raise.Message)
	case errors.Is(err, chat.ErrLimit), errors.Is(err, chat.ErrUnsupported), errors.Is(err, chat.ErrSyntax):
		return errorf(http.StatusBadRequest, "%v", err)
	case errors.Is(err, ErrInvalid), errors.Is(err, sample.ErrInvalid):
		return errorf(http.StatusBadRequest, "%v", err)
	case errors.Is(err, ErrUnsupported):
		return errorf(http.StatusNotImplemented, "%v", err)
	case errors.Is(err, ErrBusy):
		return errorf(http.StatusServiceUnavailable, "%v", err)
	}
	return errorf(http.StatusInternalServerError, "%v", err)
}

// dialect is the API a handler speaks, which decides the error shape.
type dialect int

const (
	dialectOllama dialect = iota
	dialectOpenAI
	dialectAnthropic
)

// writeError answers with err in d's shape. Nothing is written for a
// cancelled request or once the response has started (streams report
// their errors in-band).
func writeError(w http.ResponseWriter, r *http.Request, d dialect, err error) {
	ae := classify(err)
	noteError(r, ae)
	if ae.status == statusClientClosed {
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Del("Content-Length")
	if ae.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	w.WriteHeader(ae.status)
	json.NewEncoder(w).Encode(errorBody(d, ae))
}

func errorBody(d dialect, ae *apiError) any {
	switch d {
	case dialectOllama:
		return map[string]string{"error": ae.msg}
	case dialectAnthropic:
		return map[string]any{"type": "error", "error": map[string]string{"type": anthropicErrorType(ae.status), "message": ae.msg}}
	}
	typ := "invalid_request_error"
	switch {
	case ae.typ != "":
		typ = ae.typ
	case ae.status == http.StatusUnauthorized:
		typ = "authentication_error"
	case ae.status >= 500:
		typ = "api_error"
	}
	var code any
	if ae.code != "" {
		code = ae.code
	}
	var param any
	if ae.param != "" {
		param = ae.param
	}
	return map[string]any{"error": map[string]any{"message": ae.msg, "type": typ, "param": param, "code": code}}
}

// anthropicErrorType is the error type Anthropic's API gives with status.
func anthropicErrorType(status int) string {
	switch status {
	case http.StatusUnauthorized:
		return "authentication_error"
	case http.StatusForbidden:
		return "permission_error"
	case http.StatusNotFound:
		return "not_found_error"
	case http.StatusRequestEntityTooLarge:
		return "request_too_large"
	case http.StatusTooManyRequests:
		return "rate_limit_error"
	case http.StatusServiceUnavailable, 529:
		return "overloaded_error"
	case http.StatusGatewayTimeout:
		return "timeout_error"
	}
	if status >= 500 {
		return "api_error"
	}
	return "invalid_request_error"
}
