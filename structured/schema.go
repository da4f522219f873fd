// Package structured constrains generation to JSON: any JSON object, or a
// value valid under a JSON Schema of a supported subset.
//
// A schema compiles to a [Grammar], a pushdown automaton over bytes. An
// [Index] pairs a grammar with a tokenizer's vocabulary ([Vocab], a trie
// of the bytes of every token) and computes, for an automaton state, the
// set of tokens that keep the output valid: one walk of the trie that
// leaves a subtree as soon as its prefix is refused. Sets are cached by
// state, so a state met again (the inside of a string, the place after a
// comma) costs a lookup. A [Matcher] follows one generation.
//
// The generated text is always a prefix of a valid document, and a
// document that ends (the value is complete) is valid: keys come in the
// order of "properties", required ones always, optional ones possibly
// left out; no key outside "properties" is generated. Whitespace is
// limited to one byte (space, newline or tab) wherever JSON allows it, so a
// model cannot run on with blanks.
package structured

import (
	"encoding/json"
	"fmt"
	"math"
	"math/big"
	"strings"
)

// Limits of what is generated.
const (
	// MaxWhitespace is the longest run of whitespace generated between
	// two tokens of JSON.
	MaxWhitespace = 1
	// Digits of the integer part, the fraction and the exponent of a
	// generated number; integers have at most maxIntDigits digits, so
	// that they fit an int64.
	maxIntDigits  = 18
	maxFracDigits = 16
	maxExpDigits  = 3
	// maxKeyCandidates is how many properties may be next in an object:
	// the optional ones up to the next required one.
	maxKeyCandidates = 64
	maxNodes         = 20000
	maxEnum          = 1024
	maxSchemaDepth   = 64
)

// SchemaError is a schema that cannot be compiled: a keyword this package
// does not support, or a value it cannot satisfy.
type SchemaError struct {
	// Path is the JSON pointer of the schema at fault ("" for the root).
	Path string
	// Keyword is the keyword at fault, when there is one.
	Keyword string
	// Unsupported is set when the keyword is valid JSON Schema that this
	// package does not implement.
	Unsupported bool
	Msg         string
}

func (e *SchemaError) Error() string {
	at := e.Path
	if at == "" {
		at = "the root"
	}
	return fmt.Sprintf("schema at %s: %s", at, e.Msg)
}

// Supported lists the keywords a schema may use; Ignored lists the
// annotations that are accepted and have no effect.
var (
	Supported = []string{"type", "properties", "required", "additionalProperties", "enum", "const",
		"items", "minItems", "maxItems", "anyOf", "$ref", "$defs", "definitions",
		"minLength", "maxLength", "pattern", "format", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}
	Ignored = []string{"title", "description", "$schema", "$id", "$comment", "default", "examples",
		"deprecated", "readOnly", "writeOnly"}
	// Formats are the supported values of "format".
	Formats = []string{"date", "time", "date-time", "uuid", "email", "ipv4"}
)

type kind uint8

const (
	kDoc     kind = iota // the whole output: whitespace, then the root value
	kObject              // properties in order
	kMap                 // any keys, values of one schema
	kArray               // items of one schema
	kString              // a string, maybe with lengths or a pattern
	kNumber              // any JSON number
	kInteger             // an integer within bounds
	kLiteral             // fixed text: a const or enum member, true, false, null
	kUnion               // one of several schemas (flattened: no union alternative)
)

type prop struct {
	name     string
	key      []byte // the key as JSON text, quotes included
	val      int32
	required bool
}

type node struct {
	kind kind
	// kObject
	props   []prop
	nextReq []int32 // nextReq[i]: the first required property at or after i (len(props): none)
	// kMap values, kArray items, kDoc root
	val int32
	// kArray; maxItems < 0: no bound
	minItems, maxItems int32
	// kString; maxLen < 0: no bound
	minLen, maxLen int32
	re             *dfa
	// kInteger; with frac (a bounded number), an integer part v may take
	// a fraction when v >= 0 && v <= fracHi or v < 0 && v >= fracLo: then
	// every fraction keeps the value within the bounds
	lo, hi         int64
	frac           bool
	fracLo, fracHi int64
	// kLiteral; kDoc: the text before the value
	lit []byte
	// kDoc: the text after the value
	suffix []byte
	// kDoc: free text comes first, and the value only after lit, which
	// free text may hold; kmp is lit's failure function
	free bool
	kmp  []int32
	// kUnion
	alts []int32

	first [4]uint64 // the bytes a value may start with
	sat   bool      // some finite value exists
}

