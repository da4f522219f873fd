package server

import (
	"encoding/json"
	"strings"
	"testing"
)

const forcedTools = `[{"type": "function", "function": {"name": "get_weather",
	"parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 12}, "days": {"type": "integer", "minimum": 1, "maximum": 7}}, "required": ["city"], "additionalProperties": false}}},
	{"type": "function", "function": {"name": "get_time", "parameters": {"type": "object", "properties": {"zone": {"enum": ["UTC", "CET"]}}, "required": ["zone"]}}}]`

// tool_choice "required" or naming a function makes a real generation of
// the demo model one call in the template's markup, with arguments valid
// under the tool's parameters, streamed and not alike.
func TestForcedToolCall(t *testing.T) {
	for _, template := range []string{"jamba-1.7-chat-template.jinja", "qwen3-chat-template.jinja"} {
		e := newToolEnv(t, template, "")
		for _, choice := range []string{`"required"`, `{"type": "function", "function": {"name": "get_time"}}`, `{"type": "function", "function": {"name": "get_weather"}}`} {
			for seed := range 2 {
				body := func(stream bool) string {
					s := `{"messages": [{"role": "user", "content": "Weather in Zürich?"}], "max_tokens": 300, "seed": ` + string(rune('0'+seed)) +
						`, "tools": ` + forcedTools + `, "tool_choice": ` + choice
					if stream {
						s += `, "stream": true`
					}
					return s + "}"
				}
				plain, streamed := chatBoth(t, e, body)
				// One call when a function is named; "required" lets Jamba's
				// list hold several.
				named := strings.Contains(choice, `"name"`)
				if plain.Finish != "tool_calls" || len(plain.Calls) == 0 || named && len(plain.Calls) != 1 {
					t.Fatalf("%s %s: %+v", template, choice, plain)
				}
				want := append([]toolCall(nil), plain.Calls...)
				for i := range want {
					want[i].ID = ""
				}
				if !sameCalls(t, streamed.Calls, want) || streamed.Finish != plain.Finish {
					t.Errorf("%s %s: streamed %+v, not %+v", template, choice, streamed, plain)
				}
				for _, call := range plain.Calls {
					c := call.Function
					if named && !strings.Contains(choice, `"`+c.Name+`"`) {
						t.Errorf("%s: tool_choice %s called %s", template, choice, c.Name)
					}
					var args map[string]any
					if err := json.Unmarshal([]byte(c.Arguments), &args); err != nil {
						t.Fatalf("arguments %q: %v", c.Arguments, err)
					}
					switch c.Name {
					case "get_weather":
						city, ok := args["city"].(string)
						if !ok || len([]rune(city)) > 12 || len(args) > 2 {
							t.Errorf("get_weather(%s)", c.Arguments)
						}
						if d, ok := args["days"]; ok && (d.(float64) < 1 || d.(float64) > 7) {
							t.Errorf("get_weather(%s)", c.Arguments)
						}
					case "get_time":
						if z := args["zone"]; z != "UTC" && z != "CET" {
							t.Errorf("get_time(%s)", c.Arguments)
						}
					default:
						t.Errorf("called %q", c.Name)
					}
				}
			}
		}
		// Parameters outside the supported subset: a 400 naming them.
		resp, data := e.post("/v1/chat/completions", `{"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {"a": {"type": "string"}}, "patternProperties": {}}}}], "tool_choice": "required"}`)
		if resp.StatusCode != 400 || !strings.Contains(string(data), `"param":"tools[0].function.parameters"`) || !strings.Contains(string(data), "patternProperties") {
			t.Errorf("unsupported parameters: %d %s", resp.StatusCode, data)
		}
	}
}
