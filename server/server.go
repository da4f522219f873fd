// Package server is an OpenAI-compatible HTTP API over an [engine.Engine]:
// GET /v1/models, POST /v1/completions and POST /v1/chat/completions, with
// server-sent event streaming, plus GET /health and GET /metrics
// (Prometheus).
//
// The server turns text into token ids (tokenizer and chat template),
// checks every request field strictly (a known field of the wrong type or
// out of range is a 400 naming it, an unknown field is ignored), hands
// the ids to the engine and turns the tokens it returns back into text,
// holding back what may still become a stop string or an incomplete UTF-8
// character. Errors use the OpenAI body
// {"error": {"message", "type", "param", "code"}}.
//
// With API keys configured every /v1 path and /metrics need
// "Authorization: Bearer KEY"; the key is checked before the body is read.
// A server bound to a loopback address should list its host names in
// Config.AllowedHosts, which refuses other Host headers (DNS rebinding).
// No CORS headers are sent.
package server

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"os"
	"runtime/debug"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/tokenizer"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Config holds the server's settings. Zero fields take the defaults
// documented on each.
type Config struct {
	// ModelID is the id /v1/models lists and requests name. Required.
	ModelID string
	// Aliases are more names requests may use for the model.
	Aliases []string
	// APIKeys, when not empty, are the accepted bearer tokens.
	APIKeys []string
	// AllowedHosts, when not empty, are the only accepted Host header
	// values (host:port, compared without case). A server on a loopback
	// address should list localhost, 127.0.0.1 and [::1] with its port.
	AllowedHosts []string
	// MaxBodyBytes bounds a request body (413 beyond). Default 8 MiB.
	MaxBodyBytes int64
	// MaxHeaderBytes bounds the request line and headers (431 beyond).
	// Default 64 KiB.
	MaxHeaderBytes int
	// RequestTimeout bounds one generation request from its arrival to
	// its last byte. Default 10 minutes; negative means none.
	RequestTimeout time.Duration
	// WriteTimeout bounds each write to a client; a client that reads
	// nothing for that long is cut off and its request cancelled.
	// Default 30 s.
	WriteTimeout time.Duration
	// PingInterval is the time between SSE keep-alive comments while a
	// stream waits for tokens. Default 15 s.
	PingInterval time.Duration
	// Logger receives one line per request (no prompt or output text).
	// Default: slog.Default().
	Logger *slog.Logger
	// Registry is where the metrics are registered; /metrics serves
	// them. Default: a new registry with the Go and process collectors.
	Registry *prometheus.Registry
}

// Backend is what a ready server serves: the engine and the text side of
// the model.
type Backend struct {
	Engine *engine.Engine
	// Adapters are more models served beside the base, by name: LoRA
	// adapters of the engine's model, applied on the fly to the requests
	// that name them (engine.Request.Adapter), batched with all others. A
	// request's model field picks one; /v1/models lists them with the base
	// as parent.
	Adapters  map[string]*model.LowRank
	Tokenizer *tokenizer.Tokenizer
	// Template renders chat requests. The rendered text is encoded with
	// the tokenizer's special tokens added when ChatAddSpecial is set
	// (for a template without BOS markup, such as chat.Default), and
	// as it is otherwise (Hugging Face's apply_chat_template).
	Template       *chat.Template
	ChatAddSpecial bool
	// SpecialTokens are the template variables bos_token, eos_token and
	// the like, by name.
	SpecialTokens map[string]string

	anchor   int         // an ordinary token to decode others after; -1: none
	tools    *toolFormat // the template's tool-call markup; nil: none
	grammars *grammars   // response_format's compiled schemas

	maxTokBytes int           // the most text bytes one token stands for (promptbound.go)
	promptSem   chan struct{} // places for requests being read, decoded and tokenized
	promptWait  *atomic.Int64 // requests waiting for one
}

// state is the server's phase.
type state int32

const (
	stateLoading state = iota
	stateReady
	stateDraining
)

// Server is the HTTP API. Create it with New, serve Handler, call Ready
// once the model is loaded and Drain when shutting down.
type Server struct {
	cfg     Config
	log     *slog.Logger
	keys    [][sha256.Size]byte
	hosts   map[string]bool
	state   atomic.Int32
	backend atomic.Pointer[Backend]
	metrics *metrics
	created int64
	mux     map[string]map[string]http.HandlerFunc
	// eventFilter, when set, stands between the engine's events and the
	// response (a test seam: tests replace the generated tokens).
	eventFilter func(context.Context, <-chan engine.Event) <-chan engine.Event
}