func (n *node) starts(c byte) bool { return n.first[c>>6]&(1<<(c&63)) != 0 }

// Grammar is a compiled schema. It is immutable and safe for concurrent
// use.
type Grammar struct {
	nodes []node
	// anyString is the node of an unconstrained string (keys of kMap).
	anyString int32
}

// maxInt is the largest integer generated.
var maxInt = int64(math.Pow10(maxIntDigits)) - 1

type compiler struct {
	nodes []node
	root  any
	refs  map[string]int32
	any   int32 // the node of any JSON value, -1 until needed
	str   int32
	depth int
}

func (c *compiler) alloc(n node) int32 {
	c.nodes = append(c.nodes, n)
	return int32(len(c.nodes) - 1)
}

func errAt(path, kw string, unsupported bool, format string, a ...any) *SchemaError {
	return &SchemaError{Path: path, Keyword: kw, Unsupported: unsupported, Msg: fmt.Sprintf(format, a...)}
}

// Compile compiles a JSON Schema (a JSON object; true and {} accept any
// value). The error is a *SchemaError for a schema that is valid JSON.
func Compile(schema []byte) (*Grammar, error) {
	v, err := parseJSON(schema)
	if err != nil {
		return nil, fmt.Errorf("the schema is not valid JSON: %v", err)
	}
	c := newCompiler(v)
	root, err := c.schema(v, "")
	if err != nil {
		return nil, err
	}
	c.nodes[0].val = root
	return c.finish()
}

// CompileWrapped compiles schema as Compile does, for an output that is
// prefix, the value, then suffix (one whitespace byte may stand between
// the value and each): a tool call in a chat template's markup.
func CompileWrapped(schema []byte, prefix, suffix string) (*Grammar, error) {
	g, err := Compile(schema)
	if err != nil {
		return nil, err
	}
	g.nodes[0].lit = []byte(prefix)
	g.nodes[0].suffix = []byte(suffix)
	return g, nil
}

// CompileAfterMarker compiles schema for an output of free text in which
// the value may follow each occurrence of open: free text up to the first
// open, then blocks of open, the value and close, separated by one
// whitespace byte at most, until the end. This is how a chat template's
// tool calls look when the model may call a tool or answer in text: the
// calls it starts are held to the schema.
func CompileAfterMarker(schema []byte, open, close string) (*Grammar, error) {
	if open == "" || close == "" {
		return nil, fmt.Errorf("structured: empty markers")
	}
	g, err := CompileWrapped(schema, open, close)
	if err != nil {
		return nil, err
	}
	d := &g.nodes[0]
	d.free = true
	d.kmp = make([]int32, len(open))
	for i, k := 1, int32(0); i < len(open); i++ {
		for k > 0 && open[i] != open[k] {
			k = d.kmp[k-1]
		}
		if open[i] == open[k] {
			k++
		}
		d.kmp[i] = k
	}
	return g, nil
}

// AnyObject is the grammar of any JSON object (response_format
// json_object).
func AnyObject() *Grammar {
	c := newCompiler(nil)
	c.nodes[0].val = c.alloc(node{kind: kMap, val: c.anyValue()})
	g, err := c.finish()
	if err != nil {
		panic(err) // cannot happen: every node is satisfiable
	}
	return g
}

// AnyValue is the grammar of any JSON value.
func AnyValue() *Grammar {
	c := newCompiler(nil)
	c.nodes[0].val = c.anyValue()
	g, err := c.finish()
	if err != nil {
		panic(err)
	}
	return g
}

// newCompiler starts a grammar: node 0 is the document, node 1 an
// unconstrained string.
func newCompiler(root any) *compiler {
	c := &compiler{root: root, refs: map[string]int32{}, any: -1}
	c.alloc(node{kind: kDoc})
	c.str = c.alloc(node{kind: kString, maxLen: -1})
	return c
}

func (c *compiler) anyString() int32 { return c.str }

