package server

import (
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/internal/schemagen"
	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/tokenizer"
	"github.com/santhosh-tekuri/jsonschema/v6"
)

var schemaCount = flag.Int("structured.schemas", 0, "random schemas for TestStructuredRandomSchemas (default 40) and TestStructuredFixtureModel (default 12); 1000 for the full run")

// words make random prompts.
var words = strings.Fields("give me the data as json for a user with name age tags and an id func main return err nil list of items please value")

func randomPrompt(r *rand.Rand) string {
	n := 1 + r.IntN(12)
	w := make([]string, n)
	for i := range w {
		w[i] = words[r.IntN(len(words))]
	}
	return strings.Join(w, " ")
}

// refValidator compiles schema with an independent JSON Schema
// implementation, formats asserted.
func refValidator(t testing.TB, schema string) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(strings.NewReader(schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatalf("the reference validator refuses %s: %v", schema, err)
	}
	return s
}

// checkSchemaOutput asserts that text is one JSON value valid under ref.
func checkSchemaOutput(t testing.TB, ref *jsonschema.Schema, schema, text string) {
	t.Helper()
	if !json.Valid([]byte(text)) {
		t.Fatalf("output is not JSON\nschema: %s\noutput: %q", schema, text)
	}
	v, err := jsonschema.UnmarshalJSON(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	if err := ref.Validate(v); err != nil {
		t.Fatalf("output does not validate\nschema: %s\noutput: %s\n%v", schema, text, err)
	}
}

type schemaResult struct {
	text, finish string
	usage        usage
}

// askSchema sends one request under a json_schema response_format and
// returns its choice 0 (chat or completions).
func askSchema(t testing.TB, e *testEnv, chatAPI bool, prompt, schema string, seed uint64, stream bool) schemaResult {
	t.Helper()
	rf := fmt.Sprintf(`{"type":"json_schema","json_schema":{"name":"out","strict":true,"schema":%s}}`, schema)
	pj, _ := json.Marshal(prompt)
	var body, path string
	if chatAPI {
		path = "/v1/chat/completions"
		body = fmt.Sprintf(`{"messages":[{"role":"user","content":%s}],"response_format":%s,"seed":%d,"max_tokens":1500,"stream":%v}`, pj, rf, seed, stream)
	} else {
		path = "/v1/completions"
		body = fmt.Sprintf(`{"prompt":%s,"response_format":%s,"seed":%d,"max_tokens":1500,"stream":%v}`, pj, rf, seed, stream)
	}
	resp, data := e.post(path, body)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s\nschema %s", resp.StatusCode, data, schema)
	}
	if stream {
		text, finish := streamText(t, data)
		return schemaResult{text: text, finish: finish}
	}
	var r struct {
		Choices []struct {
			Text    string `json:"text"`
			Message struct {
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	if err := json.Unmarshal(data, &r); err != nil || len(r.Choices) != 1 {
		t.Fatalf("bad response %s: %v", data, err)
	}
	c := r.Choices[0]
	return schemaResult{text: c.Text + c.Message.Content, finish: c.FinishReason, usage: r.Usage}
}

// streamText joins the text of a stream's chunks (choice 0) and returns
// its finish reason.
func streamText(t testing.TB, data []byte) (text, finish string) {
	t.Helper()
	for _, line := range strings.Split(string(data), "\n") {
		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok || payload == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Text  string `json:"text"`
				Delta struct {
					Content string `json:"content"`
				} `json:"delta"`
				FinishReason *string `json:"finish_reason"`
			} `json:"choices"`
			Error any `json:"error"`
		}
		if err := json.Unmarshal([]byte(payload), &c); err != nil || c.Error != nil {
			t.Fatalf("bad chunk %s: %v", payload, err)
		}
		for _, ch := range c.Choices {
			text += ch.Text + ch.Delta.Content
			if ch.FinishReason != nil {
				finish = *ch.FinishReason
			}
		}
	}
	return text, finish
}

// runRandomSchemas asks for n random bounded schemas (every value has a
// bounded length, so the output must end) with random prompts, chat and
// completions, streaming and not: every output ends with "stop", parses
// and validates.
func runRandomSchemas(t *testing.T, e *testEnv, n int, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 11))
	tokens := 0
	for i := range n {
		g := &schemagen.Gen{Rng: rng, Bounded: true}
		schema := g.Schema(2)
		ref := refValidator(t, schema)
		r := askSchema(t, e, i%2 == 0, randomPrompt(rng), schema, rng.Uint64()>>1, i%3 == 0)
		if r.finish != "stop" {
			t.Fatalf("finish %q after %q\nschema %s", r.finish, r.text, schema)
		}
		checkSchemaOutput(t, ref, schema, r.text)
		tokens += r.usage.CompletionTokens
	}
	t.Logf("%d schemas: every output parses and validates (%d completion tokens in the non-streamed ones)", n, tokens)
}

func TestStructuredRandomSchemas(t *testing.T) {
	n := *schemaCount
	if n == 0 {
		n = 40
	}
	e := newEnv(t, engine.Config{MaxBatch: 2}, Config{})
	runRandomSchemas(t, e, n, 1)
}

