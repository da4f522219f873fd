package chat

import (
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Span is the byte range [Start, End) of a rendered text. An empty span
// (Start == End) is a cut point: a place inside text that must not be read
// as part of a longer token.
type Span struct {
	Start, End int
}

// Placement tells how [Template.RenderSpans] found the strings it was asked
// to place.
type Placement int

const (
	// PlacedNone: no string needed placing. Text is Render's output and
	// Spans is empty.
	PlacedNone Placement = iota
	// PlacedExact: every string was found where the template put it, whole.
	// Text is Render's output; each span is one rendering of one string.
	PlacedExact
	// PlacedSplit: the template transforms or inspects some strings (a trim,
	// a split on a marker, a startswith test), so each of their marked
	// ranges was rendered with invisible cut markers between its
	// characters. The template saw those ranges as text that holds no
	// marker, so Text can differ from Render's output where the template
	// acted on one (it treated it as plain text). Spans holds, for those
	// strings, each marked range where it can be told and a cut point
	// between every two characters of it, and the whole string for the
	// others.
	PlacedSplit
	// PlacedEverywhere: the strings could not be followed through the
	// template (they, or the template, hold characters of the planes
	// U+F0000–U+10FFFF that placement uses, or the template escapes them).
	// Text is Render's output and Spans covers every occurrence in it of
	// the marked ranges' text, the template's own occurrences included.
	PlacedEverywhere
)

func (p Placement) String() string {
	switch p {
	case PlacedNone:
		return "none"
	case PlacedExact:
		return "exact"
	case PlacedSplit:
		return "split"
	case PlacedEverywhere:
		return "everywhere"
	}
	return "unknown"
}

// Rendered is the output of [Template.RenderSpans].
type Rendered struct {
	Text      string
	Spans     []Span // sorted by Start
	Placement Placement
}

// RenderSpans renders in as Render does and reports where the strings of
// the conversation that hold text to protect ended up in the output: a
// tokenizer can then read those places as plain text, so that a message
// holding the text of a control token (such as "<|im_end|>") does not
// become that token while the template's own markup does.
//
// find selects the strings and the ranges to protect within each: it is
// called for every string of in.Messages, in.Tools and in.Documents (object
// keys too) and returns the byte ranges of that string holding control text
// (they may overlap); a string for which it returns none is not placed. A
// nil find selects every non-empty message content (a string content, the
// text of content parts, reasoning_content, and the arguments of tool
// calls when they are a string), each as a whole.
//
// The strings are placed by rendering again with each selected string
// wrapped in marker characters (from the private-use planes U+F0000 to
// U+10FFFF): when the output with the markers removed is Render's output and
// the markers pair up, the markers give the places (PlacedExact). A template
// that transforms a string (trim, slicing, a split on "</think>") or tests
// it (startswith) breaks that; the strings concerned are found by halving
// the set of strings and are then rendered with markers inside their
// ranges instead (PlacedSplit), which any transformation carries along. A
// conversation with no selected string is rendered once.
func (t *Template) RenderSpans(in Input, find func(s string) []Span) (Rendered, error) {
	sp := &spanRender{t: t, in: in}
	reserved := false
	walkInput(in, func(ord int, s string, content bool) string {
		if hasReserved(s) {
			reserved = true
		}
		var r []Span
		if find != nil {
			r = find(s)
		} else if content && s != "" {
			r = []Span{{0, len(s)}}
		}
		if r = mergeRanges(r, len(s)); len(r) > 0 {
			sp.marks = append(sp.marks, mark{ord: ord, s: s, ranges: r})
		}
		return s
	})
	text, err := t.Render(in)
	if err != nil {
		return Rendered{}, err
	}
	if len(sp.marks) == 0 {
		return Rendered{Text: text}, nil
	}
	sp.text = text
	if reserved || hasReserved(text) {
		return sp.everywhere(), nil
	}

	// Wrap every selected string; when that fails, find the strings that
	// break it by halving.
	all := make([]int, 0, len(sp.marks))
	for i := range sp.marks {
		if i < maxMarkID {
			all = append(all, i)
		}
	}
	var good, bad []int
	var spans []Span
	sp.budget = maxPlacementRenders
	if len(all) > 0 {
		sp.budget--
		s, ok := sp.tryWrap(all)
		switch {
		case ok && len(all) == len(sp.marks):
			return Rendered{Text: text, Spans: sortSpans(s), Placement: PlacedExact}, nil
		case ok:
			good, spans = all, s
		case len(all) == 1:
			bad = all
		default:
			h := len(all) / 2
			sp.bisect(all[:h], &good, &bad, &spans)
			sp.bisect(all[h:], &good, &bad, &spans)
		}
	}
	for i := len(all); i < len(sp.marks); i++ {
		bad = append(bad, i)
	}
	if len(bad) == 0 { // the halves passed where the whole did not
		return Rendered{Text: text, Spans: sortSpans(spans), Placement: PlacedExact}, nil
	}
	r, ok := sp.split(good, bad)
	if !ok && len(good) > 0 {
		// A wrapped string did not come through whole beside the split
		// ones: split them all.
		all := make([]int, len(sp.marks))
		for i := range all {
			all[i] = i
		}
		r, ok = sp.split(nil, all)
	}
	if !ok {
		return sp.everywhere(), nil
	}
	return r, nil
}

// Marker runes. Placement reserves the planes U+F0000 to U+10FFFF (private
// use): an open marker for id k is openBase+k, its close marker closeBase+k,
// and cutRune is the cut marker.
const (
	openBase  = 0xF0000
	closeBase = 0x100000
	maxMarkID = 0xFFFD // ids 0 to maxMarkID-1
	cutRune   = 0x10FFFD
	reserved0 = 0xF0000

	// maxPlacementRenders bounds the renders spent looking for the strings
	// a template transforms; those still untested are split.
	maxPlacementRenders = 48
)

func hasReserved(s string) bool {
	for i := 0; i < len(s); i++ {
		// The planes from U+F0000 on are encoded as F3 B0.. to F4 8F..
		if s[i] >= 0xF3 {
			if r, _ := utf8.DecodeRuneInString(s[i:]); r >= reserved0 {
				return true
			}
		}
	}
	return false
}

// mark is a selected string: its ordinal among the input's strings and the
// ranges to protect (merged, sorted, non-empty).
type mark struct {
	ord    int
	s      string
	ranges []Span
}

type spanRender struct {
	t      *Template
	in     Input
	text   string // Render's output
	marks  []mark
	budget int
}

// render renders the input with the selected strings replaced.
func (sp *spanRender) render(repl map[int]string) (string, error) {
	c := walkInputCopy(sp.in, func(ord int, s string, _ bool) string {
		if r, ok := repl[ord]; ok {
			return r
		}
		return s
	})
	in := sp.in
	in.Messages, in.Tools, in.Documents = c.Messages, c.Tools, c.Documents
	return sp.t.Render(in)
}

// tryWrap renders with the marks of idx wrapped whole and reports the
// places when the output is Render's once the markers are removed.
func (sp *spanRender) tryWrap(idx []int) ([]Span, bool) {
	repl := make(map[int]string, len(idx))
	for _, i := range idx {
		m := sp.marks[i]
		repl[m.ord] = string(rune(openBase+i)) + m.s + string(rune(closeBase+i))
	}
	out, err := sp.render(repl)
	if err != nil { // the template refused the wrapped strings
		return nil, false
	}
	u := unmark(out)
	if u.text != sp.text || u.broken || len(u.cuts) > 0 {
		return nil, false
	}
	return u.spans, true
}

// bisect sorts idx into the marks that can be wrapped whole (good, with
// their places appended to spans) and those that cannot (bad).
func (sp *spanRender) bisect(idx []int, good, bad *[]int, spans *[]Span) {
	if len(idx) == 0 {
		return
	}
	if sp.budget <= 0 {
		*bad = append(*bad, idx...)
		return
	}
	sp.budget--
	if s, ok := sp.tryWrap(idx); ok {
		*good = append(*good, idx...)
		*spans = append(*spans, s...)
		return
	}
	if len(idx) == 1 {
		*bad = append(*bad, idx...)
		return
	}
	h := len(idx) / 2
	sp.bisect(idx[:h], good, bad, spans)
	sp.bisect(idx[h:], good, bad, spans)
}

// split renders with the marks of good wrapped whole and the ranges of the
// marks of bad split by cut markers. ok is false when a wrapped mark did
// not come through whole, when the template escaped the markers or when it
// refused the strings.
func (sp *spanRender) split(good, bad []int) (Rendered, bool) {
	repl := make(map[int]string, len(good)+len(bad))
	isGood := make(map[int]bool, len(good))
	for _, i := range good {
		m := sp.marks[i]
		repl[m.ord] = string(rune(openBase+i)) + m.s + string(rune(closeBase+i))
		isGood[i] = true
	}
	next := len(sp.marks) // ids for the split ranges
	for _, i := range bad {
		m := sp.marks[i]
		var b strings.Builder
		prev := 0
		for _, r := range m.ranges {
			// White space at the edges of a range stays outside the
			// markers, so that a strip still reaches it.
			a, e := r.Start, r.End
			for a < e {
				c, n := utf8.DecodeRuneInString(m.s[a:])
				if !unicode.IsSpace(c) {
					break
				}
				a += n
			}
			for e > a {
				c, n := utf8.DecodeLastRuneInString(m.s[a:e])
				if !unicode.IsSpace(c) {
					break
				}
				e -= n
			}
			if a == e {
				continue
			}
			b.WriteString(m.s[prev:a])
			id := -1
			if next < maxMarkID {
				id = next
				next++
				b.WriteRune(rune(openBase + id))
			}
			b.WriteString(cutInside(m.s[a:e]))
			if id >= 0 {
				b.WriteRune(rune(closeBase + id))
			}
			prev = e
		}
		b.WriteString(m.s[prev:])
		repl[m.ord] = b.String()
	}
	out, err := sp.render(repl)
	if err != nil || escapedMarkers(out) > escapedMarkers(sp.text) {
		return Rendered{}, false
	}
	u := unmark(out)
	for _, i := range good {
		if u.brokenIDs[i] {
			return Rendered{}, false
		}
	}
	spans := u.spans
	for _, c := range u.cuts {
		spans = append(spans, Span{c, c})
	}
	return Rendered{Text: u.text, Spans: sortSpans(spans), Placement: PlacedSplit}, true
}

// cutInside returns s with a cut marker at its start and end and between
// every two characters, except next to white space.
func cutInside(s string) string {
	var b strings.Builder
	b.Grow(len(s) * 5)
	b.WriteRune(cutRune)
	prevSpace := true
	for i, r := range s {
		space := unicode.IsSpace(r)
		if i > 0 && !space && !prevSpace {
			b.WriteRune(cutRune)
		}
		b.WriteRune(r)
		prevSpace = space
	}
	b.WriteRune(cutRune)
	return b.String()
}

// escapedMarkers counts the JSON escapes of a high surrogate of the planes
// from U+F0000 (\udb80 to \udbff) in s: a template that writes tojson with
// ensure_ascii turns markers into those.
func escapedMarkers(s string) int {
	n := 0
	for i := 0; i+6 <= len(s); i++ {
		if s[i] == '\\' && s[i+1] == 'u' && (s[i+2]|0x20) == 'd' && (s[i+3]|0x20) == 'b' && strings.IndexByte("89abcdefABCDEF", s[i+4]) >= 0 {
			n++
		}
	}
	return n
}

// everywhere is the last resort: Render's output with every occurrence of
// the marked ranges' text protected.
func (sp *spanRender) everywhere() Rendered {
	seen := map[string]bool{}
	var spans []Span
	for _, m := range sp.marks {
		for _, r := range m.ranges {
			w := m.s[r.Start:r.End]
			if seen[w] {
				continue
			}
			seen[w] = true
			for i := 0; ; {
				j := strings.Index(sp.text[i:], w)
				if j < 0 {
					break
				}
				spans = append(spans, Span{i + j, i + j + len(w)})
				i += j + 1
			}
		}
	}
	return Rendered{Text: sp.text, Spans: sortSpans(spans), Placement: PlacedEverywhere}
}

// unmarked is a rendered text with its markers removed.
type unmarked struct {
	text      string
	spans     []Span // of pairs of markers
	cuts      []int
	broken    bool // a marker without its partner, or pairs crossing
	brokenIDs map[int]bool
}

func unmark(out string) unmarked {
	var u unmarked
	var b strings.Builder
	b.Grow(len(out))
	type open struct{ id, at int }
	var stack []open
	breakID := func(id int) {
		u.broken = true
		if u.brokenIDs == nil {
			u.brokenIDs = map[int]bool{}
		}
		u.brokenIDs[id] = true
	}
	start := 0
	for i := 0; i < len(out); {
		if out[i] < 0xF3 { // no rune from U+F0000 on starts below F3
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(out[i:])
		if r < reserved0 {
			i += n
			continue
		}
		b.WriteString(out[start:i])
		i += n
		start = i
		switch {
		case r == cutRune:
			u.cuts = append(u.cuts, b.Len())
		case r >= closeBase:
			id := int(r - closeBase)
			k := len(stack) - 1
			for k >= 0 && stack[k].id != id {
				k--
			}
			if k < 0 {
				breakID(id)
				continue
			}
			for _, o := range stack[k+1:] {
				breakID(o.id)
			}
			u.spans = append(u.spans, Span{stack[k].at, b.Len()})
			stack = stack[:k]
		default:
			stack = append(stack, open{int(r - openBase), b.Len()})
		}
	}
	b.WriteString(out[start:])
	for _, o := range stack {
		breakID(o.id)
	}
	u.text = b.String()
	return u
}

// mergeRanges clamps ranges to [0, n], drops empty and inverted ones and
// merges those that overlap or touch.
func mergeRanges(r []Span, n int) []Span {
	var out []Span
	for _, s := range r {
		s.Start, s.End = max(s.Start, 0), min(s.End, n)
		if s.Start < s.End {
			out = append(out, s)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Start < out[j].Start })
	merged := out[:0]
	for _, s := range out {
		if k := len(merged) - 1; k >= 0 && s.Start <= merged[k].End {
			merged[k].End = max(merged[k].End, s.End)
			continue
		}
		merged = append(merged, s)
	}
	return merged
}

func sortSpans(s []Span) []Span {
	sort.Slice(s, func(i, j int) bool {
		if s[i].Start != s[j].Start {
			return s[i].Start < s[j].Start
		}
		return s[i].End < s[j].End
	})
	return s
}

// walkInput calls visit for every string of in's messages, tools and
// documents, keys included, in a fixed order; content tells whether the
// string is message content (see RenderSpans).
func walkInput(in Input, visit func(ord int, s string, content bool) string) {
	walkInputCopy(in, visit)
}

// walkInputCopy is walkInput returning a copy of in's messages, tools and
// documents with each string replaced by what visit returns. The other
// fields are left zero.
func walkInputCopy(in Input, visit func(ord int, s string, content bool) string) Input {
	w := &walker{visit: visit}
	var out Input
	if in.Messages != nil {
		out.Messages = make([]Message, len(in.Messages))
		for i, m := range in.Messages {
			out.Messages[i] = w.message(m)
		}
	}
	if in.Tools != nil {
		out.Tools = w.list(in.Tools)
	}
	if in.Documents != nil {
		out.Documents = w.list(in.Documents)
	}
	return out
}

type walker struct {
	n     int
	visit func(ord int, s string, content bool) string
}

func (w *walker) str(s string, content bool) string {
	ord := w.n
	w.n++
	return w.visit(ord, s, content)
}

// message walks one message, telling content apart.
func (w *walker) message(m Message) Message {
	out := make(Message, len(m))
	for i, kv := range m {
		out[i].Key = w.str(kv.Key, false)
		switch kv.Key {
		case "content":
			out[i].Value = w.content(kv.Value)
		case "reasoning_content":
			out[i].Value = w.value(kv.Value, true)
		case "tool_calls":
			out[i].Value = w.toolCalls(kv.Value)
		default:
			out[i].Value = w.value(kv.Value, false)
		}
	}
	return out
}

// content walks a content: a string, or a list of parts whose text is
// content.
func (w *walker) content(v any) any {
	list, ok := v.([]any)
	if !ok {
		return w.value(v, true)
	}
	out := make([]any, len(list))
	for i, part := range list {
		obj, ok := part.(Object)
		if !ok {
			out[i] = w.value(part, false)
			continue
		}
		o := make(Object, len(obj))
		for j, kv := range obj {
			o[j].Key = w.str(kv.Key, false)
			o[j].Value = w.value(kv.Value, kv.Key == "text")
		}
		out[i] = o
	}
	return out
}

// toolCalls walks tool_calls, whose arguments (in function or in the call
// itself) are content when they are a string.
func (w *walker) toolCalls(v any) any {
	list, ok := v.([]any)
	if !ok {
		return w.value(v, false)
	}
	out := make([]any, len(list))
	for i, call := range list {
		obj, ok := call.(Object)
		if !ok {
			out[i] = w.value(call, false)
			continue
		}
		o := make(Object, len(obj))
		for j, kv := range obj {
			o[j].Key = w.str(kv.Key, false)
			switch kv.Key {
			case "arguments":
				o[j].Value = w.value(kv.Value, true)
			case "function":
				f, ok := kv.Value.(Object)
				if !ok {
					o[j].Value = w.value(kv.Value, false)
					continue
				}
				fo := make(Object, len(f))
				for k, fkv := range f {
					fo[k].Key = w.str(fkv.Key, false)
					fo[k].Value = w.value(fkv.Value, fkv.Key == "arguments")
				}
				o[j].Value = fo
			default:
				o[j].Value = w.value(kv.Value, false)
			}
		}
		out[i] = o
	}
	return out
}

func (w *walker) list(l []any) []any {
	out := make([]any, len(l))
	for i, v := range l {
		out[i] = w.value(v, false)
	}
	return out
}

// value walks any value; content applies to a string value only. Values
// are copied into the forms toValue reads the same way (a map becomes an
// Object with its keys sorted, as toValue orders them).
func (w *walker) value(v any, content bool) any {
	switch x := v.(type) {
	case string:
		return w.str(x, content)
	case Object:
		o := make(Object, len(x))
		for i, kv := range x {
			o[i].Key = w.str(kv.Key, false)
			o[i].Value = w.value(kv.Value, false)
		}
		return o
	case *Object:
		if x == nil {
			return x
		}
		return w.value(*x, content)
	case []any:
		return w.list(x)
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		o := make(Object, len(keys))
		for i, k := range keys {
			o[i].Key = w.str(k, false)
			o[i].Value = w.value(x[k], false)
		}
		return o
	case json.RawMessage:
		d, err := DecodeJSONOrdered(x)
		if err != nil {
			return x // toValue reports the error
		}
		return w.value(d, content)
	case nil, bool, int, int8, int16, int32, int64, uint, uint8, uint16, uint32, uint64, float32, float64, json.Number:
		return v
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return v
		}
		return w.value(rv.Elem().Interface(), content)
	case reflect.Slice, reflect.Array:
		if rv.Kind() == reflect.Slice && rv.Type().Elem().Kind() == reflect.Uint8 {
			break
		}
		l := make([]any, rv.Len())
		for i := range l {
			l[i] = rv.Index(i).Interface()
		}
		return w.list(l)
	case reflect.Map:
		if m, ok := stringMap(rv); ok {
			return w.value(m, false)
		}
	case reflect.String:
		return w.str(rv.String(), content)
	}
	return v
}
