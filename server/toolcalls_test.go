package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/model"

	"github.com/openai/openai-go/v3"

	"github.com/jamba-go/jamba/chat"
	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/engine"
	"github.com/jamba-go/jamba/internal/testutil"
	"github.com/jamba-go/jamba/tokenizer"
)

func readTemplate(t testing.TB, name string) *chat.Template {
	t.Helper()
	tmpl, err := chat.New(string(testutil.ReadFile(t, "chat/"+name)))
	if err != nil {
		t.Fatal(err)
	}
	return tmpl
}

func TestToolFormatOf(t *testing.T) {
	for name, want := range map[string]*toolFormat{
		"jamba-1.7-chat-template.jinja": jambaToolFormat,
		"qwen3-chat-template.jinja":     hermesToolFormat,
	} {
		if got := toolFormatOf(readTemplate(t, name).Source()); got != want {
			t.Errorf("%s: format %v, want %v", name, got, want)
		}
	}
	if got := toolFormatOf(chat.Default().Source()); got != nil {
		t.Errorf("default template: format %v, want none", got)
	}
}

func call(name, args string) toolCall {
	return toolCall{Type: "function", Function: toolFunction{Name: name, Arguments: args}}
}

type toolCase struct {
	name    string
	f       *toolFormat
	text    string
	content string
	calls   []toolCall
}

var toolCases = []toolCase{
	{"jamba as rendered", jambaToolFormat,
		" Let me look.<tool_calls>[\n    {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}},\n    {\"name\": \"now\", \"arguments\": {\"tz\": \"UTC\"}}\n]</tool_calls>",
		" Let me look.", []toolCall{call("get_weather", `{"city":"Zürich"}`), call("now", `{"tz":"UTC"}`)}},
	{"jamba alone", jambaToolFormat, `<tool_calls>[{"name": "f", "arguments": {}}]</tool_calls>`, "", []toolCall{call("f", "{}")}},
	{"jamba one object", jambaToolFormat, `<tool_calls>{"name": "f", "arguments": {"a": [1, 2]}}</tool_calls>` + "\n", "", []toolCall{call("f", `{"a":[1,2]}`)}},
	{"jamba no tools", jambaToolFormat, "just text\n", "just text\n", nil},
	{"jamba empty array", jambaToolFormat, `a<tool_calls>[]</tool_calls>`, `a<tool_calls>[]</tool_calls>`, nil},
	{"jamba unclosed", jambaToolFormat, `a <tool_calls>[{"name": "f", "arguments": {}}]`, `a <tool_calls>[{"name": "f", "arguments": {}}]`, nil},
	{"jamba hermes markup is text", jambaToolFormat, `<tool_call>{"name": "f"}</tool_call>`, `<tool_call>{"name": "f"}</tool_call>`, nil},
	{"qwen as rendered", hermesToolFormat,
		"Let me look.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"now\", \"arguments\": {\"tz\": \"UTC\"}}\n</tool_call>",
		"Let me look.", []toolCall{call("get_weather", `{"city":"Zürich"}`), call("now", `{"tz":"UTC"}`)}},
	{"qwen thinking", hermesToolFormat,
		"<think>\nweather?\n</think>\n\n<tool_call>\n{\"name\": \"w\", \"arguments\": {\"q\": \"日本語 \\u00e9 😀 </tool_call>\"}}\n</tool_call>\n",
		"<think>\nweather?\n</think>", []toolCall{call("w", `{"q":"日本語 \u00e9 😀 </tool_call>"}`)}},
	{"qwen string arguments", hermesToolFormat, "<tool_call>\n{\"name\": \"f\", \"arguments\": \"{\\\"x\\\": 1}\"}\n</tool_call>", "", []toolCall{call("f", `{"x":1}`)}},
	{"qwen no arguments", hermesToolFormat, "<tool_call>{\"name\": \"f\"}</tool_call><tool_call>{\"name\": \"g\", \"arguments\": null}</tool_call>", "", []toolCall{call("f", "{}"), call("g", "{}")}},
	{"qwen bad json", hermesToolFormat, "x\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }\n</tool_call>", "x\n<tool_call>\n{\"name\": \"f\", \"arguments\": {\"a\": }\n</tool_call>", nil},
	{"qwen unknown member", hermesToolFormat, "<tool_call>{\"name\": \"f\", \"parameters\": {}}</tool_call>", "<tool_call>{\"name\": \"f\", \"parameters\": {}}</tool_call>", nil},
	{"qwen arguments not an object", hermesToolFormat, "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>", "<tool_call>{\"name\": \"f\", \"arguments\": [1]}</tool_call>", nil},
	{"qwen string arguments not json", hermesToolFormat, "<tool_call>{\"name\": \"f\", \"arguments\": \"x=1\"}</tool_call>", "<tool_call>{\"name\": \"f\", \"arguments\": \"x=1\"}</tool_call>", nil},
	{"qwen empty name", hermesToolFormat, "<tool_call>{\"name\": \"\"}</tool_call>", "<tool_call>{\"name\": \"\"}</tool_call>", nil},
	{"qwen text after", hermesToolFormat, "<tool_call>{\"name\": \"f\"}</tool_call> and more", "<tool_call>{\"name\": \"f\"}</tool_call> and more", nil},
	{"qwen text between", hermesToolFormat, "<tool_call>{\"name\": \"f\"}</tool_call>so<tool_call>{\"name\": \"g\"}</tool_call>", "<tool_call>{\"name\": \"f\"}</tool_call>so<tool_call>{\"name\": \"g\"}</tool_call>", nil},
	{"qwen prefix of marker only", hermesToolFormat, "a < b \n<tool_ca", "a < b \n<tool_ca", nil},
	{"qwen trailing space kept without markup", hermesToolFormat, "done \n\t", "done \n\t", nil},
	{"qwen two objects in a block", hermesToolFormat, "<tool_call>{\"name\": \"f\"}{\"name\": \"g\"}</tool_call>", "<tool_call>{\"name\": \"f\"}{\"name\": \"g\"}</tool_call>", nil},
}

