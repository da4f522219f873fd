package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// Member is one key and value of an [Object].
type Member struct {
	Key   string
	Value any
}

// Object is a JSON object that keeps the order of its keys, as a Python
// dict does. Templates see an Object as a mapping whose items, keys and
// tojson output follow that order. The zero value is an empty object.
//
// A key appears at most once; [Object.Set] replaces the value of an existing
// key in place, and decoding a JSON object with a repeated key keeps the
// position of the first occurrence and the value of the last, as Python's
// json.loads does.
type Object []Member

// Get returns the value stored under key and whether it is present.
func (o Object) Get(key string) (any, bool) {
	for _, m := range o {
		if m.Key == key {
			return m.Value, true
		}
	}
	return nil, false
}

// Set stores v under key, appending the key if it is new.
func (o *Object) Set(key string, v any) {
	for i := range *o {
		if (*o)[i].Key == key {
			(*o)[i].Value = v
			return
		}
	}
	*o = append(*o, Member{Key: key, Value: v})
}

// Keys returns the keys in order.
func (o Object) Keys() []string {
	keys := make([]string, len(o))
	for i, m := range o {
		keys[i] = m.Key
	}
	return keys
}

// MarshalJSON encodes o with its keys in order.
func (o Object) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for i, m := range o {
		if i > 0 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(m.Key)
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		v, err := json.Marshal(m.Value)
		if err != nil {
			return nil, err
		}
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// UnmarshalJSON decodes a JSON object into o, keeping key order. Nested
// values are decoded as by [DecodeJSONOrdered].
func (o *Object) UnmarshalJSON(data []byte) error {
	v, err := DecodeJSONOrdered(data)
	if err != nil {
		return err
	}
	obj, ok := v.(Object)
	if !ok {
		return fmt.Errorf("chat: JSON value is %s, not an object", jsonKind(v))
	}
	*o = obj
	return nil
}

// DecodeJSONOrdered decodes one JSON value. Objects become [Object] values
// (key order kept), arrays []any, strings string, true and false bool, null
// nil, integer literals that fit int64 become int64 and other numbers
// float64, so that tojson writes them back the way Python would (3 stays 3,
// 3.0 stays 3.0). Trailing data after the value is an error.
//
// A JSON array of messages decodes to []any of Object; [DecodeMessages]
// returns the []Message that [Input] wants directly.
func DecodeJSONOrdered(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeValue(dec)
	if err != nil {
		return nil, fmt.Errorf("chat: decode JSON: %w", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, errors.New("chat: decode JSON: trailing data after the value")
	}
	return v, nil
}

// DecodeMessages decodes a JSON array of message objects, such as the
// messages field of an OpenAI chat request, keeping key order everywhere.
func DecodeMessages(data []byte) ([]Message, error) {
	v, err := DecodeJSONOrdered(data)
	if err != nil {
		return nil, err
	}
	list, ok := v.([]any)
	if !ok {
		return nil, fmt.Errorf("chat: messages is %s, not an array", jsonKind(v))
	}
	msgs := make([]Message, len(list))
	for i, item := range list {
		m, ok := item.(Object)
		if !ok {
			return nil, fmt.Errorf("chat: messages[%d] is %s, not an object", i, jsonKind(item))
		}
		msgs[i] = m
	}
	return msgs, nil
}

func decodeValue(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return nil, io.ErrUnexpectedEOF
		}
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := Object{}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				key, ok := kt.(string)
				if !ok {
					return nil, fmt.Errorf("object key is %v, not a string", kt)
				}
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				obj.Set(key, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return obj, nil
		case '[':
			list := []any{}
			for dec.More() {
				v, err := decodeValue(dec)
				if err != nil {
					return nil, err
				}
				list = append(list, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return list, nil
		}
		return nil, fmt.Errorf("unexpected %v", t)
	case json.Number:
		return numberValue(t), nil
	default:
		return t, nil // string, bool or nil
	}
}

// numberValue turns a JSON number into int64 when it is an integer literal
// that fits, and into float64 otherwise.
func numberValue(n json.Number) any {
	s := string(n)
	if !strings.ContainsAny(s, ".eE") {
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			return i
		}
	}
	// The decoder has checked the grammar; a value out of range becomes
	// ±Inf, as float() would make it in Python.
	f, _ := strconv.ParseFloat(s, 64)
	return f
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case int64, float64:
		return "a number"
	case []any:
		return "an array"
	case Object:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}
