package server

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/tokenizer"
	"github.com/openai/openai-go/v3"
	"github.com/openai/openai-go/v3/option"
)

var (
	demoOnce sync.Once
	demoM    *model.Model
	demoTok  *tokenizer.Tokenizer
	demoErr  error
)

// loadDemo returns the embedded demo model and its tokenizer, loaded once.
func loadDemo(t testing.TB) (*model.Model, *tokenizer.Tokenizer) {
	t.Helper()
	demoOnce.Do(func() {
		demoM, demoErr = demo.Load(model.Options{})
		if demoErr == nil {
			demoTok, demoErr = demo.Tokenizer()
		}
	})
	if demoErr != nil {
		t.Fatal(demoErr)
	}
	return demoM, demoTok
}

// testEnv is a server on the demo model behind an httptest server.
type testEnv struct {
	t   testing.TB
	m   *model.Model
	tok *tokenizer.Tokenizer
	eng *engine.Engine
	srv *Server
	ts  *httptest.Server
	url string
}

// quietLogger drops the per-request log lines of tests.
var quietLogger = slog.New(slog.NewTextHandler(io.Discard, nil))

func newEnv(t testing.TB, ec engine.Config, sc Config) *testEnv {
	t.Helper()
	return newEnvAdapters(t, ec, sc, nil)
}

// newEnvAdapters is newEnv with LoRA adapters of the demo model served
// beside it (Backend.Adapters).
func newEnvAdapters(t testing.TB, ec engine.Config, sc Config, adapters map[string]*model.LowRank) *testEnv {
	t.Helper()
	m, tok := loadDemo(t)
	eng, err := engine.New(m, ec)
	if err != nil {
		t.Fatal(err)
	}
	if sc.ModelID == "" {
		sc.ModelID = demo.Name
	}
	if sc.Logger == nil {
		sc.Logger = quietLogger
	}
	srv, err := New(sc)
	if err != nil {
		t.Fatal(err)
	}
	b := Backend{Engine: eng, Tokenizer: tok, Template: chat.Default(), ChatAddSpecial: true,
		SpecialTokens: map[string]string{"bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>"}, Adapters: adapters}
	if err := srv.Ready(b); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Config = srv.HTTPServer()
	ts.Start()
	e := &testEnv{t: t, m: m, tok: tok, eng: eng, srv: srv, ts: ts, url: ts.URL}
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		eng.Close()
	})
	return e
}

// client returns an official OpenAI client for the server, without retries.
func (e *testEnv) client(opts ...option.RequestOption) openai.Client {
	return openai.NewClient(append([]option.RequestOption{
		option.WithBaseURL(e.url + "/v1/"), option.WithAPIKey("unused"), option.WithMaxRetries(0),
		option.WithHTTPClient(e.ts.Client()),
	}, opts...)...)
}

// post sends a JSON body and returns the response and its body.
func (e *testEnv) post(path, body string) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest("POST", e.url+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := e.ts.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, data
}

// greedy is the reference for a greedy request: model.Generate's tokens,
// its stop reason, and the text they add to the prompt's
// (Decode(prompt+generated) minus Decode(prompt)).
func greedy(t testing.TB, prompt []int, maxTokens int) (ids []int, text, finish string) {
	t.Helper()
	m, tok := loadDemo(t)
	out, reason, err := m.Generate(context.Background(), prompt, model.GenerateOptions{MaxTokens: maxTokens}, nil)
	if err != nil {
		t.Fatal(err)
	}
	full := tok.Decode(append(append([]int(nil), prompt...), out...), true)
	base := tok.Decode(prompt, true)
	if !strings.HasPrefix(full, base) {
		t.Fatalf("decoding %v does not start with the prompt's text %q", out, base)
	}
	return out, full[len(base):], string(reason)
}

// tokenTexts is the text of each token as logprobs report them: what the
// token adds to the text after an ordinary token ("a").
func tokenTexts(tok *tokenizer.Tokenizer, ids []int) []string {
	a := tok.Encode("a", false)
	base := tok.Decode(a, false)
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strings.TrimPrefix(tok.Decode(append(append([]int(nil), a...), id), false), base)
	}
	return s
}

// waitIdle fails the test unless the engine has no request left within a
// second, the bound reliability.md sets for freeing a slot.
func waitIdle(t testing.TB, eng *engine.Engine) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for {
		st := eng.Stats()
		if st.Active == 0 && st.Queued == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("engine still busy a second later: %+v", st)
		}
		time.Sleep(time.Millisecond)
	}
}