func TestParseToolCalls(t *testing.T) {
	for _, c := range toolCases {
		content, calls := parseToolCalls(c.f, c.text)
		if content != c.content || !reflect.DeepEqual(calls, c.calls) {
			t.Errorf("%s: got %q %+v, want %q %+v", c.name, content, calls, c.content, c.calls)
		}
		for _, cl := range calls {
			var m map[string]any
			if err := json.Unmarshal([]byte(cl.Function.Arguments), &m); err != nil {
				t.Errorf("%s: arguments %q are not a JSON object: %v", c.name, cl.Function.Arguments, err)
			}
		}
	}
}

// streamTools feeds pieces through a toolStream and returns the content
// it released and the calls; it also checks that what is released is
// always a prefix of the one-shot content.
func streamTools(t testing.TB, f *toolFormat, pieces []string, want string) (string, []toolCall) {
	t.Helper()
	ts := newToolStream(f)
	var out strings.Builder
	for _, p := range pieces {
		out.WriteString(ts.push(p))
		if !strings.HasPrefix(want, out.String()) {
			t.Fatalf("released %q, not a prefix of %q", out.String(), want)
		}
	}
	out.WriteString(ts.finish())
	return out.String(), ts.calls
}

// TestToolStreamSplits cuts every case at every pair of byte offsets.
func TestToolStreamSplits(t *testing.T) {
	for _, c := range toolCases {
		n := len(c.text)
		for i := 0; i <= n; i++ {
			for j := i; j <= n; j += max(1, n/17) {
				content, calls := streamTools(t, c.f, []string{c.text[:i], c.text[i:j], c.text[j:]}, c.content)
				if content != c.content || !reflect.DeepEqual(calls, c.calls) {
					t.Fatalf("%s cut at %d, %d: got %q %+v, want %q %+v", c.name, i, j, content, calls, c.content, c.calls)
				}
			}
		}
	}
}

