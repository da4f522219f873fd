package structured

import (
	"encoding/json"
	"errors"
	"flag"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/jamba-go/jamba/internal/schemagen"
)

var fullSchemas = flag.Bool("schemas.full", false, "run the random-schema tests at their full count (1000 schemas) even under -short")

// schemaCount is how many random schemas a test runs: 1000, or 200
// under -short unless -schemas.full.
func schemaCount() int {
	if testing.Short() && !*fullSchemas {
		return 200
	}
	return 1000
}

// Every output generated under a random schema parses and validates with
// an independent JSON Schema validator.
func TestRandomSchemas(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	v, eos := testVocab(rng)
	n := schemaCount()
	ended := 0
	for i := range n {
		// Under a bounded schema every value has a bounded length: random
		// tokens alone must reach the end.
		bounded := i%2 == 1
		g := &schemagen.Gen{Rng: rng, Bounded: bounded}
		schema := g.Schema(3)
		gr, err := Compile([]byte(schema))
		if err != nil {
			t.Fatalf("schema %d %s: %v", i, schema, err)
		}
		ref := validator(t, []byte(schema))
		ix := NewIndex(gr, v)
		for range 3 {
			budget := rng.IntN(60)
			if bounded {
				budget = 1 << 30
			}
			out, ok := generate(t, ix, eos, rng, budget)
			if !ok {
				t.Fatalf("schema %s: no end after %q", schema, out)
			}
			ended++
			checkValid(t, ref, []byte(schema), out)
		}
	}
	t.Logf("%d schemas, %d outputs, all valid", n, ended)
}