// New returns a server in the loading state: /health answers 503 and the
// API 503 until Ready is called.
func New(cfg Config) (*Server, error) {
	if cfg.ModelID == "" {
		return nil, errors.New("server: Config.ModelID is required")
	}
	if cfg.MaxBodyBytes == 0 {
		cfg.MaxBodyBytes = 8 << 20
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = 64 << 10
	}
	if cfg.RequestTimeout == 0 {
		cfg.RequestTimeout = 10 * time.Minute
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = 30 * time.Second
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = 15 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{cfg: cfg, log: cfg.Logger, created: time.Now().Unix()}
	for _, k := range cfg.APIKeys {
		if k == "" {
			return nil, errors.New("server: an API key is empty")
		}
		s.keys = append(s.keys, sha256.Sum256([]byte(k)))
	}
	if len(cfg.AllowedHosts) > 0 {
		s.hosts = map[string]bool{}
		for _, h := range cfg.AllowedHosts {
			s.hosts[strings.ToLower(h)] = true
		}
	}
	reg := cfg.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
		reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	m, err := newMetrics(reg, s)
	if err != nil {
		return nil, err
	}
	s.metrics = m
	s.mux = map[string]map[string]http.HandlerFunc{
		"/v1/models":           {"GET": s.handleModels},
		"/v1/chat/completions": {"POST": s.handleGeneration(true, s.chatPrompt)},
		"/v1/completions":      {"POST": s.handleGeneration(false, s.completionPrompt)},
		"/health":              {"GET": s.handleHealth},
		"/metrics":             {"GET": m.handler.ServeHTTP},
	}
	return s, nil
}

// Ready starts serving b.
func (s *Server) Ready(b Backend) error {
	if b.Engine == nil || b.Tokenizer == nil || b.Template == nil {
		return errors.New("server: Backend needs an engine, a tokenizer and a template")
	}
	for name, a := range b.Adapters {
		switch {
		case a == nil:
			return fmt.Errorf("server: adapter %q is nil", name)
		case name == s.cfg.ModelID || slices.Contains(s.cfg.Aliases, name):
			return fmt.Errorf("server: adapter %q has the name of the base model", name)
		}
	}
	b.anchor = -1
	b.tools = toolFormatOf(b.Template.Source())
	b.grammars = newGrammars()
	b.maxTokBytes = maxTokenBytes(b.Tokenizer)
	ec := b.Engine.Config()
	b.promptSem = make(chan struct{}, max(1, ec.MaxBatch))
	b.promptWait = new(atomic.Int64)
	if ids := b.Tokenizer.Encode("a", false); len(ids) > 0 {
		b.anchor = ids[len(ids)-1]
	}
	s.backend.Store(&b)
	s.state.CompareAndSwap(int32(stateLoading), int32(stateReady))
	return nil
}

// Drain makes /health answer 503 and refuses new API requests with 503;
// requests already running go on. Stopping the engine is the caller's.
func (s *Server) Drain() { s.state.Store(int32(stateDraining)) }

// Timeouts of the http.Server that HTTPServer returns.
const (
	ReadHeaderTimeout = 10 * time.Second  // request line and headers
	ReadTimeout       = 60 * time.Second  // the whole request, body included
	IdleTimeout       = 120 * time.Second // a keep-alive connection between requests
)

// HTTPServer returns an http.Server for the handler with the timeouts
// this API needs (ReadHeaderTimeout, ReadTimeout, IdleTimeout) and no
// overall write timeout, since streams are bounded by per-write deadlines
// instead.
func (s *Server) HTTPServer() *http.Server {
	return &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: ReadHeaderTimeout,
		ReadTimeout:       ReadTimeout,
		IdleTimeout:       IdleTimeout,
		// The handler answers oversized headers with a JSON 431 up to
		// twice the limit; beyond that net/http answers by itself.
		MaxHeaderBytes: 2 * s.cfg.MaxHeaderBytes,
		ErrorLog:       slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
}

// Handler returns the HTTP handler of the API.
func (s *Server) Handler() http.Handler { return http.HandlerFunc(s.serveHTTP) }

// statusWriter records the status of a response.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (s *Server) serveHTTP(rw http.ResponseWriter, r *http.Request) {
	start := time.Now()
	w := &statusWriter{ResponseWriter: rw}
	path := r.URL.Path
	endpoint := "other"
	if _, ok := s.mux[path]; ok {
		endpoint = path
	} else if strings.HasPrefix(path, "/v1/models/") {
		endpoint = "/v1/models"
	}
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.Error("panic while serving a request", "path", path, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
			if w.status == 0 {
				writeError(w, internalError("internal server error"))
			}
		}
		if w.status == 0 {
			w.status = http.StatusOK
		}
		s.metrics.requests.WithLabelValues(endpoint, fmt.Sprint(w.status)).Inc()
		s.log.Debug("request", "method", r.Method, "path", path, "status", w.status, "duration", time.Since(start).Round(time.Microsecond))
	}()

	if e := s.checkRequest(r, path); e != nil {
		writeError(w, e)
		return
	}
	if strings.HasPrefix(path, "/v1/models/") && r.Method == http.MethodGet {
		s.handleModel(w, r, strings.TrimPrefix(path, "/v1/models/"))
		return
	}
	methods, ok := s.mux[path]
	if !ok {
		writeError(w, notFound("unknown path %s", quoteName(path)))
		return
	}
	h, ok := methods[r.Method]
	if !ok && r.Method == http.MethodHead {
		h, ok = methods[http.MethodGet]
	}
	if !ok {
		allow := make([]string, 0, len(methods))
		for m := range methods {
			allow = append(allow, m)
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeError(w, &apiError{status: http.StatusMethodNotAllowed, Type: typeInvalidRequest,
			Message: fmt.Sprintf("method %s is not allowed on %s; use %s", quoteName(r.Method), path, strings.Join(allow, ", "))})
		return
	}
	h(w, r)
}