// The same on a second model: hf-gostd-13m, a fixture with its own
// tokenizer.
func TestStructuredFixtureModel(t *testing.T) {
	dir := testutil.Fixture(t, filepath.Join("models", "hf-gostd-13m"))
	m, err := model.Load(dir, model.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tok, err := tokenizer.Load(filepath.Join(dir, "tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvModel(t, m, tok, engine.Config{MaxBatch: 2})
	n := 12
	if *schemaCount > 0 {
		n = *schemaCount
	}
	runRandomSchemas(t, e, n, 2)
}

// newEnvModel is newEnv on another model.
func newEnvModel(t testing.TB, m *model.Model, tok *tokenizer.Tokenizer, ec engine.Config) *testEnv {
	t.Helper()
	eng, err := engine.New(m, ec)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{ModelID: "fixture", Logger: quietLogger})
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.Ready(Backend{Engine: eng, Tokenizer: tok, Template: chat.Default(), ChatAddSpecial: true}); err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewUnstartedServer(srv.Handler())
	ts.Config = srv.HTTPServer()
	ts.Start()
	t.Cleanup(func() {
		ts.CloseClientConnections()
		ts.Close()
		eng.Close()
	})
	return &testEnv{t: t, m: m, tok: tok, eng: eng, srv: srv, ts: ts, url: ts.URL}
}

// json_object gives a JSON object, complete, in chat and completions.
func TestJSONObject(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 2}, Config{})
	for i, path := range []string{"/v1/chat/completions", "/v1/completions"} {
		body := `{"prompt":"x","messages":[{"role":"user","content":"json please"}],"response_format":{"type":"json_object"},"max_tokens":400,"seed":3}`
		if i == 0 {
			body = strings.Replace(body, `"prompt":"x",`, "", 1)
		} else {
			body = strings.Replace(body, `"messages":[{"role":"user","content":"json please"}],`, "", 1)
		}
		resp, data := e.post(path, body)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, data)
		}
		var r struct {
			Choices []struct {
				Text         string                   `json:"text"`
				Message      struct{ Content string } `json:"message"`
				FinishReason string                   `json:"finish_reason"`
			} `json:"choices"`
		}
		json.Unmarshal(data, &r)
		text := r.Choices[0].Text + r.Choices[0].Message.Content
		// Any object may be long: the model may not close it within
		// max_tokens; a prefix must still be one.
		var obj map[string]any
		if r.Choices[0].FinishReason == "stop" {
			if err := json.Unmarshal([]byte(text), &obj); err != nil {
				t.Errorf("%s: %q is not a JSON object: %v", path, text, err)
			}
		} else if !strings.HasPrefix(strings.TrimSpace(text), "{") {
			t.Errorf("%s: %q does not start an object", path, text)
		}
	}
}

// usageOf decodes a non-streamed response's choices and usage.
type nResponse struct {
	Choices []struct {
		Index        int    `json:"index"`
		Text         string `json:"text"`
		Message      struct{ Content string }
		FinishReason string `json:"finish_reason"`
	} `json:"choices"`
	Usage usage `json:"usage"`
}

