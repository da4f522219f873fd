package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/jamba-go/jamba/engine"
)

// errorBody is the OpenAI error body, with param and code kept nullable.
type errorBody struct {
	Error *struct {
		Message string  `json:"message"`
		Type    string  `json:"type"`
		Param   *string `json:"param"`
		Code    *string `json:"code"`
	} `json:"error"`
}

const chatOK = `"messages":[{"role":"user","content":"hi"}],"max_tokens":2`

// TestBadRequests sends every bad input of reliability.md §1.4 and §1.5
// that applies to this server and checks status, error type and param;
// after each, a good request must still get 200.
func TestBadRequests(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 2, Context: 64}, Config{MaxBodyBytes: 4096, MaxHeaderBytes: 4096})
	const chat, comp = "/v1/chat/completions", "/v1/completions"
	long := strings.Repeat("x := 1\\n", 40) // about 120 tokens, above the context of 64
	stops := func(n int) string {
		s := make([]string, n)
		for i := range s {
			s[i] = fmt.Sprintf("%q", fmt.Sprint("s", i))
		}
		return "[" + strings.Join(s, ",") + "]"
	}
	cases := []struct {
		name, path, body string
		status           int
		param, code, msg string // param "" means null; msg is a substring of the message
	}{
		// Bodies that are not one JSON object.
		{"not JSON", chat, `{"messages":`, 400, "", "", "not valid JSON"},
		{"empty body", chat, ``, 400, "", "", "empty"},
		{"array body", chat, `[1]`, 400, "", "", "JSON object"},
		{"string body", chat, `"hi"`, 400, "", "", "JSON object"},
		{"null body", chat, `null`, 400, "", "", "JSON object"},
		{"trailing bytes", chat, `{` + chatOK + `} x`, 400, "", "", "after the JSON object"},
		{"two objects", chat, `{` + chatOK + `}{}`, 400, "", "", "after the JSON object"},
		{"NaN literal", chat, `{` + chatOK + `,"temperature":NaN}`, 400, "", "", "not valid JSON"},
		{"duplicate key", chat, `{` + chatOK + `,"max_tokens":3}`, 400, "max_tokens", "", "twice"},
		// Known fields of the wrong type.
		{"max_tokens string", chat, `{` + chatOK + `,"max_tokens":"10"}`, 400, "max_tokens", "", ""},
		{"stream string", chat, `{` + chatOK + `,"stream":"yes"}`, 400, "stream", "", "boolean"},
		{"model number", chat, `{` + chatOK + `,"model":5}`, 400, "model", "", "string"},
		{"temperature string", chat, `{` + chatOK + `,"temperature":"hot"}`, 400, "temperature", "", "number"},
		{"seed fraction", chat, `{` + chatOK + `,"seed":1.5}`, 400, "seed", "", "integer"},
		{"logprobs number", chat, `{` + chatOK + `,"logprobs":1}`, 400, "logprobs", "", "boolean"},
		{"stream_options array", chat, `{` + chatOK + `,"stream":true,"stream_options":[]}`, 400, "stream_options", "", "object"},
		// Lengths.
		{"max_tokens 0", chat, `{"messages":[{"role":"user","content":"hi"}],"max_tokens":0}`, 400, "max_tokens", "", "got 0"},
		{"max_tokens -1", chat, `{"messages":[{"role":"user","content":"hi"}],"max_tokens":-1}`, 400, "max_tokens", "", "got -1"},
		{"max_tokens fraction", chat, `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1.5}`, 400, "max_tokens", "", "1.5"},
		{"max_tokens exponent", chat, `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1e3}`, 400, "max_tokens", "", "integer"},
		{"max_completion_tokens 0", chat, `{` + chatOK + `,"max_completion_tokens":0}`, 400, "max_completion_tokens", "", ""},
		{"prompt over context", chat, `{"messages":[{"role":"user","content":"` + long + `"}]}`, 400, "messages", "context_length_exceeded", "64"},
		{"prompt+max over context", chat, `{"messages":[{"role":"user","content":"hi"}],"max_tokens":60}`, 400, "max_tokens", "context_length_exceeded", "60"},
		{"completion over context", comp, `{"prompt":"` + long + `"}`, 400, "prompt", "context_length_exceeded", "64"},
		// Sampling ranges.
		{"temperature 3", chat, `{` + chatOK + `,"temperature":3}`, 400, "temperature", "", "[0, 2]"},
		{"temperature -0.1", chat, `{` + chatOK + `,"temperature":-0.1}`, 400, "temperature", "", ""},
		{"temperature 1e309", chat, `{` + chatOK + `,"temperature":1e309}`, 400, "temperature", "", "finite"},
		{"top_p 0", chat, `{` + chatOK + `,"top_p":0}`, 400, "top_p", "", "(0, 1]"},
		{"top_p 1.5", chat, `{` + chatOK + `,"top_p":1.5}`, 400, "top_p", "", ""},
		{"top_k -2", chat, `{` + chatOK + `,"top_k":-2}`, 400, "top_k", "", "-2"},
		{"min_p 1.5", chat, `{` + chatOK + `,"min_p":1.5}`, 400, "min_p", "", ""},
		{"presence 3", chat, `{` + chatOK + `,"presence_penalty":3}`, 400, "presence_penalty", "", "[-2, 2]"},
		{"frequency -3", chat, `{` + chatOK + `,"frequency_penalty":-3}`, 400, "frequency_penalty", "", ""},
		{"repetition 0", chat, `{` + chatOK + `,"repetition_penalty":0}`, 400, "repetition_penalty", "", ""},
		{"seed beyond int64", chat, `{` + chatOK + `,"seed":9223372036854775808}`, 400, "seed", "", "out of range"},
		{"n 129", chat, `{` + chatOK + `,"n":129}`, 400, "n", "", "got 129"},
		{"n over the slots", chat, `{` + chatOK + `,"n":3}`, 400, "n", "", "--max-batch"},
		{"best_of chat", chat, `{` + chatOK + `,"best_of":3}`, 400, "best_of", "", "not supported"},
		{"n 0", chat, `{` + chatOK + `,"n":0}`, 400, "n", "", ""},
		{"min_tokens -1", chat, `{` + chatOK + `,"min_tokens":-1}`, 400, "min_tokens", "", ""},
		// Stop sequences.
		{"stop empty string", chat, `{` + chatOK + `,"stop":["a",""]}`, 400, "stop", "", "empty"},
		{"stop too many", chat, `{` + chatOK + `,"stop":` + stops(17) + `}`, 400, "stop", "", "16"},
		{"stop too long", chat, `{` + chatOK + `,"stop":"` + strings.Repeat("a", 257) + `"}`, 400, "stop", "", "256"},
		{"stop number", chat, `{` + chatOK + `,"stop":5}`, 400, "stop", "", ""},
		{"stop list of numbers", chat, `{` + chatOK + `,"stop":[5]}`, 400, "stop", "", ""},
		{"stop_token_ids outside vocab", chat, `{` + chatOK + `,"stop_token_ids":[4096]}`, 400, "stop_token_ids", "", "4096"},
		// Log-probabilities.
		{"top_logprobs 21", chat, `{` + chatOK + `,"logprobs":true,"top_logprobs":21}`, 400, "top_logprobs", "", "[0, 20]"},
		{"top_logprobs without logprobs", chat, `{` + chatOK + `,"top_logprobs":2}`, 400, "top_logprobs", "", "logprobs"},
		{"completion logprobs 21", comp, `{"prompt":"a","logprobs":21}`, 400, "logprobs", "", ""},
		{"completion logprobs bool", comp, `{"prompt":"a","logprobs":true}`, 400, "logprobs", "", "integer"},
		// Logit bias.
		{"logit_bias key", chat, `{` + chatOK + `,"logit_bias":{"abc":1}}`, 400, "logit_bias", "", "abc"},
		{"logit_bias outside vocab", chat, `{` + chatOK + `,"logit_bias":{"99999":1}}`, 400, "logit_bias", "", "99999"},
		{"logit_bias value", chat, `{` + chatOK + `,"logit_bias":{"5":"x"}}`, 400, "logit_bias", "", ""},
		// Formats and tools.
		{"response_format json_schema unsupported", chat, `{` + chatOK + `,"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":"object","properties":{"a":{"type":"array","uniqueItems":true}}}}}}`, 400, "response_format.json_schema.schema.properties.a", "unsupported_schema", "\"uniqueItems\" is not supported"},
		{"response_format json_schema bad", chat, `{` + chatOK + `,"response_format":{"type":"json_schema","json_schema":{"schema":{"type":"integer","minimum":3,"maximum":2}}}}`, 400, "response_format.json_schema.schema", "", "leave no integer"},
		{"response_format json_schema missing", chat, `{` + chatOK + `,"response_format":{"type":"json_schema"}}`, 400, "response_format.json_schema", "", "required"},
		{"response_format schema not an object", comp, `{"prompt":"a","response_format":{"type":"json_schema","json_schema":{"schema":[]}}}`, 400, "response_format.json_schema.schema", "", "object"},
		{"response_format malformed", chat, `{` + chatOK + `,"response_format":"json"}`, 400, "response_format", "", ""},
		{"response_format unknown", chat, `{` + chatOK + `,"response_format":{"type":"yaml"}}`, 400, "response_format.type", "", ""},
		{"tools empty", chat, `{` + chatOK + `,"tools":[]}`, 400, "tools", "", "empty"},
		{"tools malformed", chat, `{` + chatOK + `,"tools":[{"type":"function"}]}`, 400, "tools[0]", "", ""},
		{"tool_choice without tools", chat, `{` + chatOK + `,"tool_choice":"auto"}`, 400, "tool_choice", "", "tools"},
		{"tool_choice absent tool", chat, `{` + chatOK + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`, 400, "tool_choice", "", "\"g\""},
		{"tool_choice required", chat, `{` + chatOK + `,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":"required"}`, 400, "tool_choice", "", ""},
		{"stream_options without stream", chat, `{` + chatOK + `,"stream_options":{"include_usage":true}}`, 400, "stream_options", "", "stream"},
		// Messages.
		{"messages missing", chat, `{"max_tokens":2}`, 400, "messages", "", "required"},
		{"messages null", chat, `{"messages":null}`, 400, "messages", "", "required"},
		{"messages string", chat, `{"messages":"hi"}`, 400, "messages", "", "array"},
		{"messages empty", chat, `{"messages":[]}`, 400, "messages", "", "empty"},
		{"messages [123]", chat, `{"messages":[123]}`, 400, "messages", "", ""},
		{"messages [{}]", chat, `{"messages":[{}]}`, 400, "messages[0].role", "", ""},
		{"role number", chat, `{"messages":[{"role":5,"content":"x"}]}`, 400, "messages[0].role", "", "string"},
		{"role unknown", chat, `{"messages":[{"role":"wizard","content":"x"}]}`, 400, "messages[0].role", "", "wizard"},
		{"content number", chat, `{"messages":[{"role":"user","content":5}]}`, 400, "messages[0].content", "", ""},
		{"content missing", chat, `{"messages":[{"role":"user"}]}`, 400, "messages[0].content", "", ""},
		{"content image", chat, `{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"x"}}]}]}`, 400, "messages[0].content[0].type", "", "image_url"},
		// Completion prompts.
		{"prompt missing", comp, `{"max_tokens":2}`, 400, "prompt", "", "required"},
		{"prompt []", comp, `{"prompt":[]}`, 400, "prompt", "", "empty"},
		{"prompt [-1]", comp, `{"prompt":[-1]}`, 400, "prompt", "", "-1"},
		{"prompt beyond vocab", comp, `{"prompt":[1,4096]}`, 400, "prompt", "", "4096"},
		{"prompt fraction id", comp, `{"prompt":[1.5]}`, 400, "prompt", "", "integer"},
		{"prompt two strings", comp, `{"prompt":["a","b"]}`, 400, "prompt", "", "one per request"},
		{"prompt two id lists", comp, `{"prompt":[[1],[2]]}`, 400, "prompt", "", ""},
		{"prompt [[]]", comp, `{"prompt":[[]]}`, 400, "prompt", "", "empty"},
		{"prompt number", comp, `{"prompt":5}`, 400, "prompt", "", ""},
		{"echo", comp, `{"prompt":"a","echo":true}`, 400, "echo", "", ""},
		{"suffix", comp, `{"prompt":"a","suffix":"b"}`, 400, "suffix", "", ""},
		{"best_of", comp, `{"prompt":"a","best_of":2}`, 400, "best_of", "", "not supported"},
		// Models.
		{"unknown model", chat, `{` + chatOK + `,"model":"gpt-4o"}`, 404, "model", "model_not_found", "gpt-4o"},
		{"unknown completion model", comp, `{"prompt":"a","model":"llama"}`, 404, "model", "model_not_found", ""},
		// Body size.
		{"body over limit", comp, `{"prompt":"` + strings.Repeat("a", 5000) + `"}`, 413, "", "", "4096"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.post(tc.path, tc.body)
			checkError(t, resp, body, tc.status, "invalid_request_error", tc.param, tc.code, tc.msg)
			good, gb := e.post(tc.path, `{"messages":[{"role":"user","content":"hi"}],"prompt":"a","max_tokens":2}`)
			if good.StatusCode != 200 {
				t.Errorf("good request after it: %d %s", good.StatusCode, gb)
			}
		})
	}
	waitIdle(t, e.eng)
}