// checkRequest applies the checks that come before any handler: header
// size, Host, and the API key (before the body is read).
func (s *Server) checkRequest(r *http.Request, path string) *apiError {
	if n := headerBytes(r); n > s.cfg.MaxHeaderBytes {
		return &apiError{status: http.StatusRequestHeaderFieldsTooLarge, Type: typeInvalidRequest,
			Message: fmt.Sprintf("the request headers have %d bytes, more than the limit of %d", n, s.cfg.MaxHeaderBytes)}
	}
	if s.hosts != nil && !s.hosts[strings.ToLower(r.Host)] {
		return badRequest("", "Host %s is not served here", quoteName(r.Host))
	}
	if len(s.keys) > 0 && (strings.HasPrefix(path, "/v1/") || path == "/v1" || path == "/metrics") {
		if !s.authorized(r.Header.Get("Authorization")) {
			return &apiError{status: http.StatusUnauthorized, Type: typeAuthentication, Code: ptr("invalid_api_key"),
				Message: "missing or invalid API key: send it as Authorization: Bearer KEY"}
		}
	}
	return nil
}

// headerBytes estimates the size of the request line and headers as sent.
func headerBytes(r *http.Request) int {
	n := len(r.Method) + len(r.RequestURI) + len(r.Proto) + 4
	for k, vs := range r.Header {
		for _, v := range vs {
			n += len(k) + len(v) + 4
		}
	}
	return n + len(r.Host) + 8
}

// authorized checks a bearer token against every key, comparing SHA-256
// digests in constant time and never stopping at the first match, so the
// time taken reveals neither which key matched nor its length.
func (s *Server) authorized(header string) bool {
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		token = ""
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(token)))
	match := 0
	for i := range s.keys {
		match |= subtle.ConstantTimeCompare(d[:], s.keys[i][:])
	}
	return match == 1 && token != ""
}

// ready returns the backend, or a 503 while loading or draining.
func (s *Server) ready() (*Backend, *apiError) {
	switch state(s.state.Load()) {
	case stateLoading:
		return nil, unavailable("the model is loading")
	case stateDraining:
		return nil, unavailable("the server is shutting down")
	}
	b := s.backend.Load()
	if err := b.err(); err != nil {
		return nil, unavailable("the engine has stopped")
	}
	return b, nil
}

// err is the engine's error (nil while it runs).
func (b *Backend) err() error { return b.Engine.Err() }