// n choices: the prompt is computed once (usage and the engine's prompt
// counter), each choice is what a single request with seed+i gives, and
// streamed choices match.
func TestNChoices(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 4, NoPrefixReuse: true}, Config{})
	const prompt = "func (s *Server) handle(w http.ResponseWriter, r *http.Request) {"
	before := e.eng.Stats().PromptTokens
	resp, data := e.post("/v1/completions", fmt.Sprintf(`{"prompt":%q,"n":4,"max_tokens":10,"seed":7,"temperature":1}`, prompt))
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, data)
	}
	var r nResponse
	json.Unmarshal(data, &r)
	promptTokens := len(e.tok.Encode(prompt, true))
	if got := e.eng.Stats().PromptTokens - before; got != uint64(promptTokens) {
		t.Errorf("n=4 computed %d prompt tokens, want %d (once)", got, promptTokens)
	}
	if r.Usage.PromptTokens != promptTokens || r.Usage.CompletionTokens != 40 || r.Usage.TotalTokens != promptTokens+40 {
		t.Errorf("usage %+v, want prompt %d once and 40 completion tokens", r.Usage, promptTokens)
	}
	if len(r.Choices) != 4 {
		t.Fatalf("%d choices", len(r.Choices))
	}
	distinct := map[string]bool{}
	for i, c := range r.Choices {
		if c.Index != i || c.FinishReason != "length" {
			t.Errorf("choice %d: index %d finish %q", i, c.Index, c.FinishReason)
		}
		distinct[c.Text] = true
		// The same as one request with seed 7+i.
		_, one := e.post("/v1/completions", fmt.Sprintf(`{"prompt":%q,"max_tokens":10,"seed":%d,"temperature":1}`, prompt, 7+i))
		var o nResponse
		json.Unmarshal(one, &o)
		if o.Choices[0].Text != c.Text {
			t.Errorf("choice %d: %q, alone with seed %d: %q", i, c.Text, 7+i, o.Choices[0].Text)
		}
	}
	if len(distinct) < 2 {
		t.Errorf("four seeded choices are all %q", r.Choices[0].Text)
	}

	// Streamed, chat: chunks carry their choice's index; each choice has
	// one finish_reason; the usage chunk counts the prompt once.
	resp, data = e.post("/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"n":3,"max_tokens":6,"seed":1,"stream":true,"stream_options":{"include_usage":true}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, data)
	}
	texts := map[int]string{}
	finishes := map[int]int{}
	var u *usage
	for _, line := range strings.Split(string(data), "\n") {
		payload, ok := strings.CutPrefix(line, "data: ")
		if !ok || payload == "[DONE]" {
			continue
		}
		var c struct {
			Choices []struct {
				Index        int
				Delta        struct{ Content string }
				FinishReason *string `json:"finish_reason"`
			}
			Usage *usage
		}
		if err := json.Unmarshal([]byte(payload), &c); err != nil {
			t.Fatal(err)
		}
		for _, ch := range c.Choices {
			texts[ch.Index] += ch.Delta.Content
			if ch.FinishReason != nil {
				finishes[ch.Index]++
			}
		}
		if c.Usage != nil {
			u = c.Usage
		}
	}
	_, nonStream := e.post("/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"n":3,"max_tokens":6,"seed":1}`)
	var ns nResponse
	json.Unmarshal(nonStream, &ns)
	for i := range 3 {
		if finishes[i] != 1 || texts[i] != ns.Choices[i].Message.Content {
			t.Errorf("streamed choice %d: %q (%d finishes), not streamed %q", i, texts[i], finishes[i], ns.Choices[i].Message.Content)
		}
	}
	if u == nil || u.CompletionTokens != 18 || u.PromptTokens != ns.Usage.PromptTokens {
		t.Errorf("streamed usage %+v, want 18 completion tokens and %d prompt tokens", u, ns.Usage.PromptTokens)
	}
	waitIdle(t, e.eng)
}

// n choices each follow the schema.
func TestNChoicesWithSchema(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 4}, Config{})
	schema := `{"type":"object","properties":{"name":{"type":"string","maxLength":8},"age":{"type":"integer","minimum":0,"maximum":120},"tags":{"type":"array","items":{"enum":["a","b","c"]},"maxItems":3}},"required":["name","age"],"additionalProperties":false}`
	ref := refValidator(t, schema)
	resp, data := e.post("/v1/chat/completions", `{"messages":[{"role":"user","content":"a user"}],"n":4,"seed":5,"response_format":{"type":"json_schema","json_schema":{"name":"user","schema":`+schema+`}}}`)
	if resp.StatusCode != 200 {
		t.Fatalf("%d %s", resp.StatusCode, data)
	}
	var r nResponse
	json.Unmarshal(data, &r)
	for _, c := range r.Choices {
		if c.FinishReason != "stop" {
			t.Fatalf("finish %q: %q", c.FinishReason, c.Message.Content)
		}
		checkSchemaOutput(t, ref, schema, c.Message.Content)
	}
}

// logit_bias: -100 removes the greedy token; +100 makes a token win every
// step (OpenAI's semantics: the bias is added to the logit).
func TestLogitBias(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 2}, Config{})
	ids := e.tok.Encode("func main() {", true)
	want, _, _ := greedy(t, ids, 1)
	first := want[0]
	ask := func(bias string) (text string, tokens []string) {
		resp, data := e.post("/v1/completions", fmt.Sprintf(`{"prompt":%s,"max_tokens":4,"temperature":0,"logit_bias":%s,"logprobs":0}`, intsJSON(ids), bias))
		if resp.StatusCode != 200 {
			t.Fatalf("%d %s", resp.StatusCode, data)
		}
		var r struct {
			Choices []struct {
				Text     string `json:"text"`
				Logprobs struct {
					Tokens []string `json:"tokens"`
				} `json:"logprobs"`
			} `json:"choices"`
		}
		json.Unmarshal(data, &r)
		return r.Choices[0].Text, r.Choices[0].Logprobs.Tokens
	}
	_, toks := ask(fmt.Sprintf(`{"%d":-100}`, first))
	if len(toks) == 0 || toks[0] == tokenTexts(e.tok, []int{first})[0] {
		t.Errorf("bias -100 on the greedy token %d (%q): got %q", first, tokenTexts(e.tok, []int{first})[0], toks)
	}
	const forced = 300
	text, toks := ask(fmt.Sprintf(`{"%d":100}`, forced))
	all := append(append([]int(nil), ids...), forced, forced, forced, forced)
	wantText := strings.TrimPrefix(e.tok.Decode(all, true), e.tok.Decode(ids, true))
	if len(toks) != 4 || text != wantText {
		t.Errorf("bias +100 on %d: %q (%q), want %q four times", forced, text, toks, tokenTexts(e.tok, []int{forced})[0])
	}
}

func intsJSON(ids []int) string {
	b, _ := json.Marshal(ids)
	return string(b)
}
