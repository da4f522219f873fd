package chat

import (
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// render compiles src and renders it with vars as extra variables.
func render(t *testing.T, src string, vars map[string]any) (string, error) {
	t.Helper()
	tmpl, err := New(src)
	if err != nil {
		t.Fatalf("compile %q: %v", src, err)
	}
	return tmpl.Render(Input{Extra: vars})
}

func mustDecode(t *testing.T, s string) any {
	t.Helper()
	v, err := DecodeJSONOrdered([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// The expected strings are what Python's json.dumps(x, ensure_ascii=False,
// indent=..., separators=..., sort_keys=...) prints, which is what
// transformers' tojson filter calls.
func TestToJSON(t *testing.T) {
	x := `{"b": 1, "a": [1, 2.0, "x", null, true], "e": {}, "l": []}`
	for _, tc := range []struct{ expr, want string }{
		{`x|tojson`, `{"b": 1, "a": [1, 2.0, "x", null, true], "e": {}, "l": []}`},
		{`x|tojson(indent=2)`, "{\n  \"b\": 1,\n  \"a\": [\n    1,\n    2.0,\n    \"x\",\n    null,\n    true\n  ],\n  \"e\": {},\n  \"l\": []\n}"},
		{`x|tojson(indent=0)`, "{\n\"b\": 1,\n\"a\": [\n1,\n2.0,\n\"x\",\nnull,\ntrue\n],\n\"e\": {},\n\"l\": []\n}"},
		{`x.a|tojson(indent="\t")`, "[\n\t1,\n\t2.0,\n\t\"x\",\n\tnull,\n\ttrue\n]"},
		{`x|tojson(separators=(",", ":"))`, `{"b":1,"a":[1,2.0,"x",null,true],"e":{},"l":[]}`},
		{`x|tojson(sort_keys=true)`, `{"a": [1, 2.0, "x", null, true], "b": 1, "e": {}, "l": []}`},
		{`x.b|tojson`, `1`},
		{`none|tojson`, `null`},
		{`"it's"|tojson`, `"it's"`},
	} {
		got, err := render(t, "{{ "+tc.expr+" }}", map[string]any{"x": mustDecode(t, x)})
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

func TestToJSONEscaping(t *testing.T) {
	s := "q\"b\\s/\n\r\t\b\f\x01\x1f\x7f<>&é😀\u2028"
	for _, tc := range []struct{ expr, want string }{
		{`s|tojson`, `"q\"b\\s/\n\r\t\b\f\u0001\u001f` + "\x7f<>&é😀\u2028" + `"`},
		{`s|tojson(ensure_ascii=true)`, `"q\"b\\s/\n\r\t\b\f\u0001\u001f\u007f<>&\u00e9\ud83d\ude00\u2028"`},
		{`{"é": 1}|tojson`, `{"é": 1}`},
	} {
		got, err := render(t, "{{ "+tc.expr+" }}", map[string]any{"s": s})
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

// TestPyFloatRepr checks Python's repr(float) for the cases where Go's
// formatting differs.
func TestPyFloatRepr(t *testing.T) {
	for _, tc := range []struct {
		f    float64
		want string
	}{
		{0, "0.0"}, {math.Copysign(0, -1), "-0.0"}, {1, "1.0"}, {100, "100.0"},
		{0.1, "0.1"}, {1.5, "1.5"}, {0.0001, "0.0001"}, {0.00001, "1e-05"},
		{1e15, "1000000000000000.0"}, {1e16, "1e+16"}, {1.5e16, "1.5e+16"},
		{123456789012345678, "1.2345678901234568e+17"}, {1234567.0, "1234567.0"},
		{-2.5e-7, "-2.5e-07"}, {1e100, "1e+100"},
	} {
		if got := pyFloatRepr(tc.f); got != tc.want {
			t.Errorf("pyFloatRepr(%v) = %s, want %s", tc.f, got, tc.want)
		}
	}
}

func TestToJSONNonFinite(t *testing.T) {
	got, err := render(t, `{{ x|tojson }}`, map[string]any{"x": []any{math.NaN(), math.Inf(1), math.Inf(-1)}})
	if err != nil || got != "[NaN, Infinity, -Infinity]" {
		t.Errorf("got %q, %v", got, err)
	}
}

// TestKeyOrder checks that objects decoded from JSON keep their order
// through tojson, items() and for loops, and that Go maps are sorted.
func TestKeyOrder(t *testing.T) {
	x := mustDecode(t, `{"zeta": 1, "alpha": {"y": 2, "x": 3}, "mid": 4}`)
	got, err := render(t, `{{ x|tojson }}|{% for k, v in x.items() %}{{ k }},{% endfor %}|{% for k in x %}{{ k }},{% endfor %}|{{ m|tojson }}`,
		map[string]any{"x": x, "m": map[string]any{"b": 1, "a": 2}})
	want := `{"zeta": 1, "alpha": {"y": 2, "x": 3}, "mid": 4}|zeta,alpha,mid,|zeta,alpha,mid,|{"a": 2, "b": 1}`
	if err != nil || got != want {
		t.Errorf("got %q, %v\nwant %q", got, err, want)
	}
}

func TestRaiseException(t *testing.T) {
	_, err := render(t, `{% if x %}{{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}{% endif %}`, map[string]any{"x": true})
	var te *TemplateError
	if !errors.As(err, &te) {
		t.Fatalf("err = %v, want a *TemplateError", err)
	}
	if te.Message != "Conversation roles must alternate user/assistant/user/assistant/..." {
		t.Errorf("message = %q", te.Message)
	}
	if _, err := render(t, `{% if x %}{{ raise_exception("no") }}{% endif %}ok`, map[string]any{"x": false}); err != nil {
		t.Errorf("untaken branch raised: %v", err)
	}
}

func TestStrftimeNow(t *testing.T) {
	now := time.Date(2026, time.March, 5, 14, 7, 9, 123456000, time.UTC)
	tmpl, err := New(`{{ strftime_now("%d %B %Y") }}|{{ strftime_now("%-d %b %y %H:%M:%S %I%p %a %A %j %m %f %%") }}|{{ strftime_now("%Y-%m-%d") }}`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tmpl.Render(Input{Now: now})
	want := "05 March 2026|5 Mar 26 14:07:09 02PM Thu Thursday 064 03 123456 %|2026-03-05"
	if err != nil || got != want {
		t.Errorf("got %q, %v\nwant %q", got, err, want)
	}
	// Without Now it reports today.
	got, err = tmpl.Render(Input{})
	if err != nil || !strings.HasSuffix(got, time.Now().Format("2006-01-02")) {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestStarCall(t *testing.T) {
	src := `{% macro m(a, b, c="C") %}{{ a }}-{{ b }}-{{ c }}{% endmacro %}` +
		`{% set fs = [m] %}{% set args = [["x", "y"]] %}` +
		`{{ m(*["1", "2"]) }}|{{ fs[0](*args[0]) }}|{{ m("p", *["q"], c="r") }}|{{ m(**{"a": 1, "b": 2}) }}|{{ m(
*["n", "l"]) }}`
	got, err := render(t, src, nil)
	want := "1-2-C|x-y-C|p-q-r|1-2-C|n-l-C"
	if err != nil || got != want {
		t.Errorf("got %q, %v, want %q", got, err, want)
	}
}

func TestStrMethods(t *testing.T) {
	for _, tc := range []struct{ expr, want string }{
		{`"  a b  "|string + "." + "  a b \v".strip() + "."`, "  a b  .a b."},
		{`"xxaxx".strip("x") ~ "xxaxx".lstrip("x") ~ "xxaxx".rstrip("x")`, "aaxxxxa"},
		{`"a,b,c".split(",", 1)|tojson`, `["a", "b,c"]`},
		{`"a,b,c".rsplit(",", 1)|tojson`, `["a,b", "c"]`},
		{`" a  b c ".split()|tojson`, `["a", "b", "c"]`},
		{`" a  b c ".split(none, 1)|tojson`, `["a", "b c "]`},
		{`" a  b c ".rsplit(none, 1)|tojson`, `[" a  b", "c"]`},
		{`"l1\nl2\r\nl3".splitlines()|tojson`, `["l1", "l2", "l3"]`},
		{`"<tool_response>x".startswith(("<a>", "<tool_response>"))`, "True"},
		{`"abc".endswith("bc")`, "True"},
		{`"hello wORLD they're".title()`, "Hello World They'Re"},
		{`"hELLO".capitalize()`, "Hello"},
		{`"123".isdigit() ~ "12a".isdigit() ~ "".isdigit()`, "TrueFalseFalse"},
		{`"abc".islower() ~ "ABC".isupper() ~ "aBc".islower()`, "TrueTrueFalse"},
		{`"prefix-x".removeprefix("prefix-") ~ "x.py".removesuffix(".py")`, "xx"},
		{`"ééa".find("a") ~ "abab".rfind("ab") ~ "abab".count("ab")`, "222"},
		{`"a-b-c".replace("-", "+", 1)`, "a+b-c"},
		{`", ".join(["a", "b"])`, "a, b"},
		{`[1, 2, 2].count(2) ~ [1, 2, 3].index(3)`, "22"},
		{`"x"|upper ~ "ABC".lower()`, "Xabc"},
		{`"first-name (x)"|title`, "First-Name (X)"},
		{`none|string ~ [1, "a", none]|string ~ {"k": "it's"}|string`, `None[1, 'a', None]{'k': "it's"}`},
		{`{"a": 1, "b": 2}|list|tojson`, `["a", "b"]`},
		{`"\x41\u00e9\101\x27\x5c\q"`, `AéA'\\q`},
		{`"a\rb"|tojson`, `"a\rb"`},
	} {
		got, err := render(t, "{{ "+tc.expr+" }}", nil)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		if got != tc.want {
			t.Errorf("%s = %q, want %q", tc.expr, got, tc.want)
		}
	}
}

func TestMethodOnMissingValue(t *testing.T) {
	if _, err := render(t, `{{ x.strip() }}`, nil); err == nil {
		t.Error("strip on an undefined value did not fail")
	}
}

// TestRewriteKeepsLines checks that the source edits keep line numbers, so
// that errors point at the right line.
func TestRewriteKeepsLines(t *testing.T) {
	src := "{{ a|tojson }}\n{{ f(\n*b) }}\n{% raw %}{{ x|tojson }}{% endraw %}\n{# y|tojson #}{{ 'a|tojson' }}\n"
	out := rewriteSource(src)
	if strings.Count(out, "\n") != strings.Count(src, "\n") {
		t.Errorf("lines changed:\n%s", out)
	}
	if !strings.Contains(out, "{% raw %}{{ x|tojson }}{% endraw %}") || !strings.Contains(out, "{# y|tojson #}{{ 'a|tojson' }}") {
		t.Errorf("raw block, comment or string literal rewritten:\n%s", out)
	}
	_, err := New("line 1\n{% if x %}\n{{ y }}\n{% for %}\n")
	if err == nil || !strings.Contains(err.Error(), "line 4") {
		t.Errorf("error %v does not name line 4", err)
	}
}

func TestRenderInputs(t *testing.T) {
	tmpl, err := New(`{{ bos_token is defined }},{{ eos_token }},{{ tools is none }},{{ documents is none }},{{ add_generation_prompt }},{{ enable_thinking }},{{ messages[0].content[0].text }}`)
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := DecodeMessages([]byte(`[{"role": "user", "content": [{"type": "text", "text": "hi"}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := tmpl.Render(Input{Messages: msgs, EOS: "</s>", AddGenerationPrompt: true, Extra: map[string]any{"enable_thinking": false}})
	want := "False,</s>,True,True,True,False,hi"
	if err != nil || got != want {
		t.Errorf("got %q, %v, want %q", got, err, want)
	}
}

// TestRenderDoesNotMutateInput checks that a template changing its data
// leaves the caller's messages alone.
func TestRenderDoesNotMutateInput(t *testing.T) {
	tmpl, err := New(`{% set _ = messages[0].update({"role": "x"}) %}{{ messages[0].role }}`)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []Message{NewMessage("user", "hi")}
	if got, err := tmpl.Render(Input{Messages: msgs}); err != nil || got != "x" {
		t.Fatalf("got %q, %v", got, err)
	}
	if role, _ := msgs[0].Get("role"); role != "user" {
		t.Errorf("role changed to %v", role)
	}
}

func TestDecodeJSONOrdered(t *testing.T) {
	v := mustDecode(t, `{"b": [1, 1.0, 1e2, -0, 12345678901234567890], "a": null, "b2": "x", "b": "dup"}`)
	o := v.(Object)
	if got := strings.Join(o.Keys(), ","); got != "b,a,b2" {
		t.Errorf("keys %s", got)
	}
	if b, _ := o.Get("b"); b != "dup" {
		t.Errorf("repeated key kept %v", b)
	}
	nums := mustDecode(t, `[1, 1.0, 1e2, 12345678901234567890]`).([]any)
	if _, ok := nums[0].(int64); !ok {
		t.Errorf("1 decoded as %T", nums[0])
	}
	for _, n := range nums[1:] {
		if _, ok := n.(float64); !ok {
			t.Errorf("%v decoded as %T", n, n)
		}
	}
	for _, bad := range []string{``, `{`, `{"a" 1}`, `[1,]`, `1 2`, `{1: 2}`} {
		if _, err := DecodeJSONOrdered([]byte(bad)); err == nil {
			t.Errorf("%q decoded without error", bad)
		}
	}
	if _, err := DecodeMessages([]byte(`[{"role": "user"}, 3]`)); err == nil {
		t.Error("a number as a message decoded")
	}
	data, err := o.MarshalJSON()
	if err != nil || string(data) != `{"b":"dup","a":null,"b2":"x"}` {
		t.Errorf("MarshalJSON = %s, %v", data, err)
	}
}

func TestDefault(t *testing.T) {
	msgs, err := DecodeMessages([]byte(`[{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi"}, {"type": "image_url"}, {"type": "text", "text": " there"}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := Default().Render(Input{Messages: msgs, AddGenerationPrompt: true})
	want := "system: Be brief.\n\nuser: Hi there\n\nassistant:"
	if err != nil || got != want {
		t.Errorf("got %q, %v, want %q", got, err, want)
	}
	got, _ = Default().Render(Input{Messages: msgs[:1]})
	if got != "system: Be brief.\n\n" {
		t.Errorf("without generation prompt: %q", got)
	}
}

func TestFromTokenizerConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write("a.json", `{"bos_token": "<s>", "eos_token": {"content": "</s>", "lstrip": false}, "pad_token": null,
		"chat_template": [{"name": "tool_use", "template": "T"}, {"name": "default", "template": "{{ bos_token }}D"}]}`)
	tmpl, tokens, err := FromTokenizerConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	if tokens["bos_token"] != "<s>" || tokens["eos_token"] != "</s>" || len(tokens) != 2 {
		t.Errorf("tokens %v", tokens)
	}
	if got, _ := tmpl.Render(Input{BOS: tokens["bos_token"]}); got != "<s>D" {
		t.Errorf("rendered %q", got)
	}

	p = write("b.json", `{"chat_template": "S{{ 1 + 1 }}"}`)
	if tmpl, _, err = FromTokenizerConfig(p); err != nil {
		t.Fatal(err)
	}
	if got, _ := tmpl.Render(Input{}); got != "S2" {
		t.Errorf("rendered %q", got)
	}

	p = write("c.json", `{"eos_token": "e"}`)
	_, tokens, err = FromTokenizerConfig(p)
	if !errors.Is(err, ErrNoTemplate) || tokens["eos_token"] != "e" {
		t.Errorf("no template: %v, %v", err, tokens)
	}
	write("chat_template.jinja", "J")
	if tmpl, _, err = FromTokenizerConfig(p); err != nil {
		t.Fatal(err)
	}
	if got, _ := tmpl.Render(Input{}); got != "J" {
		t.Errorf("chat_template.jinja rendered %q", got)
	}

	for _, bad := range []string{`{"chat_template": 3}`, `{"chat_template": [{"name": "x", "template": ""}]}`, `{"bos_token": 1}`, `not json`, `{"chat_template": "{% if %}"}`} {
		if _, _, err := FromTokenizerConfig(write("bad.json", bad)); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}
