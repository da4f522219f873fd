package server

// This file holds the generic walker over a JSON request object that the
// request decoders use: it checks each known field's type and range,
// refuses duplicate keys and reports the first error and the unknown
// fields, with messages that quote the field and value.

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"
)

// fields walks the members of a JSON object, checking each known field's
// type; the first error sticks.
type fields struct {
	raw   map[string]json.RawMessage
	order []string
	used  map[string]bool
	err   *apiError
	vocab int
}

// parseObject splits body into its top-level members. Keys are matched
// exactly (OpenAI's names are lower case); a key given twice is refused
// rather than silently keeping one value.
func parseObject(body []byte, vocab int) (*fields, *apiError) {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil, badRequest("", "the request body is empty; expected a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return nil, badRequest("", "the request body is not valid JSON: %v", jsonErr(err))
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, badRequest("", "the request body must be a JSON object, got %s", tokenKind(tok))
	}
	f := &fields{raw: map[string]json.RawMessage{}, used: map[string]bool{}, vocab: vocab}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, badRequest("", "the request body is not valid JSON: %v", jsonErr(err))
		}
		key, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, badRequest("", "the request body is not valid JSON: %v", jsonErr(err))
		}
		if _, dup := f.raw[key]; dup {
			return nil, badRequest(key, "field %s is given twice", quoteName(key))
		}
		f.raw[key] = v
		f.order = append(f.order, key)
	}
	if _, err := dec.Token(); err != nil {
		return nil, badRequest("", "the request body is not valid JSON: %v", jsonErr(err))
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badRequest("", "the request body has data after the JSON object")
	}
	return f, nil
}

// jsonErr words a decoding error without Go type names.
func jsonErr(err error) string {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fmt.Sprintf("%s (at byte %d)", strings.TrimPrefix(se.Error(), "json: "), se.Offset)
	}
	return strings.TrimPrefix(err.Error(), "json: ")
}

func tokenKind(tok json.Token) string {
	switch v := tok.(type) {
	case json.Delim:
		if v == '[' {
			return "an array"
		}
		return "a " + string(v)
	case string:
		return "a string"
	case float64, json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case nil:
		return "null"
	}
	return "something else"
}

// quoteName quotes a field name for a message, escaping control bytes.
func quoteName(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strconv.Quote(s)
}

// kind names the JSON type of a raw value.
func kind(raw json.RawMessage) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '"':
		return "a string"
	case '{':
		return "an object"
	case '[':
		return "an array"
	case 't', 'f':
		return "a boolean"
	case 'n':
		return "null"
	}
	return "a number"
}

// show quotes a raw value for an error message, shortened.
func show(raw json.RawMessage) string {
	s := string(raw)
	if len(s) > 40 {
		s = s[:40] + "..."
	}
	return s
}

// get returns the raw value of a field and marks it known; a missing field
// and null both report false.
func (f *fields) get(name string) (json.RawMessage, bool) {
	f.used[name] = true
	if f.err != nil {
		return nil, false
	}
	raw, ok := f.raw[name]
	if !ok || string(raw) == "null" {
		return nil, false
	}
	return raw, true
}

func (f *fields) fail(e *apiError) {
	if f.err == nil {
		f.err = e
	}
}

// ignore marks fields that are accepted and have no effect.
func (f *fields) ignore(names ...string) {
	for _, n := range names {
		f.used[n] = true
	}
}

func (f *fields) str(name string, dst *string) bool {
	raw, ok := f.get(name)
	if !ok {
		return false
	}
	if raw[0] != '"' {
		f.fail(badRequest(name, "%s must be a string, got %s", name, kind(raw)))
		return false
	}
	if err := json.Unmarshal(raw, dst); err != nil {
		f.fail(badRequest(name, "%s is not a valid string", name))
		return false
	}
	return true
}

func (f *fields) boolean(name string, dst *bool) bool {
	raw, ok := f.get(name)
	if !ok {
		return false
	}
	switch string(raw) {
	case "true":
		*dst = true
	case "false":
		*dst = false
	default:
		f.fail(badRequest(name, "%s must be a boolean, got %s", name, kind(raw)))
		return false
	}
	return true
}

// parseInt parses an integer JSON number; fractions and exponents are
// refused.
func parseInt(name string, raw json.RawMessage) (int64, *apiError) {
	if kind(raw) != "a number" {
		return 0, badRequest(name, "%s must be an integer, got %s", name, kind(raw))
	}
	n, err := strconv.ParseInt(string(raw), 10, 64)
	if err != nil {
		if errors.Is(err, strconv.ErrRange) {
			return 0, badRequest(name, "%s is out of range: %s", name, show(raw))
		}
		return 0, badRequest(name, "%s must be an integer, got %s", name, show(raw))
	}
	return n, nil
}

func (f *fields) integer(name string, dst *int64) bool {
	raw, ok := f.get(name)
	if !ok {
		return false
	}
	n, e := parseInt(name, raw)
	if e != nil {
		f.fail(e)
		return false
	}
	*dst = n
	return true
}

// intIn reads an integer field that must lie in [lo, hi].
func (f *fields) intIn(name string, lo, hi int64, dst *int) bool {
	var n int64
	if !f.integer(name, &n) {
		return false
	}
	if n < lo || n > hi {
		f.fail(badRequest(name, "%s must be in [%d, %d], got %d", name, lo, hi, n))
		return false
	}
	*dst = int(n)
	return true
}

func parseFloat(name string, raw json.RawMessage) (float64, *apiError) {
	if kind(raw) != "a number" {
		return 0, badRequest(name, "%s must be a number, got %s", name, kind(raw))
	}
	v, err := strconv.ParseFloat(string(raw), 64)
	if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
		return 0, badRequest(name, "%s must be a finite number, got %s", name, show(raw))
	}
	return v, nil
}

// number reads a number field that must satisfy ok (described by rng).
func (f *fields) number(name string, ok func(float64) bool, rng string, dst *float32) bool {
	raw, present := f.get(name)
	if !present {
		return false
	}
	v, e := parseFloat(name, raw)
	if e != nil {
		f.fail(e)
		return false
	}
	if !ok(v) {
		f.fail(badRequest(name, "%s must be %s, got %v", name, rng, v))
		return false
	}
	*dst = float32(v)
	return true
}