// anyValue is the node of any JSON value.
func (c *compiler) anyValue() int32 {
	if c.any >= 0 {
		return c.any
	}
	c.any = c.alloc(node{kind: kUnion})
	alts := []int32{
		c.alloc(node{kind: kMap}),
		c.alloc(node{kind: kArray, maxItems: -1}),
		c.anyString(),
		c.alloc(node{kind: kNumber}),
		c.alloc(node{kind: kLiteral, lit: []byte("true")}),
		c.alloc(node{kind: kLiteral, lit: []byte("false")}),
		c.alloc(node{kind: kLiteral, lit: []byte("null")}),
	}
	c.nodes[alts[0]].val = c.any
	c.nodes[alts[1]].val = c.any
	c.nodes[c.any].alts = alts
	return c.any
}

var typeKeywords = map[string][]string{
	"object":  {"properties", "required", "additionalProperties"},
	"array":   {"items", "minItems", "maxItems"},
	"string":  {"minLength", "maxLength", "pattern", "format"},
	"number":  {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
	"integer": {"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"},
	"boolean": {},
	"null":    {},
}

var typeOrder = []string{"object", "array", "string", "integer", "number", "boolean", "null"}

func isAnnotation(k string) bool {
	for _, a := range Ignored {
		if a == k {
			return true
		}
	}
	return false
}

func isSupported(k string) bool {
	for _, a := range Supported {
		if a == k {
			return true
		}
	}
	return false
}

// schema compiles the schema v found at path.
func (c *compiler) schema(v any, path string) (int32, error) {
	if len(c.nodes) > maxNodes {
		return 0, errAt(path, "", false, "the schema needs more than %d automaton nodes", maxNodes)
	}
	if c.depth > maxSchemaDepth {
		return 0, errAt(path, "", false, "the schema is nested more than %d levels deep", maxSchemaDepth)
	}
	c.depth++
	defer func() { c.depth-- }()
	switch x := v.(type) {
	case bool:
		if !x {
			return 0, errAt(path, "", false, "the schema false accepts no value")
		}
		return c.anyValue(), nil
	case *object:
		return c.objectSchema(x, path)
	}
	return 0, errAt(path, "", false, "a schema must be an object or a boolean, got %s", jsonKind(v))
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	}
	return "an object"
}