func TestAnyObject(t *testing.T) {
	g := AnyObject()
	for _, ok := range []string{`{}`, `{"a":1}`, ` {"a": [1, 2.5e3, true, null, "x\u00e9\n"], "b": {"c": -0.5E-7}}`,
		`{"k":"日本"}`, `{"a":{"b":{"c":[[],[{}]]}}}`, "{\n\"a\":\t1}"} {
		if !accepts(g, ok) {
			t.Errorf("refused %q", ok)
		}
	}
	for _, bad := range []string{``, `[]`, `1`, `{`, `{"a":01}`, `{"a":1,}`, `{"a" 1}`, `{a:1}`, `{"a":1}x`,
		`{"a":1} `, `{"a":  1}`, `{"a":"\x01"}`, `{"a":"\ud800"}`, "{\"a\":\"\xff\"}", `{"a":"\q"}`, `{"a":1.}`,
		`{"a":-}`, `{"a":tru}`, `{"a":1234567890123456789}`} {
		if accepts(g, bad) {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestSchemaFeatures(t *testing.T) {
	cases := []struct {
		schema   string
		ok, bad  []string
		minCount int
	}{
		{`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["b"]}`,
			[]string{`{"b":""}`, `{"a":1,"b":"x"}`, `{"a": -3, "b": "x"}`},
			[]string{`{}`, `{"a":1}`, `{"b":"x","a":1}`, `{"b":1}`, `{"c":1,"b":""}`, `{"a":1.5,"b":""}`}, 0},
		{`{"type":"array","items":{"enum":["x","y",3]},"minItems":1,"maxItems":2}`,
			[]string{`["x"]`, `[3,"y"]`}, []string{`[]`, `["x","y",3]`, `["z"]`, `[4]`}, 0},
		{`{"type":"integer","minimum":-5,"maximum":120}`,
			[]string{`-5`, `0`, `120`, `99`, `7`}, []string{`-6`, `121`, `-0`, `05`, `1000`, `1.0`}, 0},
		{`{"type":"integer","exclusiveMinimum":10}`, []string{`11`, `12345`}, []string{`10`, `9`, `-1`}, 0},
		{`{"type":"string","pattern":"^[a-c]{2}\\d$"}`, []string{`"ab1"`, `"cc9"`}, []string{`"ab"`, `"abc1"`, `"ab12"`, `"x"`}, 0},
		{`{"type":"string","pattern":"b+"}`, []string{`"b"`, `"abba"`, `"xyzb!"`}, []string{`""`, `"aaa"`}, 0},
		{`{"type":"string","minLength":2,"maxLength":3}`, []string{`"ab"`, `"日本語"`, `"a\nb"`}, []string{`"a"`, `"abcd"`, `"\u0041"`}, 0},
		{`{"type":"string","format":"date"}`, []string{`"2024-02-28"`}, []string{`"2024-02-30"`, `"2024-13-01"`, `"24-01-01"`}, 0},
		{`{"type":["string","null"]}`, []string{`null`, `"s"`}, []string{`1`}, 0},
		{`{"anyOf":[{"type":"integer"},{"type":"array","items":{"type":"boolean"}}]}`, []string{`12`, `[true,false]`}, []string{`"x"`, `[1]`}, 0},
		{`{"const":{"a":[1,"b"]}}`, []string{`{"a":[1,"b"]}`}, []string{`{"a":[1, "b"]}`, `{"a":[1]}`}, 0},
		{`{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"next":{"$ref":"#/$defs/node"}},"required":["v"]}},"$ref":"#/$defs/node"}`,
			[]string{`{"v":1}`, `{"v":1,"next":{"v":2,"next":{"v":3}}}`}, []string{`{"next":{"v":1}}`}, 0},
		{`{"type":"object","additionalProperties":false}`, []string{`{}`}, []string{`{"a":1}`}, 0},
		{`{"type":"object","additionalProperties":{"type":"boolean"}}`, []string{`{}`, `{"x":true,"y":false}`}, []string{`{"x":1}`}, 0},
		{`{"type":"number","minimum":0.5,"maximum":3}`, []string{`1`, `3`, `1.5`, `2.999`, `1.0`}, []string{`0`, `4`, `3.5`, `0.7`, `3.0`}, 0},
		{`{"type":"number","minimum":0,"maximum":1}`, []string{`0`, `1`, `0.25`, `0.0001`}, []string{`1.5`, `-0.5`, `2`, `1.0`}, 0},
		{`{"type":"number","exclusiveMinimum":-2,"exclusiveMaximum":2}`, []string{`-1`, `-1.5`, `1.75`, `0.5`, `0`}, []string{`-2`, `2`, `-2.5`, `2.0`, `-0.5`}, 0},
		{`true`, []string{`1`, `"x"`, `[{"a":null}]`}, []string{`x`}, 0},
	}
	for _, c := range cases {
		g, err := Compile([]byte(c.schema))
		if err != nil {
			t.Errorf("%s: %v", c.schema, err)
			continue
		}
		for _, ok := range c.ok {
			if !accepts(g, ok) {
				t.Errorf("%s refused %s", c.schema, ok)
			}
		}
		for _, bad := range c.bad {
			if accepts(g, bad) {
				t.Errorf("%s accepted %s", c.schema, bad)
			}
		}
	}
}

func TestUnsupported(t *testing.T) {
	cases := map[string]string{
		`{"type":"string","foo":1}`:                                          "foo",
		`{"oneOf":[{"type":"string"}]}`:                                      "oneOf",
		`{"allOf":[{"type":"string"}]}`:                                      "allOf",
		`{"not":{"type":"string"}}`:                                          "not",
		`{"type":"object","patternProperties":{}}`:                           "patternProperties",
		`{"type":"array","uniqueItems":true}`:                                "uniqueItems",
		`{"type":"number","multipleOf":2}`:                                   "multipleOf",
		`{"type":"array","prefixItems":[]}`:                                  "prefixItems",
		`{"type":"string","format":"hostname"}`:                              "format",
		`{"type":"string","pattern":"\\bword"}`:                              "pattern",
		`{"type":"object","minProperties":1}`:                                "minProperties",
		`{"type":"string","minimum":1}`:                                      "minimum",
		`{"type":"object","properties":{},"required":["a"]}`:                 "required",
		`{"$ref":"http://example.com/s.json"}`:                               "$ref",
		`{"if":{"type":"string"},"then":{"minLength":1}}`:                    "if",
		`{"type":"object","dependentRequired":{}}`:                           "dependentRequired",
		`{"enum":["a"],"minLength":1}`:                                       "minLength",
		`{"type":"string","pattern":"^a$","minLength":2}`:                    "minLength",
		`{"type":"array","items":[{"type":"string"}]}`:                       "items",
		`{"type":"object","propertyNames":{"pattern":"^a"}}`:                 "propertyNames",
		`{"type":"array","contains":{"type":"string"}}`:                      "contains",
		`{"type":"object","unevaluatedProperties":false}`:                    "unevaluatedProperties",
		`{"anyOf":[{"type":"string"}],"type":"string"}`:                      "type",
		`{"type":"string","pattern":"(?=a)"}`:                                "pattern",
		`{"type":"integer","minimum":5,"maximum":4}`:                         "minimum",
		`{"type":"string","minLength":3,"maxLength":2}`:                      "minLength",
		`{"type":"string","pattern":"^\"$"}`:                                 "pattern",
		`{"type":"object","properties":{"a":{"$ref":"#"}},"required":["a"]}`: "",
	}
	for schema, kw := range cases {
		_, err := Compile([]byte(schema))
		var se *SchemaError
		if !errors.As(err, &se) {
			t.Errorf("%s: want a SchemaError, got %v", schema, err)
			continue
		}
		if se.Keyword != kw {
			t.Errorf("%s: keyword %q, want %q (%v)", schema, se.Keyword, kw, err)
		}
		if kw != "" && !strings.Contains(err.Error(), kw) {
			t.Errorf("%s: the message does not name %q: %v", schema, kw, err)
		}
	}
	for _, bad := range []string{``, `{`, `[]`, `1`, `"x"`, `{"a":1,"a":2}`, `false`} {
		if _, err := Compile([]byte(bad)); err == nil {
			t.Errorf("%q compiled", bad)
		}
	}
}

// The masks a matcher computes agree with feeding each token's bytes
// alone, token by token, for a few states of a real generation.
func TestMaskMatchesBytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	v, eos := testVocab(rng)
	for range 40 {
		g := &schemagen.Gen{Rng: rng}
		schema := g.Schema(2)
		gr, err := Compile([]byte(schema))
		if err != nil {
			t.Fatal(err)
		}
		ix := NewIndex(gr, v)
		out, _ := generate(t, ix, eos, rng, rng.IntN(30))
		// Replay a prefix and compare the mask with a direct check.
		cut := rng.IntN(len(out) + 1)
		m := ix.NewMatcher()
		st := stepper{g: gr}
		var cur, tmp multi
		gr.begin(&cur)
		for i := range cut {
			st.feed(&cur, int(out[i]), &tmp)
			cur, tmp = tmp, cur
			if !m.acceptByte(out[i]) {
				t.Fatalf("byte %d of %q refused", i, out)
			}
		}
		for id := range v.size {
			text := v.Text(id)
			want := len(text) > 0 && id != eos
			probe := multi{}
			probe.copyFrom(&cur)
			for _, c := range text {
				st.feed(&probe, int(c), &tmp)
				probe, tmp = tmp, probe
				if probe.len() == 0 {
					want = false
					break
				}
			}
			if id == eos {
				st.feed(&cur, eof, &tmp)
				want = tmp.len() > 0
			}
			if got := m.Allowed(id); got != want {
				t.Fatalf("schema %s after %q: token %q allowed %v, want %v", schema, out[:cut], text, got, want)
			}
		}
	}
}

// acceptByte advances by one byte (tests replay outputs byte by byte).
func (m *Matcher) acceptByte(c byte) bool {
	m.st.feed(&m.cur, int(c), &m.tmp)
	m.cur, m.tmp = m.tmp, m.cur
	return m.cur.len() > 0
}

func FuzzCompile(f *testing.F) {
	for _, s := range []string{`{"type":"object","properties":{"a":{"type":"string","pattern":"^x+$"}},"required":["a"]}`,
		`{"anyOf":[{"type":"integer","minimum":3},{"enum":[1,"a",null]}]}`, `{"type":"array","items":{"$ref":"#"},"maxItems":2}`,
		`{"type":"string","format":"date-time"}`, `{"type":["number","boolean"]}`, `{}`} {
		f.Add([]byte(s), uint64(1))
	}
	rng := rand.New(rand.NewPCG(5, 6))
	v, eos := testVocab(rng)
	f.Fuzz(func(t *testing.T, schema []byte, seed uint64) {
		g, err := Compile(schema)
		if err != nil {
			return
		}
		ref := validatorOrNil(schema)
		ix := NewIndex(g, v)
		r := rand.New(rand.NewPCG(seed, 7))
		out, ok := generate(t, ix, eos, r, r.IntN(20))
		if ok {
			checkValid(t, ref, schema, out)
		}
	})
}

// A token whose state is cached costs no allocation: Mask and Accept in
// the decode loop allocate nothing once an earlier generation has met
// the states.
func TestMatcherAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 9))
	v, eos := testVocab(rng)
	g, err := Compile([]byte(`{"type":"object","properties":{"a":{"type":"string"},"b":{"type":"array","items":{"type":"integer"}},"c":{"enum":["x","y"]}},"required":["a","b","c"]}`))
	if err != nil {
		t.Fatal(err)
	}
	ix := NewIndex(g, v)
	doc := `{"a": "some text", "b": [1, 22, 333], "c": "y"}`
	var ids []int
	for i := 0; i < len(doc); i++ {
		ids = append(ids, 1+int(doc[i])) // the single-byte tokens of testVocab
	}
	logits := make([]float32, v.size)
	m := ix.NewMatcher()
	replay := func() {
		m.Reset()
		for _, id := range ids {
			m.Mask(logits)
			if !m.Accept(id) {
				t.Fatalf("token %q refused", v.Text(id))
			}
		}
		if !m.Done() {
			t.Fatal("document not complete")
		}
	}
	replay() // fills the cache and the matcher's buffers
	if a := testing.AllocsPerRun(20, replay); a != 0 {
		t.Errorf("%v allocations per generation of %d tokens", a, len(ids))
	}
	_ = eos
}

