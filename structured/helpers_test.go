package structured

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
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
	for step := 0; step < min(budget, 1<<20)+4000; step++ {
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
