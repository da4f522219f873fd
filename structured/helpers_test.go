package structured

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// testVocab is every single byte plus pieces a JSON-trained tokenizer
// has: structural runs, words, digits, spaces before words. Id 0 is the
// end-of-sequence token; a few ids have no text (special tokens).
func testVocab(rng *rand.Rand) (*Vocab, int) {
	toks := [][]byte{nil} // 0: EOS
	for b := range 256 {
		toks = append(toks, []byte{byte(b)})
	}
	pieces := []string{`{"`, `":`, `": `, `",`, `", "`, `"}`, `"]`, `}}`, `]}`, `},`, `[{`, `[]`, `{}`,
		`true`, `false`, `null`, ` true`, `, `, `,"`, `":"`, `name`, `id`, `value`, `items`, `a`, `ab`, `abc`,
		` the`, `ing`, `00`, `12`, `123`, `2024`, `-1`, `.5`, `e+`, `E-`, `\n`, `\"`, `\u00`, `é`, `日本`,
		"\u00e9\"", "\xe6\x97", "\xa5", "\n  ", "  ", `-`, `@`, `.com`, `T12:`, `:00Z`}
	for _, p := range pieces {
		toks = append(toks, []byte(p))
	}
	for range 200 {
		n := 2 + rng.IntN(6)
		b := make([]byte, n)
		for i := range b {
			const alphabet = " \"{}[],:0123456789abcdefxyz-.eE\\"
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		toks = append(toks, b)
	}
	toks = append(toks, nil, nil) // specials with no text
	return NewVocab(toks, []int{0}), 0
}

// generate samples one output under ix: random allowed tokens, then,
// after budget tokens, short ones that close values, so that it ends.
func generate(t testing.TB, ix *Index, eos int, rng *rand.Rand, budget int) ([]byte, bool) {
	m := ix.NewMatcher()
	logits := make([]float32, ix.v.size)
	var out []byte
	for step := 0; step < budget+4000; step++ {
		if m.Done() {
			return out, true
		}
		for i := range logits {
			logits[i] = 0
		}
		m.Mask(logits)
		var allowed []int
		for id, x := range logits {
			if !math.IsInf(float64(x), -1) {
				allowed = append(allowed, id)
			}
		}
		if len(allowed) == 0 {
			t.Fatalf("no token allowed after %q", out)
		}
		for _, id := range allowed {
			if id != eos && !m.Allowed(id) {
				t.Fatalf("Mask and Allowed disagree on %d after %q", id, out)
			}
		}
		id := allowed[rng.IntN(len(allowed))]
		if step >= budget {
			id = closer(ix, m, allowed, eos, rng)
		}
		if id == eos {
			if !m.CanEnd() {
				t.Fatalf("EOS allowed but CanEnd false after %q", out)
			}
			return out, true
		}
		if !m.Accept(id) {
			t.Fatalf("token %q refused after %q though allowed", ix.v.Text(id), out)
		}
		out = append(out, ix.v.Text(id)...)
	}
	return out, false
}

// closer picks a token that tends to finish the value: the allowed
// single byte (or EOS) whose next state is cheapest by a rough measure
// of the work left.
func closer(ix *Index, m *Matcher, allowed []int, eos int, rng *rand.Rand) int {
	best, bestCost := -1, 1<<30
	var tmp multi
	for _, id := range allowed {
		if id == eos {
			return id
		}
		t := ix.v.Text(id)
		if len(t) != 1 {
			continue
		}
		m.st.feed(&m.cur, int(t[0]), &tmp)
		c := 1 << 30
		for i := range tmp.ends {
			c = min(c, workLeft(ix.g, tmp.stack(i)))
		}
		c = c*4 + rng.IntN(4) // random among equals
		if c < bestCost {
			best, bestCost = id, c
		}
	}
	if best < 0 {
		return allowed[rng.IntN(len(allowed))]
	}
	return best
}

// workLeft is a rough count of the bytes a stack still needs.
func workLeft(g *Grammar, s []frame) int {
	w := 0
	for _, f := range s {
		n := &g.nodes[f.node]
		w += 2
		switch n.kind {
		case kString:
			if n.re != nil && f.ph != 0 {
				w += int(n.re.dist[f.m])
			}
			w += max(0, int(n.minLen-f.n))
		case kArray:
			w += 3 * max(0, int(n.minItems-f.n))
		case kObject:
			for i := f.n; i < int32(len(n.props)); i++ {
				if n.props[i].required {
					w += 3
				}
			}
		}
	}
	return w
}

// validator compiles schema with an independent JSON Schema
// implementation (formats asserted).
func validator(t testing.TB, schema []byte) *jsonschema.Schema {
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		t.Fatalf("reference validator cannot read the schema %s: %v", schema, err)
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatalf("reference validator refuses the schema %s: %v", schema, err)
	}
	return s
}

// checkValid asserts that out is one JSON value valid under s.
func checkValid(t testing.TB, s *jsonschema.Schema, schema, out []byte) {
	t.Helper()
	if !json.Valid(out) {
		t.Fatalf("output is not JSON\nschema: %s\noutput: %q", schema, out)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(out))
	if err != nil {
		t.Fatalf("reference validator cannot read %q: %v", out, err)
	}
	if s != nil {
		if err := s.Validate(v); err != nil {
			t.Fatalf("output does not validate\nschema: %s\noutput: %s\n%v", schema, out, err)
		}
	}
}

