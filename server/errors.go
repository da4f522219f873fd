package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Error types of the OpenAI error body.
const (
	typeInvalidRequest = "invalid_request_error"
	typeAuthentication = "invalid_request_error" // OpenAI's own type for a bad key
	typeRateLimit      = "rate_limit_error"
	typeServer         = "server_error"
	typeTimeout        = "timeout_error"
)

// apiError is an error answered with the OpenAI error body
// {"error": {"message", "type", "param", "code"}}.
type apiError struct {
	status  int
	Message string  `json:"message"`
	Type    string  `json:"type"`
	Param   *string `json:"param"`
	Code    *string `json:"code"`

	retryAfter time.Duration // sends Retry-After when positive
	noRetry    bool          // sends x-should-retry: false
}

func (e *apiError) Error() string { return e.Message }

func ptr(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// badRequest is a 400 invalid_request_error about param.
func badRequest(param, format string, a ...any) *apiError {
	return &apiError{status: http.StatusBadRequest, Type: typeInvalidRequest, Param: ptr(param), Message: fmt.Sprintf(format, a...)}
}

// withCode sets the error code.
func (e *apiError) withCode(code string) *apiError {
	e.Code = ptr(code)
	return e
}

func notFound(format string, a ...any) *apiError {
	return &apiError{status: http.StatusNotFound, Type: typeInvalidRequest, Message: fmt.Sprintf(format, a...)}
}

func unavailable(msg string) *apiError {
	return &apiError{status: http.StatusServiceUnavailable, Type: typeServer, Message: msg, retryAfter: 5 * time.Second}
}

func internalError(msg string) *apiError {
	return &apiError{status: http.StatusInternalServerError, Type: typeServer, Message: msg, noRetry: true}
}

// writeError answers with e's status and body.
func writeError(w http.ResponseWriter, e *apiError) {
	h := w.Header()
	if e.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(int((e.retryAfter+time.Second-1)/time.Second)))
	}
	if e.noRetry {
		h.Set("X-Should-Retry", "false")
	}
	writeJSON(w, e.status, struct {
		Error *apiError `json:"error"`
	}{e})
}

// writeJSON answers with v as the JSON body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		body = []byte(`{"error":{"message":"response encoding failed","type":"server_error","param":null,"code":null}}`)
		status = http.StatusInternalServerError
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}