func (c *compiler) objectSchema(s *object, path string) (int32, error) {
	// Unsupported keywords first, so the error names them.
	for _, k := range s.keys {
		if !isSupported(k) && !isAnnotation(k) {
			return 0, errAt(path, k, true, "keyword %q is not supported (supported: %s)", k, strings.Join(Supported, ", "))
		}
	}
	has := func(k string) bool { _, ok := s.get(k); return ok }
	constraints := func(except ...string) []string {
		var out []string
		for _, k := range s.keys {
			if isAnnotation(k) || k == "$defs" || k == "definitions" {
				continue
			}
			skip := false
			for _, e := range except {
				skip = skip || k == e
			}
			if !skip {
				out = append(out, k)
			}
		}
		return out
	}
	if r, ok := s.get("$ref"); ok {
		if other := constraints("$ref"); len(other) > 0 {
			return 0, errAt(path, other[0], true, "keyword %q beside $ref is not supported", other[0])
		}
		ref, ok := r.(string)
		if !ok {
			return 0, errAt(path, "$ref", false, "$ref must be a string")
		}
		return c.ref(ref, path)
	}
	if a, ok := s.get("anyOf"); ok {
		if other := constraints("anyOf"); len(other) > 0 {
			return 0, errAt(path, other[0], true, "keyword %q beside anyOf is not supported", other[0])
		}
		list, ok := a.([]any)
		if !ok || len(list) == 0 {
			return 0, errAt(path, "anyOf", false, "anyOf must be a non-empty array of schemas")
		}
		u := c.alloc(node{kind: kUnion})
		var alts []int32
		for i, sub := range list {
			id, err := c.schema(sub, fmt.Sprintf("%s/anyOf/%d", path, i))
			if err != nil {
				return 0, err
			}
			alts = append(alts, id)
		}
		c.nodes[u].alts = alts
		return u, nil
	}

	// The types allowed.
	var types []string
	if t, ok := s.get("type"); ok {
		switch tv := t.(type) {
		case string:
			types = []string{tv}
		case []any:
			for _, e := range tv {
				str, ok := e.(string)
				if !ok {
					return 0, errAt(path, "type", false, "type must be a string or an array of strings")
				}
				types = append(types, str)
			}
			if len(types) == 0 {
				return 0, errAt(path, "type", false, "type must not be an empty array")
			}
		default:
			return 0, errAt(path, "type", false, "type must be a string or an array of strings")
		}
		for _, t := range types {
			if _, ok := typeKeywords[t]; !ok {
				return 0, errAt(path, "type", false, "type %q is not a JSON Schema type", t)
			}
		}
	}

	if has("enum") || has("const") {
		if other := constraints("enum", "const", "type"); len(other) > 0 {
			return 0, errAt(path, other[0], true, "keyword %q beside enum or const is not supported", other[0])
		}
		var values []any
		if e, ok := s.get("enum"); ok {
			list, ok := e.([]any)
			if !ok || len(list) == 0 {
				return 0, errAt(path, "enum", false, "enum must be a non-empty array")
			}
			if len(list) > maxEnum {
				return 0, errAt(path, "enum", false, "enum has %d values, more than the limit of %d", len(list), maxEnum)
			}
			values = list
		}
		if cv, ok := s.get("const"); ok {
			if values != nil {
				return 0, errAt(path, "const", true, "enum and const together are not supported")
			}
			values = []any{cv}
		}
		var alts []int32
		for _, v := range values {
			if types != nil && !typeAllows(types, v) {
				continue
			}
			alts = append(alts, c.alloc(node{kind: kLiteral, lit: encodeJSON(nil, v)}))
		}
		if len(alts) == 0 {
			return 0, errAt(path, "enum", false, "no enum or const value has the schema's type")
		}
		if len(alts) == 1 {
			return alts[0], nil
		}
		return c.alloc(node{kind: kUnion, alts: alts}), nil
	}

	if types == nil {
		// No type: the types whose keywords appear, or any value.
		for _, t := range typeOrder {
			for _, k := range typeKeywords[t] {
				if has(k) && !containsStr(types, t) && !(t == "number" && containsStr(types, "integer")) {
					types = append(types, t)
				}
			}
		}
		if types == nil {
			if other := constraints(); len(other) > 0 {
				return 0, errAt(path, other[0], true, "keyword %q is not supported here", other[0])
			}
			return c.anyValue(), nil
		}
		// A keyword of numbers alone means a number.
		if containsStr(types, "integer") && !containsStr(types, "number") {
			types[indexStr(types, "integer")] = "number"
		}
	}
	// Keywords that no listed type uses are refused rather than ignored.
	for _, k := range constraints("type") {
		used := false
		for _, t := range types {
			used = used || containsStr(typeKeywords[t], k)
		}
		if !used {
			return 0, errAt(path, k, true, "keyword %q does not apply to type %s", k, strings.Join(types, " or "))
		}
	}
	var alts []int32
	for _, t := range types {
		id, err := c.typed(t, s, path)
		if err != nil {
			return 0, err
		}
		alts = append(alts, id)
	}
	if len(alts) == 1 {
		return alts[0], nil
	}
	return c.alloc(node{kind: kUnion, alts: alts}), nil
}