func TestCompileWrapped(t *testing.T) {
	g, err := CompileWrapped([]byte(`{"type":"object","properties":{"name":{"const":"f"},"arguments":{"type":"object","properties":{"x":{"type":"integer"}},"required":["x"]}},"required":["name","arguments"]}`), "<tool_call>", "</tool_call>")
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{"<tool_call>\n{\"name\":\"f\",\"arguments\":{\"x\":1}}\n</tool_call>", `<tool_call>{"name":"f","arguments":{"x":-2}}</tool_call>`} {
		if !accepts(g, ok) {
			t.Errorf("refused %q", ok)
		}
	}
	for _, bad := range []string{`{"name":"f","arguments":{"x":1}}`, `<tool_call>{"name":"f","arguments":{"x":1}}`, `<tool_call>{"name":"g","arguments":{"x":1}}</tool_call>`,
		`<tool_call>{"name":"f","arguments":{}}</tool_call>`, "<tool_call>\n\n{\"name\":\"f\",\"arguments\":{\"x\":1}}</tool_call>", `<tool_call>{"name":"f","arguments":{"x":1}}</tool_call> `} {
		if accepts(g, bad) {
			t.Errorf("accepted %q", bad)
		}
	}
}

// FuzzAnyValue checks the JSON automaton against encoding/json: what it
// accepts is valid JSON, and valid JSON within its limits (whitespace
// runs of one byte, digit counts, no lone surrogate escapes) is
// accepted.
func FuzzAnyValue(f *testing.F) {
	for _, s := range []string{`{"a": [1, -2.5e+3, true, null, "x\u00e9\n"]}`, `[]`, `"\ud83d\ude00"`, `0`, `-0.0E-0`, `{"":{"":[]}}`, `[1,]`, `01`, "\"\xff\"", `"\u0000"`} {
		f.Add([]byte(s))
	}
	g := AnyValue()
	f.Fuzz(func(t *testing.T, b []byte) {
		got := accepts(g, string(b))
		if got && !json.Valid(b) {
			t.Fatalf("accepted invalid JSON %q", b)
		}
		if !got && json.Valid(b) && withinLimits(b) {
			t.Fatalf("refused valid JSON %q", b)
		}
	})
}