func checkError(t *testing.T, resp *http.Response, body []byte, status int, typ, param, code, msg string) {
	t.Helper()
	if resp.StatusCode != status {
		t.Errorf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type %q", ct)
	}
	var eb errorBody
	if err := json.Unmarshal(body, &eb); err != nil || eb.Error == nil {
		t.Fatalf("body is not an OpenAI error: %s", body)
	}
	got := func(p *string) string {
		if p == nil {
			return ""
		}
		return *p
	}
	if eb.Error.Type != typ || got(eb.Error.Param) != param || got(eb.Error.Code) != code {
		t.Errorf("error %+v param %q code %q, want type %q param %q code %q", eb.Error, got(eb.Error.Param), got(eb.Error.Code), typ, param, code)
	}
	if !strings.Contains(eb.Error.Message, msg) {
		t.Errorf("message %q does not mention %q", eb.Error.Message, msg)
	}
	if strings.Contains(eb.Error.Message, "0x") || strings.Contains(eb.Error.Message, ".go:") {
		t.Errorf("message leaks internals: %q", eb.Error.Message)
	}
}

// TestAcceptedInputs lists inputs that look odd but are valid.
func TestAcceptedInputs(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 2, Context: 64}, Config{Aliases: []string{"alias"}})
	for _, tc := range []struct{ name, path, body string }{
		{"empty prompt is BOS only", "/v1/completions", `{"prompt":"","max_tokens":2}`},
		{"prompt as one string in a list", "/v1/completions", `{"prompt":["a"],"max_tokens":2}`},
		{"prompt as one id list in a list", "/v1/completions", `{"prompt":[[1,5]],"max_tokens":2}`},
		{"prompt of context-1 tokens", "/v1/completions", `{"prompt":[` + strings.Repeat("5,", 62) + `1],"max_tokens":1}`},
		{"unknown fields of any type", "/v1/chat/completions", `{` + chatOK + `,"foo":{"bar":[1,2]},"Max_Tokens":"x","reasoning_effort":7}`},
		{"metadata fields", "/v1/chat/completions", `{` + chatOK + `,"user":"u","store":false,"metadata":{"a":"b"},"service_tier":"auto","parallel_tool_calls":true}`},
		{"nulls for optional fields", "/v1/chat/completions", `{` + chatOK + `,"temperature":null,"stop":null,"seed":null,"n":null,"logprobs":null,"tools":null}`},
		{"alias", "/v1/chat/completions", `{` + chatOK + `,"model":"alias"}`},
		{"lone surrogate", "/v1/chat/completions", `{"messages":[{"role":"user","content":"a\ud800b"}],"max_tokens":2}`},
		{"invalid UTF-8", "/v1/chat/completions", "{\"messages\":[{\"role\":\"user\",\"content\":\"a\xffb\"}],\"max_tokens\":2}"},
		{"text parts", "/v1/chat/completions", `{"messages":[{"role":"user","content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}],"max_tokens":2}`},
		{"assistant tool call without content", "/v1/chat/completions", `{"messages":[{"role":"user","content":"a"},{"role":"assistant","content":null,"tool_calls":[{"id":"1","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"1","content":"2"}],"max_tokens":2}`},
		{"tools with auto", "/v1/chat/completions", `{` + chatOK + `,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object"}}}],"tool_choice":"auto"}`},
		{"response_format text", "/v1/chat/completions", `{` + chatOK + `,"response_format":{"type":"text"}}`},
		{"local sampling fields", "/v1/chat/completions", `{` + chatOK + `,"top_k":40,"min_p":0.05,"repetition_penalty":1.1,"min_tokens":1,"ignore_eos":true,"stop_token_ids":[2],"top_k":40}`},
		{"logit_bias clamped", "/v1/chat/completions", `{` + chatOK + `,"logit_bias":{"5":1000,"6":-1000}}`},
		{"content-type with charset", "/v1/chat/completions", `{` + chatOK + `}`},
		{"max_completion_tokens wins", "/v1/chat/completions", `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1000,"max_completion_tokens":2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := e.post(tc.path, tc.body)
			if tc.name == "local sampling fields" {
				// The body repeats top_k on purpose: duplicates are refused.
				if resp.StatusCode != 400 {
					t.Errorf("duplicate top_k: %d %s", resp.StatusCode, body)
				}
				return
			}
			if resp.StatusCode != 200 {
				t.Errorf("%d %s", resp.StatusCode, body)
			}
		})
	}
}

// TestHTTPErrors covers the errors that come before a request body is
// decoded: paths, methods, content type, header size.
func TestHTTPErrors(t *testing.T) {
	e := newEnv(t, engine.Config{MaxBatch: 1}, Config{MaxHeaderBytes: 4096})
	do := func(method, path, ctype, body string, hdr map[string]string) (*http.Response, []byte) {
		req, _ := http.NewRequest(method, e.url+path, strings.NewReader(body))
		if ctype != "" {
			req.Header.Set("Content-Type", ctype)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := e.ts.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	resp, body := do("GET", "/v1/nothing", "", "", nil)
	checkError(t, resp, body, 404, "invalid_request_error", "", "", "/v1/nothing")
	resp, body = do("GET", "/", "", "", nil)
	checkError(t, resp, body, 404, "invalid_request_error", "", "", "")
	resp, body = do("PUT", "/v1/chat/completions", "application/json", "{}", nil)
	checkError(t, resp, body, 405, "invalid_request_error", "", "", "PUT")
	if resp.Header.Get("Allow") != "POST" {
		t.Errorf("Allow %q", resp.Header.Get("Allow"))
	}
	resp, body = do("GET", "/v1/completions", "", "", nil)
	checkError(t, resp, body, 405, "invalid_request_error", "", "", "GET")
	resp, body = do("POST", "/health", "application/json", "{}", nil)
	checkError(t, resp, body, 405, "invalid_request_error", "", "", "")
	resp, body = do("POST", "/v1/chat/completions", "text/plain", `{`+chatOK+`}`, nil)
	checkError(t, resp, body, 400, "invalid_request_error", "", "", "application/json")
	resp, body = do("POST", "/v1/chat/completions", "", `{`+chatOK+`}`, nil)
	checkError(t, resp, body, 400, "invalid_request_error", "", "", "Content-Type")
	resp, body = do("POST", "/v1/chat/completions", "application/x-www-form-urlencoded", `{`+chatOK+`}`, nil)
	checkError(t, resp, body, 400, "invalid_request_error", "", "", "")
	resp, body = do("POST", "/v1/chat/completions", "application/json", `{`+chatOK+`}`, map[string]string{"X-Big": strings.Repeat("a", 5000)})
	checkError(t, resp, body, 431, "invalid_request_error", "", "", "4096")
	resp, body = do("POST", "/v1/chat/completions", "application/json; charset=utf-8", `{`+chatOK+`}`, nil)
	if resp.StatusCode != 200 {
		t.Errorf("charset parameter: %d %s", resp.StatusCode, body)
	}
	resp, _ = do("HEAD", "/health", "", "", nil)
	if resp.StatusCode != 200 {
		t.Errorf("HEAD /health: %d", resp.StatusCode)
	}
}