func indexStr(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

func containsStr(list []string, s string) bool { return indexStr(list, s) >= 0 }

func typeAllows(types []string, v any) bool {
	for _, t := range types {
		switch x := v.(type) {
		case nil:
			if t == "null" {
				return true
			}
		case bool:
			if t == "boolean" {
				return true
			}
		case string:
			if t == "string" {
				return true
			}
		case []any:
			if t == "array" {
				return true
			}
		case *object:
			if t == "object" {
				return true
			}
		case json.Number:
			if t == "number" {
				return true
			}
			if t == "integer" {
				if r, ok := new(big.Rat).SetString(string(x)); ok && r.IsInt() {
					return true
				}
			}
		}
	}
	return false
}

// count reads a non-negative integer keyword; -1 when absent.
func count(s *object, k, path string) (int32, error) {
	v, ok := s.get(k)
	if !ok {
		return -1, nil
	}
	n, isNum := v.(json.Number)
	if isNum {
		if r, ok := new(big.Rat).SetString(string(n)); ok && r.IsInt() && r.Sign() >= 0 {
			if r.Num().IsInt64() && r.Num().Int64() <= math.MaxInt32 {
				return int32(r.Num().Int64()), nil
			}
			return math.MaxInt32, nil
		}
	}
	return 0, errAt(path, k, false, "%s must be a non-negative integer", k)
}

func (c *compiler) typed(t string, s *object, path string) (int32, error) {
	switch t {
	case "null":
		return c.alloc(node{kind: kLiteral, lit: []byte("null")}), nil
	case "boolean":
		return c.alloc(node{kind: kUnion, alts: []int32{
			c.alloc(node{kind: kLiteral, lit: []byte("true")}),
			c.alloc(node{kind: kLiteral, lit: []byte("false")}),
		}}), nil
	case "string":
		return c.stringNode(s, path)
	case "number", "integer":
		return c.numberNode(t, s, path)
	case "array":
		minI, err := count(s, "minItems", path)
		if err != nil {
			return 0, err
		}
		maxI, err := count(s, "maxItems", path)
		if err != nil {
			return 0, err
		}
		minI = max(minI, 0)
		if maxI >= 0 && minI > maxI {
			return 0, errAt(path, "minItems", false, "minItems (%d) is more than maxItems (%d)", minI, maxI)
		}
		id := c.alloc(node{kind: kArray, minItems: minI, maxItems: maxI})
		item := c.anyValue()
		if it, ok := s.get("items"); ok {
			if _, isList := it.([]any); isList {
				return 0, errAt(path, "items", true, "items as an array (tuples) is not supported")
			}
			if item, err = c.schema(it, path+"/items"); err != nil {
				return 0, err
			}
		}
		c.nodes[id].val = item
		return id, nil
	case "object":
		return c.objectNode(s, path)
	}
	panic("unreachable")
}

func (c *compiler) stringNode(s *object, path string) (int32, error) {
	minL, err := count(s, "minLength", path)
	if err != nil {
		return 0, err
	}
	maxL, err := count(s, "maxLength", path)
	if err != nil {
		return 0, err
	}
	minL = max(minL, 0)
	if maxL >= 0 && minL > maxL {
		return 0, errAt(path, "minLength", false, "minLength (%d) is more than maxLength (%d)", minL, maxL)
	}
	n := node{kind: kString, minLen: minL, maxLen: maxL}
	pat, hasPat := s.get("pattern")
	f, hasFormat := s.get("format")
	if hasPat && hasFormat {
		return 0, errAt(path, "format", true, "pattern and format together are not supported")
	}
	var src, kw string
	if hasFormat {
		name, ok := f.(string)
		if !ok {
			return 0, errAt(path, "format", false, "format must be a string")
		}
		if src, ok = formatPatterns[name]; !ok {
			return 0, errAt(path, "format", true, "format %q is not supported (supported: %s)", name, strings.Join(Formats, ", "))
		}
		kw = "format"
	}
	if hasPat {
		p, ok := pat.(string)
		if !ok {
			return 0, errAt(path, "pattern", false, "pattern must be a string")
		}
		src, kw = p, "pattern"
	}
	if kw != "" {
		if minL > 0 {
			return 0, errAt(path, "minLength", true, "minLength together with %s is not supported", kw)
		}
		d, err := compilePattern(src)
		if err != nil {
			return 0, errAt(path, kw, !strings.Contains(err.Error(), "does not parse"), "%v", err)
		}
		if maxL >= 0 && d.dist[0] > maxL {
			return 0, errAt(path, "maxLength", false, "no string of at most %d characters matches the %s", maxL, kw)
		}
		n.re = d
	}
	return c.alloc(n), nil
}

func (c *compiler) numberNode(t string, s *object, path string) (int32, error) {
	bound := func(k string) (*big.Rat, error) {
		v, ok := s.get(k)
		if !ok {
			return nil, nil
		}
		n, isNum := v.(json.Number)
		if !isNum {
			return nil, errAt(path, k, false, "%s must be a number", k)
		}
		r, ok := new(big.Rat).SetString(string(n))
		if !ok {
			return nil, errAt(path, k, false, "%s must be a number", k)
		}
		return r, nil
	}
	lo, hi := new(big.Int).SetInt64(-maxInt), new(big.Int).SetInt64(maxInt)
	var loReal, hiReal *big.Rat // the largest lower and smallest upper bound
	bounded := false
	for _, k := range []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} {
		r, err := bound(k)
		if err != nil {
			return 0, err
		}
		if r == nil {
			continue
		}
		bounded = true
		switch k {
		case "minimum", "exclusiveMinimum":
			if loReal == nil || r.Cmp(loReal) > 0 {
				loReal = r
			}
		default:
			if hiReal == nil || r.Cmp(hiReal) < 0 {
				hiReal = r
			}
		}
		// The integers within the bound.
		fl := new(big.Int).Div(r.Num(), r.Denom()) // floor, Denom > 0
		switch k {
		case "minimum", "exclusiveMinimum":
			ce := new(big.Int).Set(fl)
			if !r.IsInt() || k == "exclusiveMinimum" {
				ce.Add(ce, big.NewInt(1))
			}
			if ce.Cmp(lo) > 0 {
				lo = ce
			}
		default:
			f := new(big.Int).Set(fl)
			if r.IsInt() && k == "exclusiveMaximum" {
				f.Sub(f, big.NewInt(1))
			}
			if f.Cmp(hi) < 0 {
				hi = f
			}
		}
	}
	if t == "number" && !bounded {
		return c.alloc(node{kind: kNumber}), nil
	}
	if lo.Cmp(hi) > 0 {
		return 0, errAt(path, "minimum", false, "the bounds (minimum, maximum, exclusiveMinimum, exclusiveMaximum) leave no integer of at most %d digits", maxIntDigits)
	}
	n := node{kind: kInteger, lo: lo.Int64(), hi: hi.Int64()}
	if t == "number" {
		// A bounded number: an integer within the bounds, or an integer
		// part v with a fraction where all of [v, v+1) (or (v-1, v] below
		// zero) lies within them.
		n.frac, n.fracLo, n.fracHi = true, -maxInt, maxInt
		if loReal != nil {
			ce := new(big.Int).Div(loReal.Num(), loReal.Denom())
			if !loReal.IsInt() {
				ce.Add(ce, big.NewInt(1))
			}
			ce.Add(ce, big.NewInt(1))
			if ce.Cmp(big.NewInt(-maxInt)) > 0 {
				n.fracLo = min(ce.Int64(), maxInt)
			}
		}
		if hiReal != nil {
			fl := new(big.Int).Div(hiReal.Num(), hiReal.Denom())
			fl.Sub(fl, big.NewInt(1))
			if fl.Cmp(big.NewInt(maxInt)) < 0 {
				n.fracHi = max(fl.Int64(), -maxInt)
			}
		}
	}
	return c.alloc(n), nil
}