// accepts feeds text byte by byte and reports whether it is a complete
// document.
func accepts(g *Grammar, text string) bool {
	st := stepper{g: g}
	var cur, tmp multi
	g.begin(&cur)
	for i := 0; i < len(text); i++ {
		st.feed(&cur, int(text[i]), &tmp)
		cur, tmp = tmp, cur
		if cur.len() == 0 {
			return false
		}
	}
	st.feed(&cur, eof, &tmp)
	return tmp.len() > 0
}

// randomSchema writes a random schema of the supported subset.
type schemaGen struct {
	rng  *rand.Rand
	defs []string
}

var testPatterns = []string{`^[a-z]+$`, `^\d{3}-\d{4}$`, `^[A-Z][a-z]*$`, `ab+c`, `^(red|green|blue)$`,
	`^[0-9a-f]{4,8}$`, `x`, `^[a-z]{2,5}(-[0-9]+)?$`, `^.{0,6}$`}

func (g *schemaGen) value(depth int) string {
	r := g.rng
	switch r.IntN(6) {
	case 0:
		return "null"
	case 1:
		return []string{"true", "false"}[r.IntN(2)]
	case 2:
		return fmt.Sprint(r.IntN(2000) - 1000)
	case 3:
		return []string{"1.5", "-0.25", "3e2"}[r.IntN(3)]
	case 4:
		return []string{`"a"`, `"b c"`, `"é"`, `"x\"y"`, `""`, `"line\nbreak"`}[r.IntN(6)]
	}
	if depth > 0 {
		return `{"k":` + g.value(depth-1) + `}`
	}
	return `[1,"two"]`
}

func (g *schemaGen) schema(depth int) string {
	r := g.rng
	desc := ""
	if r.IntN(5) == 0 {
		desc = `"description":"a value",`
	}
	kinds := 9
	if depth <= 0 {
		kinds = 6
	}
	switch r.IntN(kinds) {
	case 0:
		var parts []string
		switch r.IntN(3) {
		case 1:
			lo := r.IntN(5)
			parts = append(parts, fmt.Sprintf(`"minLength":%d,"maxLength":%d`, lo, lo+r.IntN(8)))
		case 2:
			if r.IntN(2) == 0 {
				parts = append(parts, fmt.Sprintf(`"pattern":%q`, testPatterns[r.IntN(len(testPatterns))]))
			} else {
				parts = append(parts, fmt.Sprintf(`"format":%q`, Formats[r.IntN(len(Formats))]))
			}
		}
		return "{" + desc + strings.Join(append([]string{`"type":"string"`}, parts...), ",") + "}"
	case 1:
		s := `{` + desc + `"type":"integer"`
		if r.IntN(2) == 0 {
			lo := r.IntN(2000) - 1000
			s += fmt.Sprintf(`,"minimum":%d,"maximum":%d`, lo, lo+r.IntN(3000))
		} else if r.IntN(2) == 0 {
			s += fmt.Sprintf(`,"exclusiveMinimum":%d`, r.IntN(100)-50)
		}
		return s + "}"
	case 2:
		if r.IntN(3) == 0 {
			return fmt.Sprintf(`{"type":"number","minimum":%g,"maximum":%g}`, float64(r.IntN(100))-50.5, float64(r.IntN(100))+50.5)
		}
		return `{` + desc + `"type":"number"}`
	case 3:
		return []string{`{"type":"boolean"}`, `{"type":"null"}`, `{"type":["string","null"]}`, `{}`}[r.IntN(4)]
	case 4:
		n := 1 + r.IntN(5)
		var vals []string
		seen := map[string]bool{}
		for range n {
			v := g.value(1)
			if !seen[v] {
				seen[v] = true
				vals = append(vals, v)
			}
		}
		return `{` + desc + `"enum":[` + strings.Join(vals, ",") + `]}`
	case 5:
		return `{"const":` + g.value(1) + `}`
	case 6:
		n := 1 + r.IntN(5)
		var props, req []string
		for i := range n {
			name := []string{"id", "name", "value", "items", "a", "ab", "abc", "x y", "é", "n" + fmt.Sprint(i)}[r.IntN(10)]
			if strings.Contains(strings.Join(props, ""), `"`+name+`":`) {
				continue
			}
			props = append(props, fmt.Sprintf("%q:%s", name, g.schema(depth-1)))
			if r.IntN(2) == 0 {
				req = append(req, fmt.Sprintf("%q", name))
			}
		}
		s := `{` + desc + `"type":"object","properties":{` + strings.Join(props, ",") + `}`
		if len(req) > 0 {
			s += `,"required":[` + strings.Join(req, ",") + `]`
		}
		if r.IntN(2) == 0 {
			s += `,"additionalProperties":false`
		}
		return s + "}"
	case 7:
		s := `{"type":"array","items":` + g.schema(depth-1)
		if r.IntN(2) == 0 {
			lo := r.IntN(3)
			s += fmt.Sprintf(`,"minItems":%d,"maxItems":%d`, lo, lo+r.IntN(4))
		}
		return s + "}"
	default:
		n := 2 + r.IntN(2)
		var alts []string
		for range n {
			alts = append(alts, g.schema(depth-1))
		}
		return `{"anyOf":[` + strings.Join(alts, ",") + `]}`
	}
}

// validatorOrNil is validator for fuzzed schemas: nil when the reference
// implementation refuses the schema (then only JSON validity is checked).
func validatorOrNil(schema []byte) (s *jsonschema.Schema) {
	defer func() {
		if recover() != nil {
			s = nil
		}
	}()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(schema))
	if err != nil {
		return nil
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	if c.AddResource("schema.json", doc) != nil {
		return nil
	}
	s, err = c.Compile("schema.json")
	if err != nil {
		return nil
	}
	return s
}