// withinLimits reports whether valid JSON b stays within what the
// automaton generates: compact apart from single whitespace bytes (no
// '\r'), numbers within the digit limits, no surrogate escapes, no
// trailing whitespace.
func withinLimits(b []byte) bool {
	if !utf8.Valid(b) { // encoding/json lets invalid UTF-8 through
		return false
	}
	if len(b) > 0 && isWS(int(b[len(b)-1])) {
		return false
	}
	inStr, esc := false, false
	run, digits := 0, 0
	for i, c := range b {
		if inStr {
			switch {
			case esc:
				esc = false
				if c == 'u' && i+1 < len(b) && (b[i+1] == 'd' || b[i+1] == 'D') {
					return false
				}
			case c == '\\':
				esc = true
			case c == '"':
				inStr = false
			}
			continue
		}
		switch {
		case c == '"':
			inStr = true
		case c == '\r':
			return false
		}
		if isWS(int(c)) {
			run++
			if run > MaxWhitespace {
				return false
			}
		} else {
			run = 0
		}
		if isDigit(int(c)) {
			digits++
			if digits > maxExpDigits { // the smallest digit limit, to be simple
				return false
			}
		} else {
			digits = 0
		}
		if c == '-' && i+2 < len(b) && b[i+1] == '0' && isDigit(int(b[i+2])) {
			return false
		}
	}
	return true
}