func (c *compiler) objectNode(s *object, path string) (int32, error) {
	var props []prop
	index := map[string]int{}
	if p, ok := s.get("properties"); ok {
		po, ok := p.(*object)
		if !ok {
			return 0, errAt(path, "properties", false, "properties must be an object")
		}
		for _, k := range po.keys {
			index[k] = len(props)
			props = append(props, prop{name: k, key: encodeString(nil, k)})
		}
		for i, k := range po.keys {
			id, err := c.schema(po.vals[k], path+"/properties/"+escapePointer(k))
			if err != nil {
				return 0, err
			}
			props[i].val = id
		}
	}
	if r, ok := s.get("required"); ok {
		list, ok := r.([]any)
		if !ok {
			return 0, errAt(path, "required", false, "required must be an array of strings")
		}
		for _, e := range list {
			name, ok := e.(string)
			if !ok {
				return 0, errAt(path, "required", false, "required must be an array of strings")
			}
			i, found := index[name]
			if !found {
				return 0, errAt(path, "required", true, "required names %q, which is not in properties (generating other keys is not supported)", name)
			}
			props[i].required = true
		}
	}
	addl := int32(-1) // values of keys outside properties; -1: none allowed
	if a, ok := s.get("additionalProperties"); ok {
		switch av := a.(type) {
		case bool:
			if av {
				addl = c.anyValue()
			}
		default:
			id, err := c.schema(a, path+"/additionalProperties")
			if err != nil {
				return 0, err
			}
			addl = id
		}
	} else {
		addl = c.anyValue()
	}
	if len(props) == 0 {
		if addl < 0 {
			return c.alloc(node{kind: kLiteral, lit: []byte("{}")}), nil
		}
		return c.alloc(node{kind: kMap, val: addl}), nil
	}
	// Keys outside properties may be allowed; they are not generated.
	return c.alloc(node{kind: kObject, props: props}), nil
}

func escapePointer(s string) string {
	return strings.ReplaceAll(strings.ReplaceAll(s, "~", "~0"), "/", "~1")
}