// TestTextStreamTools feeds the tokens of each case one at a time through
// the whole text pipeline (decoder, stop matcher, tool parser) with the
// demo tokenizer, which splits the markers over several tokens.
func TestTextStreamTools(t *testing.T) {
	_, tok := loadDemo(t)
	prompt := tok.Encode("user: hi\nassistant:", true)
	for _, c := range toolCases {
		ids := tok.Encode(c.text, false)
		full := tok.Decode(append(append([]int(nil), prompt...), ids...), true)
		base := tok.Decode(prompt, true)
		// The Metaspace decoder adds a space in front (of most texts).
		text := full[len(base):]
		if text != c.text && text != " "+c.text {
			t.Fatalf("%s: the demo tokenizer decodes %q as %q", c.name, c.text, text)
		}
		wantContent, wantCalls := parseToolCalls(c.f, text)
		if text == c.text && (wantContent != c.content || !reflect.DeepEqual(wantCalls, c.calls)) {
			t.Fatalf("%s: parse differs", c.name)
		}
		ts := newTextStream(tok, prompt, nil)
		ts.tools = newToolStream(c.f)
		var out strings.Builder
		for _, id := range ids {
			s, _ := ts.add(id)
			out.WriteString(s)
		}
		s, _ := ts.finish()
		out.WriteString(s)
		if out.String() != wantContent || !reflect.DeepEqual(ts.toolCalls(), wantCalls) || !reflect.DeepEqual(wantCalls, c.calls) {
			t.Errorf("%s: got %q %+v, want %q %+v", c.name, out.String(), ts.toolCalls(), wantContent, c.calls)
		}
	}
}

// TestTextStreamToolsStop: a stop string ends the text before the parser
// sees the rest; a block it cuts is content.
func TestTextStreamToolsStop(t *testing.T) {
	_, tok := loadDemo(t)
	text := "ok <tool_call>{\"name\": \"f\"}</tool_call> tail"
	for _, tc := range []struct {
		stop, content string
		calls         []toolCall
	}{
		{" tail", "ok", []toolCall{call("f", "{}")}},
		{"</tool_call>", `ok <tool_call>{"name": "f"}`, nil},
	} {
		ts := newTextStream(tok, nil, []string{tc.stop})
		ts.tools = newToolStream(hermesToolFormat)
		var out strings.Builder
		stopped := false
		for _, id := range tok.Encode(text, false) {
			s, st := ts.add(id)
			out.WriteString(s)
			if stopped = st; st {
				break
			}
		}
		if !stopped {
			t.Fatalf("stop %q: did not stop", tc.stop)
		}
		if out.String() != tc.content || !reflect.DeepEqual(ts.toolCalls(), tc.calls) {
			t.Errorf("stop %q: got %q %+v, want %q %+v", tc.stop, out.String(), ts.toolCalls(), tc.content, tc.calls)
		}
	}
}

// TestTextStreamToolsQwen3 decodes Qwen3's own <tool_call> tokens (added
// tokens that are not special, so kept in the text) through the pipeline.
func TestTextStreamToolsQwen3(t *testing.T) {
	tok, err := tokenizer.Load(testutil.Fixture(t, "tokenizers/qwen3/tokenizer.json"))
	if err != nil {
		t.Fatal(err)
	}
	prompt := tok.Encode("<|im_start|>user\nweather?<|im_end|>\n<|im_start|>assistant\n", false)
	text := "Checking.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n</tool_call><|im_end|>"
	ids := tok.Encode(text, false)
	open, _ := tok.TokenToID("<tool_call>")
	if !bytes.Contains(intsToBytes(ids), intsToBytes([]int{open})) {
		t.Fatalf("%v does not hold the <tool_call> token %d", ids, open)
	}
	ts := newTextStream(tok, prompt, nil)
	ts.tools = newToolStream(hermesToolFormat)
	var out strings.Builder
	for _, id := range ids {
		s, _ := ts.add(id)
		out.WriteString(s)
	}
	s, _ := ts.finish()
	out.WriteString(s)
	if want := []toolCall{call("get_weather", `{"city":"Zürich"}`)}; out.String() != "Checking." || !reflect.DeepEqual(ts.toolCalls(), want) {
		t.Errorf("got %q %+v, want %q %+v", out.String(), ts.toolCalls(), "Checking.", want)
	}
}

func intsToBytes(ids []int) []byte {
	var b []byte
	for _, id := range ids {
		b = append(b, byte(id>>24), byte(id>>16), byte(id>>8), byte(id))
	}
	return b
}

// Server tests. The demo model does not write tool-call markup, so these
// let the engine generate for real but replace its tokens with a script
// (Server.eventFilter): everything after the engine (decoding, parsing,
// the response) is the server's own path.

// scriptEvents returns an event filter that sends the tokens of text and
// then a normal end, draining the engine's own events.
func scriptEvents(ids []int, finish model.FinishReason) func(context.Context, <-chan engine.Event) <-chan engine.Event {
	return func(ctx context.Context, real <-chan engine.Event) <-chan engine.Event {
		out := make(chan engine.Event, len(ids)+1)
		for _, id := range ids {
			out <- engine.Event{Token: id}
		}
		out <- engine.Event{Token: engine.NoToken, Finish: finish}
		close(out)
		go func() {
			for range real {
			}
		}()
		return out
	}
}

