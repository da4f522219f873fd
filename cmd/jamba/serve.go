package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/cuda"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/internal/safefile"
	"github.com/jamba-go/jamba/lora"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/server"
	"github.com/jamba-go/jamba/statestore"
)

func init() {
	register(&command{name: "serve", summary: "serve the model over an OpenAI-compatible HTTP API", run: runServe})
}

// stringList is a repeatable string flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(s string) error {
	*l = append(*l, s)
	return nil
}

// defaultContextCap bounds the default per-sequence context: KV memory of
// every slot grows with it.
const defaultContextCap = 8192

func runServe(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "[--model DIR] [--addr 127.0.0.1:8080] [--api-key KEY] [flags]", `
Serves the model over an OpenAI-compatible HTTP API: GET /v1/models,
POST /v1/completions and POST /v1/chat/completions (streaming with
"stream": true), GET /health and GET /metrics (Prometheus). Requests are
batched continuously: up to --max-batch sequences share every forward pass.
Without --model it serves the demo model built into the binary.

A finished request's slot keeps its state: a later prompt that extends its
tokens continues from it, and one that shares only a beginning continues
from the last copy of the Mamba state within it (taken at the end of the
prompt, so the next turn of a chat continues from the previous prompt, and
every `+strconv.Itoa(model.PrefillChunk)+` tokens or more, within --snapshot-mib per slot).
usage.prompt_tokens_details.cached_tokens reports the tokens not computed
again; the output is the same bits either way.

With --state-dir or --state-store the states go further: each finished
request's state (and the state at the end of its prompt) is written to the
folder or the Redis server before its response ends, and a prompt that
continues a stored state that no slot holds reads it instead of computing
it. A restarted server, even a killed one, and every replica sharing the
Redis server continue each other's conversations. A stored state that is
missing, damaged or of another model is a miss, never a wrong answer.

It binds to loopback unless --addr says otherwise; binding another address
needs --api-key (or --api-key-file) or --insecure-no-auth. SIGINT or
SIGTERM drains: /health turns 503, new requests are refused, running ones
finish within --grace, then the process exits 0.

Fixed limits: request headers at most 64 KiB (431 beyond), read within `+server.ReadHeaderTimeout.String()+`;
a request within `+server.ReadTimeout.String()+`; idle connections closed after `+server.IdleTimeout.String()+`;
`+server.FixedLimits()+`.`, stderr)
	mf := addModelFlags(fs, withCache)
	mf.namedLoRA = true
	fs.Lookup("lora").Usage = "LoRA adapter folder (PEFT layout): DIR merges it into the served model; NAME=DIR serves it beside the model as the model NAME (repeatable; applied on the fly to the requests that name it, batched with all others)"
	tokPath := fs.String("tokenizer", "", "tokenizer.json, or a folder holding one, to use instead of the model's")
	addr := fs.String("addr", "127.0.0.1:8080", "address to listen on (host:port; port 0 picks a free one)")
	modelID := fs.String("model-id", "", "model id served in /v1/models (default: the folder name, or "+modelName("")+")")
	var aliases, keys stringList
	fs.Var(&aliases, "alias", "another model name requests may use (repeatable)")
	fs.Var(&keys, "api-key", "require this bearer token on /v1 and /metrics (repeatable)")
	keyFile := fs.String("api-key-file", "", "file with one API key per line (also read from $JAMBA_API_KEY)")
	insecure := fs.Bool("insecure-no-auth", false, "allow a non-loopback address without an API key")
	maxBatch := fs.Int("max-batch", 8, "sequences served at once (slots), each with its own cache")
	queue := fs.Int("queue", 64, "requests that may wait for a slot; more are answered 429")
	ctxLen := fs.Int("context", 0, fmt.Sprintf("tokens per sequence, prompt and output (default: the model's max_position_embeddings, at most %d)", defaultContextCap))
	noReuse := fs.Bool("no-prefix-reuse", false, "compute every prompt whole, never continuing a finished request's state")
	snapMiB := fs.Int("snapshot-mib", 64, "memory per slot for copies of the Mamba state taken along each request, for prompts that share only a beginning (0: none)")
	stateDir := fs.String("state-dir", "", "write the states of finished requests to this folder as they are made, so that a restarted server (even a killed one) continues earlier conversations without computing them again")
	stateStore := fs.String("state-store", "", "share the states of finished requests through a Redis server, redis://[[USER]:PASSWORD@]HOST:PORT/DB (rediss:// for TLS), so that replicas behind a load balancer continue each other's conversations")
	stateMiB := fs.Int("state-mib", 4096, "most MiB of states kept in --state-dir or --state-store, the least recently used making room (0: no bound)")
	stateTTL := fs.Duration("state-ttl", 0, "drop a stored state not used for this long (0: only --state-mib drops states)")
	stepTokens := fs.Int("step-tokens", model.PrefillChunk, "tokens per batch step: decode tokens first, then prompt chunks")
	prefillChunk := fs.Int("prefill-chunk", 128, "prompt tokens per step while other streams decode: bounds how long a new prompt delays their next token")
	timeout := fs.Duration("timeout", 10*time.Minute, "limit on one generation request (0: none)")
	writeTimeout := fs.Duration("write-timeout", 30*time.Second, "limit on each write to a client; a client that stops reading is cut off")
	maxBody := fs.Int64("max-body", 0, "request body limit in bytes (default: 8 MiB, or 64 bytes per context token if more)")
	maxConns := fs.Int("max-conns", 512, "open connections at most; when all are open, the longest-idle keep-alive connection is closed for a new one")
	grace := fs.Duration("grace", 30*time.Second, "time running requests get to finish on shutdown")
	logLevel := fs.String("log-level", "info", "log level: debug, info, warn or error (no prompt or output text is logged)")
	device := addDeviceFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *device == "cuda" {
		if *stateDir != "" || *stateStore != "" {
			return fmt.Errorf("%w: --state-dir and --state-store are CPU-only (the stored states are the host's); with --device cuda the slots keep their states in GPU memory only", errUsage)
		}
		for _, v := range mf.lora {
			if name, _, ok := strings.Cut(v, "="); ok && name != "" && !strings.ContainsAny(name, `/\`) {
				return fmt.Errorf("%w: --lora %s: adapters served beside the model are CPU-only; for the GPU, merge it with 'jamba merge' and serve the result", errUsage, v)
			}
		}
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected arguments %q", errUsage, fs.Args())
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("%w: --log-level %q", errUsage, *logLevel)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	apiKeys := append([]string(nil), keys...)
	if *keyFile != "" {
		data, err := safefile.ReadFile(*keyFile, safefile.MaxConfig)
		if err != nil {
			return fmt.Errorf("--api-key-file: %w", err)
		}
		for _, line := range strings.Split(string(data), "\n") {
			if k := strings.TrimSpace(line); k != "" && !strings.HasPrefix(k, "#") {
				apiKeys = append(apiKeys, k)
			}
		}
	}
	if k := strings.TrimSpace(os.Getenv("JAMBA_API_KEY")); k != "" {
		apiKeys = append(apiKeys, k)
	}
	host, _, err := net.SplitHostPort(*addr)
	if err != nil {
		return fmt.Errorf("%w: --addr %q: %v", errUsage, *addr, err)
	}
	loopback := isLoopback(host)
	if !loopback && len(apiKeys) == 0 && !*insecure {
		return fmt.Errorf("%w: --addr %s is not a loopback address: give --api-key or --api-key-file, or --insecure-no-auth", errUsage, *addr)
	}
	for name, v := range map[string]int{"--max-batch": *maxBatch, "--step-tokens": *stepTokens, "--prefill-chunk": *prefillChunk, "--max-conns": *maxConns} {
		if v < 1 {
			return fmt.Errorf("%w: %s must be at least 1", errUsage, name)
		}
	}
	if *queue < 0 || *ctxLen < 0 || *maxBody < 0 || *stateMiB < 0 || *stateTTL < 0 {
		return fmt.Errorf("%w: --queue, --context, --max-body, --state-mib and --state-ttl must not be negative", errUsage)
	}
	if *stateDir != "" && *stateStore != "" {
		return fmt.Errorf("%w: give --state-dir or --state-store, not both", errUsage)
	}
	store, closeStore, err := openStateStore(*stateDir, *stateStore, statestore.Options{Budget: int64(*stateMiB) << 20, TTL: *stateTTL}, *noReuse, log)
	if err != nil {
		return err
	}
	defer closeStore()

	id := *modelID
	if id == "" {
		id = modelName(*mf.model)
	}
	body := *maxBody
	if body == 0 {
		body = max(8<<20, 64*int64(max(*ctxLen, defaultContextCap)))
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)

	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	var allowed []string
	if loopback {
		// Browsers may reach a loopback server through a hostile DNS name
		// (DNS rebinding): accept only the local names with our port.
		allowed = loopbackHosts(ln.Addr().(*net.TCPAddr))
	}
	srv, err := server.New(server.Config{
		ModelID: id, Aliases: aliases, APIKeys: apiKeys, AllowedHosts: allowed,
		MaxBodyBytes: body, RequestTimeout: durationOrNone(*timeout), WriteTimeout: *writeTimeout,
		Logger: log,
	})
	if err != nil {
		ln.Close()
		return err
	}
	hs := srv.HTTPServer()
	// Idle keep-alive connections give way to new clients (server.ConnLimiter).
	limiter := server.NewConnLimiter(*maxConns)
	hs.ConnState = limiter.ConnState
	serveErr := make(chan error, 1)
	go func() { serveErr <- hs.Serve(limiter.Listener(ln)) }()
	log.Info("listening", "url", "http://"+ln.Addr().String(), "model", id, "auth", len(apiKeys) > 0)

	// Load while /health answers 503.
	type loaded struct {
		m   *model.Model
		b   server.Backend
		err error
	}
	loadDone := make(chan loaded, 1)
	go func() {
		m, b, err := loadBackend(mf, *tokPath, log)
		loadDone <- loaded{m, b, err}
	}()
	var m *model.Model
	var eng *engine.Engine
	select {
	case l := <-loadDone:
		if l.err != nil {
			hs.Close()
			return l.err
		}
		m = l.m
		c := *ctxLen
		if c == 0 {
			c = min(m.Config.MaxPositionEmbeddings, defaultContextCap)
		}
		gm, err := onDevice(*device, m, mf.options(), stderr)
		if err != nil {
			hs.Close()
			m.Close()
			return err
		}
		var be engine.Backend
		if gm != nil {
			defer gm.Close() // after the engine's Close
			be = cuda.EngineBackend(gm)
		}
		eng, err = engine.NewOn(m, be, engine.Config{MaxBatch: *maxBatch, MaxQueue: *queue, Context: c, StepTokens: max(*stepTokens, *maxBatch), PrefillChunk: *prefillChunk,
			NoPrefixReuse: *noReuse, SnapshotBytes: snapshotBytes(*snapMiB), Store: store,
			OnStoreError: func(err error) { log.Warn("state store", "error", err) }})
		if err != nil {
			hs.Close()
			m.Close()
			return err
		}
		l.b.Engine = eng
		if l.b.Adapters, err = loadAdapters(m, mf.lora, id, aliases, log); err != nil {
			hs.Close()
			eng.Close()
			m.Close()
			return err
		}
		if err := srv.Ready(l.b); err != nil {
			hs.Close()
			eng.Close()
			m.Close()
			return err
		}
		kv, mamba := m.CacheShape().BytesAt(int64(c), 4)
		log.Info("ready", "model", id, "device", *device, "context", c, "max_batch", *maxBatch, "queue", *queue, "step_tokens", max(*stepTokens, *maxBatch),
			"weights", humanBytes(m.WeightBytes()), "state_per_sequence_at_full_context", humanBytes(kv+mamba))
	case s := <-sig:
		log.Info("signal while loading; exiting", "signal", s.String())
		hs.Close()
		return nil
	case err := <-serveErr:
		return err
	}
	defer m.Close()

	select {
	case s := <-sig:
		log.Info("draining", "signal", s.String(), "grace", *grace)
	case err := <-serveErr:
		eng.Close()
		return err
	case <-eng.Done():
		hs.Close()
		return fmt.Errorf("engine stopped: %w", eng.Err())
	}
	srv.Drain()
	ctx, cancel := context.WithTimeout(context.Background(), *grace)
	defer cancel()
	shutdown := make(chan error, 1)
	go func() { shutdown <- hs.Shutdown(ctx) }()
	if err := eng.Drain(ctx); err != nil {
		log.Warn("grace period over; running requests were ended", "error", err)
	}
	if err := <-shutdown; err != nil && !errors.Is(err, http.ErrServerClosed) {
		// Handlers are ending their streams after the engine's abort;
		// give them a moment, then close what is left.
		time.Sleep(100 * time.Millisecond)
		hs.Close()
	}
	if err := eng.Close(); err != nil {
		log.Warn("closing the engine", "error", err)
	}
	log.Info("stopped")
	return nil
}

// loadAdapters loads every NAME=DIR value of --lora as a LoRA adapter of
// m, applied on the fly to the requests whose model is NAME.
func loadAdapters(m *model.Model, values []string, id string, aliases []string, log *slog.Logger) (map[string]*model.LowRank, error) {
	out := map[string]*model.LowRank{}
	for _, v := range values {
		name, dir, ok := strings.Cut(v, "=")
		if !ok || name == "" || strings.ContainsAny(name, `/\`) {
			continue // merged into the base at load
		}
		if dir == "" {
			return nil, fmt.Errorf("%w: --lora %s: no folder after =", errUsage, v)
		}
		if _, dup := out[name]; dup || name == id || slices.Contains(aliases, name) {
			return nil, fmt.Errorf("%w: --lora %s: the name %q is already served", errUsage, v, name)
		}
		ad, err := lora.Load(dir, m.Config)
		if err != nil {
			return nil, fmt.Errorf("--lora %s: %w", v, err)
		}
		lr, err := lora.LowRankFor(m, ad)
		if err != nil {
			return nil, fmt.Errorf("--lora %s: %w", v, err)
		}
		out[name] = lr
		log.Info("adapter loaded", "model", name, "lora", dir, "adapter", ad.Describe())
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// openStateStore opens --state-dir or --state-store; nil when neither is
// given (or prefix reuse is off).
func openStateStore(dir, url string, opts statestore.Options, noReuse bool, log *slog.Logger) (engine.StateStore, func(), error) {
	none := func() {}
	switch {
	case noReuse && (dir != "" || url != ""):
		log.Warn("--no-prefix-reuse: --state-dir and --state-store are not used")
		return nil, none, nil
	case dir != "":
		d, err := statestore.OpenDir(dir, opts)
		if err != nil {
			return nil, none, fmt.Errorf("--state-dir: %w", err)
		}
		idx, err := d.Index(context.Background())
		if err != nil {
			return nil, none, fmt.Errorf("--state-dir: %w", err)
		}
		log.Info("state folder", "dir", dir, "states", len(idx), "budget", humanBytes(opts.Budget), "ttl", opts.TTL)
		return d, none, nil
	case url != "":
		r, err := statestore.OpenRedis(url, opts)
		if err != nil {
			return nil, none, fmt.Errorf("%w: %v", errUsage, err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		if err := r.Ping(ctx); err != nil {
			log.Warn("the state store does not answer: prompts are computed whole until it does", "addr", r.Addr(), "error", err)
		} else {
			log.Info("state store", "addr", r.Addr(), "budget", humanBytes(opts.Budget), "ttl", opts.TTL)
		}
		return r, func() { r.Close() }, nil
	}
	return nil, none, nil
}

func durationOrNone(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// isLoopback reports whether host names only the local machine.
func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// loadBackend loads the model, the tokenizer (tokPath, else the model's)
// and the chat template.
func loadBackend(mf *modelFlags, tokPath string, log *slog.Logger) (*model.Model, server.Backend, error) {
	var b server.Backend
	start := time.Now()
	lm, err := mf.open()
	if err != nil {
		return nil, b, err
	}
	m, dir := lm.Model, lm.Dir
	log.Info("model loaded", "model", lm.Name, "seconds", time.Since(start).Seconds())
	tok, err := lm.Tokenizer()
	if tokPath != "" {
		tok, err = openTokenizer(tokPath)
	}
	if err != nil {
		m.Close()
		return nil, b, err
	}
	b.Tokenizer = tok
	b.SpecialTokens = map[string]string{}
	var tmpl *chat.Template
	if isGGUF(dir) {
		t, toks, err := ggufTemplate(dir)
		if err != nil {
			m.Close()
			return nil, b, err
		}
		tmpl = t
		for k, v := range toks {
			b.SpecialTokens[k] = v
		}
	} else if dir != "" {
		cfgPath := filepath.Join(dir, "tokenizer_config.json")
		if _, statErr := os.Stat(cfgPath); statErr == nil {
			t, toks, err := chat.FromTokenizerConfig(cfgPath)
			if err != nil && !errors.Is(err, chat.ErrNoTemplate) {
				m.Close()
				return nil, b, err
			}
			tmpl = t
			for k, v := range toks {
				b.SpecialTokens[k] = v
			}
		}
	}
	if tmpl == nil {
		tmpl = chat.Default()
		b.ChatAddSpecial = true
		log.Info("the model has no chat template; chat uses a plain role: content transcript")
	}
	if _, ok := b.SpecialTokens["bos_token"]; !ok {
		if id, ok := tok.BOS(); ok {
			b.SpecialTokens["bos_token"], _ = tok.IDToToken(id)
		}
	}
	if _, ok := b.SpecialTokens["eos_token"]; !ok {
		if id, ok := tok.EOS(); ok {
			b.SpecialTokens["eos_token"], _ = tok.IDToToken(id)
		}
	}
	b.Template = tmpl
	return m, b, nil
}

// snapshotBytes turns --snapshot-mib into engine.Config.SnapshotBytes,
// where 0 is the default and a negative value means none.
func snapshotBytes(mib int) int64 {
	if mib <= 0 {
		return -1
	}
	return int64(mib) << 20
}