// ref resolves a local reference: "#", or a JSON pointer into the
// document such as "#/$defs/name".
func (c *compiler) ref(ref, path string) (int32, error) {
	if id, ok := c.refs[ref]; ok {
		return id, nil
	}
	if !strings.HasPrefix(ref, "#") {
		return 0, errAt(path, "$ref", true, "$ref %q is not supported: only references within the schema (#...) are", ref)
	}
	target := c.root
	if ptr := ref[1:]; ptr != "" {
		if !strings.HasPrefix(ptr, "/") {
			return 0, errAt(path, "$ref", true, "$ref %q is not supported: only JSON pointers (#/...) are", ref)
		}
		for _, tok := range strings.Split(ptr[1:], "/") {
			tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
			switch t := target.(type) {
			case *object:
				v, ok := t.get(tok)
				if !ok {
					return 0, errAt(path, "$ref", false, "$ref %q points to nothing", ref)
				}
				target = v
			case []any:
				i := -1
				fmt.Sscanf(tok, "%d", &i)
				if i < 0 || i >= len(t) {
					return 0, errAt(path, "$ref", false, "$ref %q points to nothing", ref)
				}
				target = t[i]
			default:
				return 0, errAt(path, "$ref", false, "$ref %q points to nothing", ref)
			}
		}
	}
	// A placeholder first, so that a recursive reference finds it.
	id := c.alloc(node{kind: kUnion})
	c.refs[ref] = id
	sub, err := c.schema(target, ref[1:])
	if err != nil {
		return 0, err
	}
	c.nodes[id].alts = []int32{sub}
	return id, nil
}

// finish prunes what cannot produce a finite value, flattens unions and
// computes first bytes.
func (c *compiler) finish() (*Grammar, error) {
	nodes := c.nodes
	// Least fixpoint of "has a finite value".
	for changed := true; changed; {
		changed = false
		for i := range nodes {
			n := &nodes[i]
			if n.sat {
				continue
			}
			ok := false
			switch n.kind {
			case kDoc:
				ok = nodes[n.val].sat
			case kObject:
				ok = true
				for _, p := range n.props {
					if p.required && !nodes[p.val].sat {
						ok = false
					}
				}
			case kArray:
				ok = n.minItems == 0 || nodes[n.val].sat
			case kUnion:
				for _, a := range n.alts {
					ok = ok || nodes[a].sat
				}
			default:
				ok = true
			}
			if ok {
				n.sat, changed = true, true
			}
		}
	}
	if !nodes[0].sat {
		return nil, errAt("", "", false, "the schema has no finite value (a required property or item refers back to itself)")
	}
	for i := range nodes {
		n := &nodes[i]
		switch n.kind {
		case kObject:
			kept := n.props[:0]
			for _, p := range n.props {
				if nodes[p.val].sat {
					kept = append(kept, p)
				}
			}
			n.props = kept
			n.nextReq = make([]int32, len(n.props)+1)
			n.nextReq[len(n.props)] = int32(len(n.props))
			for j := len(n.props) - 1; j >= 0; j-- {
				n.nextReq[j] = n.nextReq[j+1]
				if n.props[j].required {
					n.nextReq[j] = int32(j)
				}
			}
		case kArray, kMap:
			if !nodes[n.val].sat {
				n.maxItems = 0
				if n.kind == kMap {
					// Only {} remains.
					*n = node{kind: kLiteral, lit: []byte("{}"), sat: true}
				}
			}
		}
	}
	// Flatten unions: the alternatives of a union are never unions.
	for i := range nodes {
		if nodes[i].kind != kUnion {
			continue
		}
		var flat []int32
		seen := map[int32]bool{}
		var visit func(id int32)
		visit = func(id int32) {
			if seen[id] || !nodes[id].sat {
				return
			}
			seen[id] = true
			if nodes[id].kind != kUnion {
				flat = append(flat, id)
				return
			}
			for _, a := range nodes[id].alts {
				visit(a)
			}
		}
		visit(int32(i))
		nodes[i].alts = flat
	}
	for i := range nodes {
		n := &nodes[i]
		set := func(b byte) { n.first[b>>6] |= 1 << (b & 63) }
		switch n.kind {
		case kObject, kMap:
			set('{')
		case kArray:
			set('[')
		case kString:
			set('"')
		case kNumber, kInteger:
			set('-')
			for d := byte('0'); d <= '9'; d++ {
				set(d)
			}
		case kLiteral:
			set(n.lit[0])
		}
	}
	for i := range nodes {
		if nodes[i].kind == kUnion {
			for _, a := range nodes[i].alts {
				for w := range 4 {
					nodes[i].first[w] |= nodes[a].first[w]
				}
			}
		}
	}
	return &Grammar{nodes: nodes, anyString: c.str}, nil
}