// newToolEnv is a demo-model server with the given chat template whose
// chat replies are text (the tokens of it with the demo tokenizer).
func newToolEnv(t *testing.T, template, text string) *testEnv {
	t.Helper()
	e := newEnv(t, engine.Config{MaxBatch: 2}, Config{})
	b := *e.srv.backend.Load()
	b.Template = readTemplate(t, template)
	if err := e.srv.Ready(b); err != nil {
		t.Fatal(err)
	}
	if text != "" {
		ids := e.tok.Encode(text, false)
		if got := e.tok.Decode(ids, false); got != text {
			t.Fatalf("the demo tokenizer decodes %q as %q", text, got)
		}
		e.srv.eventFilter = scriptEvents(ids, model.FinishStop)
	}
	return e
}

const weatherTools = `[{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city",
	"parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]`

func toolBody(stream bool, extra string) string {
	s := `{"messages": [{"role": "user", "content": "Weather in Zürich?"}], "max_tokens": 4, "tools": ` + weatherTools + extra
	if stream {
		s += `, "stream": true`
	}
	return s + "}"
}

// sseChunks reads the data events of a stream, [DONE] left out.
func sseChunks(t *testing.T, data []byte) []map[string]any {
	t.Helper()
	var out []map[string]any
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		line, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok || line == "[DONE]" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("chunk %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// chatResult is a chat answer as both forms reduce to.
type chatResult struct {
	Content *string
	Calls   []toolCall
	Finish  string
}

// chatBoth sends body without and with streaming and returns both
// results, failing on any response not shaped as OpenAI's.
func chatBoth(t *testing.T, e *testEnv, body func(stream bool) string) (plain, streamed chatResult) {
	t.Helper()
	resp, data := e.post("/v1/chat/completions", body(false))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	var r struct {
		Choices []struct {
			Message      map[string]json.RawMessage `json:"message"`
			FinishReason string                     `json:"finish_reason"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(data, &r); err != nil || len(r.Choices) != 1 {
		t.Fatalf("response %s: %v", data, err)
	}
	m := r.Choices[0].Message
	if c, ok := m["content"]; !ok {
		t.Fatalf("message without content: %s", data)
	} else {
		json.Unmarshal(c, &plain.Content)
	}
	if tc, ok := m["tool_calls"]; ok {
		if err := json.Unmarshal(tc, &plain.Calls); err != nil {
			t.Fatal(err)
		}
	}
	plain.Finish = r.Choices[0].FinishReason

	resp, data = e.post("/v1/chat/completions", body(true))
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, data)
	}
	var content strings.Builder
	sawContent := false
	for _, ch := range sseChunks(t, data) {
		choices := ch["choices"].([]any)
		if len(choices) == 0 {
			continue
		}
		c := choices[0].(map[string]any)
		d := c["delta"].(map[string]any)
		if s, ok := d["content"].(string); ok {
			content.WriteString(s)
			sawContent = sawContent || s != ""
		}
		if tcs, ok := d["tool_calls"].([]any); ok {
			for _, x := range tcs {
				raw, _ := json.Marshal(x)
				var tc toolCallDelta
				if err := json.Unmarshal(raw, &tc); err != nil {
					t.Fatal(err)
				}
				if tc.Index != len(streamed.Calls) {
					t.Errorf("tool call index %d, want %d", tc.Index, len(streamed.Calls))
				}
				streamed.Calls = append(streamed.Calls, tc.toolCall)
			}
		}
		if f, ok := c["finish_reason"].(string); ok {
			streamed.Finish = f
		}
	}
	if sawContent || len(streamed.Calls) == 0 {
		s := content.String()
		streamed.Content = &s
	}
	return plain, streamed
}

// sameCalls compares calls but their ids, which must each be call_ and
// random.
func sameCalls(t *testing.T, got, want []toolCall) bool {
	t.Helper()
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if !strings.HasPrefix(got[i].ID, "call_") || len(got[i].ID) < 20 {
			t.Errorf("tool call id %q", got[i].ID)
		}
		g := got[i]
		g.ID = ""
		if g != want[i] {
			return false
		}
	}
	return true
}

func TestServerToolCalls(t *testing.T) {
	for _, tc := range []struct {
		name, template, text, extra string
		content                     *string
		calls                       []toolCall
		finish                      string
	}{
		{"qwen", "qwen3-chat-template.jinja",
			"Let me check.\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n</tool_call>", "",
			ptr("Let me check."), []toolCall{call("get_weather", `{"city":"Zürich"}`)}, "tool_calls"},
		{"qwen calls alone", "qwen3-chat-template.jinja",
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"東京\"}}\n</tool_call>", "",
			nil, []toolCall{call("get_weather", `{"city":"Paris"}`), call("get_weather", `{"city":"東京"}`)}, "tool_calls"},
		// A function the request did not offer is still returned, as OpenAI does.
		{"qwen unknown function", "qwen3-chat-template.jinja",
			"<tool_call>\n{\"name\": \"rm_rf\", \"arguments\": {}}\n</tool_call>", "",
			nil, []toolCall{call("rm_rf", `{}`)}, "tool_calls"},
		{"qwen malformed", "qwen3-chat-template.jinja",
			"Hmm <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\"}}\n</tool_call>", "",
			ptr("Hmm <tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\"}}\n</tool_call>"), nil, "stop"},
		{"qwen tool_choice none", "qwen3-chat-template.jinja",
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>", `, "tool_choice": "none"`,
			ptr("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"), nil, "stop"},
		{"jamba", "jamba-1.7-chat-template.jinja",
			"I'll look.<tool_calls>[\n    {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\"}}\n]</tool_calls>", "",
			ptr("I'll look."), []toolCall{call("get_weather", `{"city":"Zürich"}`)}, "tool_calls"},
		{"jamba with qwen markup", "jamba-1.7-chat-template.jinja",
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>", "",
			ptr("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"), nil, "stop"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newToolEnv(t, tc.template, tc.text)
			if tc.content != nil {
				// The demo tokenizer decodes the reply with a space in front.
				tc.content = ptr(" " + *tc.content)
			}
			plain, streamed := chatBoth(t, e, func(s bool) string { return toolBody(s, tc.extra) })
			for _, r := range []struct {
				kind string
				r    chatResult
			}{{"non-streamed", plain}, {"streamed", streamed}} {
				if !reflect.DeepEqual(r.r.Content, tc.content) || !sameCalls(t, r.r.Calls, tc.calls) || r.r.Finish != tc.finish {
					t.Errorf("%s: content %v calls %+v finish %q; want %v %+v %q", r.kind, show2(r.r.Content), r.r.Calls, r.r.Finish, show2(tc.content), tc.calls, tc.finish)
				}
			}
			waitIdle(t, e.eng)
		})
	}
}

func show2(s *string) string {
	if s == nil {
		return "null"
	}
	return strings.ReplaceAll(*s, "\n", `\n`)
}

// TestServerToolCallsNoTools: without tools in the request the markup is
// text.
func TestServerToolCallsNoTools(t *testing.T) {
	text := "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {}}\n</tool_call>"
	e := newToolEnv(t, "qwen3-chat-template.jinja", text)
	plain, streamed := chatBoth(t, e, func(s bool) string {
		return strings.Replace(toolBody(s, ""), `"tools": `+weatherTools, `"temperature": 0`, 1)
	})
	for _, r := range []chatResult{plain, streamed} {
		if r.Content == nil || *r.Content != " "+text || r.Calls != nil || r.Finish != "stop" {
			t.Errorf("got %+v", r)
		}
	}
}

// TestServerToolsRealGeneration lets the demo model answer a request with
// tools for real (it writes Go, not tool calls): the output is content,
// the same streamed and not, as without the parser.
func TestServerToolsRealGeneration(t *testing.T) {
	e := newToolEnv(t, "qwen3-chat-template.jinja", "")
	body := func(s bool) string {
		return strings.Replace(toolBody(s, `, "temperature": 0`), `"max_tokens": 4`, `"max_tokens": 40`, 1)
	}
	plain, streamed := chatBoth(t, e, body)
	if plain.Content == nil || *plain.Content == "" || plain.Calls != nil || plain.Finish == "tool_calls" {
		t.Fatalf("got %+v", plain)
	}
	if !reflect.DeepEqual(plain, streamed) {
		t.Errorf("non-streamed %+v, streamed %+v", plain, streamed)
	}
	// The same prompt without the parser gives the same text.
	b := *e.srv.backend.Load()
	b.tools = nil
	e.srv.backend.Store(&b)
	again, _ := chatBoth(t, e, body)
	if !reflect.DeepEqual(plain, again) {
		t.Errorf("with the parser %+v, without %+v", plain, again)
	}
}

// TestOpenAIToolCalls checks that the official Go client decodes the tool
// calls, whole and streamed (with its accumulator).
func TestOpenAIToolCalls(t *testing.T) {
	e := newToolEnv(t, "qwen3-chat-template.jinja",
		"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Zürich\", \"unit\": \"°C\"}}\n</tool_call>")
	c := e.client()
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model:     demo.Name,
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Zürich?")},
		MaxTokens: openai.Int(4),
		Tools: []openai.ChatCompletionToolUnionParam{openai.ChatCompletionFunctionTool(openai.FunctionDefinitionParam{
			Name:       "get_weather",
			Parameters: openai.FunctionParameters{"type": "object", "properties": map[string]any{"city": map[string]any{"type": "string"}}},
		})},
	}
	res, err := c.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	ch := res.Choices[0]
	if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.Content != "" {
		t.Fatalf("choice %+v", ch)
	}
	got := ch.Message.ToolCalls[0]
	if got.Type != "function" || got.Function.Name != "get_weather" || !strings.HasPrefix(got.ID, "call_") {
		t.Errorf("tool call %+v", got)
	}
	var args struct{ City, Unit string }
	if err := json.Unmarshal([]byte(got.Function.Arguments), &args); err != nil || args.City != "Zürich" || args.Unit != "°C" {
		t.Errorf("arguments %q: %+v %v", got.Function.Arguments, args, err)
	}

	s := c.Chat.Completions.NewStreaming(ctx, params)
	acc := openai.ChatCompletionAccumulator{}
	for s.Next() {
		acc.AddChunk(s.Current())
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	sc := acc.Choices[0]
	if sc.FinishReason != "tool_calls" || len(sc.Message.ToolCalls) != 1 || sc.Message.ToolCalls[0].Function.Arguments != got.Function.Arguments ||
		sc.Message.ToolCalls[0].Function.Name != "get_weather" || !strings.HasPrefix(sc.Message.ToolCalls[0].ID, "call_") {
		t.Errorf("accumulated %+v", sc)
	}
}

// FuzzToolCalls checks the parser on any text cut anywhere: the streamed
// result equals the one-shot one, released text is never taken back, the
// output without calls is the text itself, and calls carry a name and
// arguments that are a JSON object, which render back to the same calls.
func FuzzToolCalls(f *testing.F) {
	for _, c := range toolCases {
		f.Add(c.f == jambaToolFormat, c.text, []byte{3, 7, 1, 15, 2})
	}
	f.Add(false, "<tool_call>{\"name\": \"f\", \"arguments\": {\"k\": \"\xff\"}}</tool_call>", []byte{0})
	f.Fuzz(func(t *testing.T, jamba bool, text string, cuts []byte) {
		tf := hermesToolFormat
		if jamba {
			tf = jambaToolFormat
		}
		content, calls := parseToolCalls(tf, text)
		sc, scalls := streamTools(t, tf, splitAt(text, cuts), content)
		if sc != content || !reflect.DeepEqual(scalls, calls) {
			t.Fatalf("streamed %q %+v, one-shot %q %+v", sc, scalls, content, calls)
		}
		if calls == nil {
			if content != text {
				t.Fatalf("no calls, but content %q is not the text %q", content, text)
			}
			return
		}
		if !strings.HasPrefix(text, content) || !strings.HasPrefix(trimLeftWS(text[len(content):]), tf.open) {
			t.Fatalf("content %q is not the text before the markup of %q", content, text)
		}
		var b strings.Builder
		b.WriteString(tf.open + "[")
		for i, c := range calls {
			if c.Function.Name == "" || c.Type != "function" || !json.Valid([]byte(c.Function.Arguments)) || c.Function.Arguments[0] != '{' {
				t.Fatalf("call %+v", c)
			}
			name, _ := json.Marshal(c.Function.Name)
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(`{"name": ` + string(name) + `, "arguments": ` + c.Function.Arguments + "}")
		}
		b.WriteString("]" + tf.close)
		if _, again := parseToolCalls(tf, b.String()); !reflect.DeepEqual(again, calls) {
			t.Fatalf("calls %+v render as %q, which parses as %+v", calls, b.String(), again)
		}
	})
}