func TestCompileAfterMarker(t *testing.T) {
	g, err := CompileAfterMarker([]byte(`{"type":"object","properties":{"name":{"const":"f"},"arguments":{"type":"object","properties":{"x":{"type":"integer"}},"required":["x"]}},"required":["name","arguments"]}`), "<tool_call>", "</tool_call>")
	if err != nil {
		t.Fatal(err)
	}
	for _, ok := range []string{"", "just text, <tool_ca and < more", "Let me check.\n<tool_call>\n{\"name\":\"f\",\"arguments\":{\"x\":1}}\n</tool_call>",
		"<<tool_call>{\"name\":\"f\",\"arguments\":{\"x\":1}}</tool_call>\n<tool_call>{\"name\":\"f\",\"arguments\":{\"x\":2}}</tool_call>"} {
		if !accepts(g, ok) {
			t.Errorf("refused %q", ok)
		}
	}
	for _, bad := range []string{"text <tool_call>not json", "<tool_call>{\"name\":\"g\",\"arguments\":{\"x\":1}}</tool_call>",
		"<tool_call>{\"name\":\"f\",\"arguments\":{\"x\":1}}", "<tool_call>{\"name\":\"f\",\"arguments\":{\"x\":1}}</tool_call> and text",
		"x<tool_call>{\"name\":\"f\",\"arguments\":{}}</tool_call>"} {
		if accepts(g, bad) {
			t.Errorf("accepted %q", bad)
		}
	}
	// Through a matcher: free text never completes, EOS is allowed
	// outside a call and not inside one.
	rng := rand.New(rand.NewPCG(1, 1))
	v, eos := testVocab(rng)
	m := NewIndex(g, v).NewMatcher()
	for _, c := range []byte("hi <tool_call>") {
		if m.Done() || !m.Allowed(eos) || !m.Accept(1+int(c)) {
			t.Fatalf("at %q", c)
		}
	}
	if m.Allowed(eos) || m.Allowed(1+'x') || !m.Allowed(1+'{') {
		t.Error("inside the call: EOS or text allowed, or '{' refused")
	}
}