// adapterFor is the LoRA adapter of the model named id, or nil for the
// base (its id or an alias).
func (b *Backend) adapterFor(id string) *model.LowRank { return b.Adapters[id] }

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	unavailable := func(msg string) {
		w.Header().Set("Retry-After", "5")
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{
			"error": map[string]any{"code": http.StatusServiceUnavailable, "message": msg, "type": "unavailable_error"},
		})
	}
	switch state(s.state.Load()) {
	case stateLoading:
		unavailable("Loading model")
		return
	case stateDraining:
		unavailable("Shutting down")
		return
	}
	if err := s.backend.Load().err(); err != nil {
		unavailable("Engine stopped")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// modelObject is one entry of GET /v1/models. ContextLength is the
// per-sequence context, which bounds prompt plus output.
type modelObject struct {
	ID            string `json:"id"`
	Object        string `json:"object"`
	Created       int64  `json:"created"`
	OwnedBy       string `json:"owned_by"`
	ContextLength int    `json:"context_length,omitempty"`
	// Parent is the base model of a LoRA adapter (as vLLM lists them).
	Parent string `json:"parent,omitempty"`
}

func (s *Server) model(id string) modelObject {
	m := modelObject{ID: id, Object: "model", Created: s.created, OwnedBy: "jamba"}
	if b := s.backend.Load(); b != nil {
		m.ContextLength = b.Engine.Config().Context
		if _, ok := b.Adapters[id]; ok {
			m.Parent = s.cfg.ModelID
		}
	}
	return m
}

func (s *Server) handleModels(w http.ResponseWriter, r *http.Request) {
	list := []modelObject{s.model(s.cfg.ModelID)}
	for _, a := range s.cfg.Aliases {
		list = append(list, s.model(a))
	}
	if b := s.backend.Load(); b != nil {
		names := make([]string, 0, len(b.Adapters))
		for name := range b.Adapters {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			list = append(list, s.model(name))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": list})
}

func (s *Server) handleModel(w http.ResponseWriter, r *http.Request, id string) {
	if !s.serves(id) {
		writeError(w, modelNotFound(id))
		return
	}
	writeJSON(w, http.StatusOK, s.model(id))
}

// serves reports whether id names the model or one of its adapters.
func (s *Server) serves(id string) bool {
	if id == s.cfg.ModelID {
		return true
	}
	if b := s.backend.Load(); b != nil {
		if _, ok := b.Adapters[id]; ok {
			return true
		}
	}
	for _, a := range s.cfg.Aliases {
		if id == a {
			return true
		}
	}
	return false
}

func modelNotFound(id string) *apiError {
	e := notFound("the model %s does not exist; this server serves only the models GET /v1/models lists (its model, aliases and adapters)", quoteName(id))
	e.Param = ptr("model")
	return e.withCode("model_not_found")
}

// readBody checks the Content-Type and reads the body within the limit:
// the configured one, or the less that b allows (see Backend.bodyLimit).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request, b *Backend) ([]byte, *apiError) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		return nil, badRequest("", "Content-Type must be application/json, got %s", quoteName(r.Header.Get("Content-Type")))
	}
	limit := s.cfg.MaxBodyBytes
	if b != nil {
		if fit := b.bodyLimit(); fit < limit {
			if r.ContentLength > fit && r.ContentLength <= limit {
				// Refused by its announced size, unread: drained (no
				// memory held) so that the client reads the answer.
				io.Copy(io.Discard, r.Body)
				return nil, b.bodyTooLarge(r.ContentLength, fit)
			}
			limit = fit
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, &apiError{status: http.StatusRequestEntityTooLarge, Type: typeInvalidRequest,
				Message: fmt.Sprintf("the request body is larger than the limit of %d bytes", mb.Limit)}
		}
		if errors.Is(err, os.ErrDeadlineExceeded) {
			// The body stalled past the server's ReadTimeout: 408, which
			// clients retry.
			return nil, &apiError{status: http.StatusRequestTimeout, Type: typeInvalidRequest, Code: ptr("request_timeout"),
				Message: "the request body was not received within the server's read timeout"}
		}
		return nil, badRequest("", "reading the request body failed: %v", err)
	}
	return body, nil
}

// newID returns a random id with a prefix, such as chatcmpl-….
func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// LimitListener returns a listener that keeps at most n connections open
// at once; further connections wait in the kernel's backlog until one
// closes.
func LimitListener(l net.Listener, n int) net.Listener {
	return &limitListener{Listener: l, sem: make(chan struct{}, n), done: make(chan struct{})}
}

type limitListener struct {
	net.Listener
	sem       chan struct{}
	done      chan struct{}
	closeOnce sync.Once
}

func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.sem <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.sem
		return nil, err
	}
	return &limitConn{Conn: c, release: func() { <-l.sem }}, nil
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}
