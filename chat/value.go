package chat

import (
	"encoding/json"
	"fmt"
	"reflect"
	"sort"

	"github.com/ardanlabs/jinja"
)

// toValue converts a Go value to a template value. It accepts what
// [DecodeJSONOrdered] and encoding/json produce, plus Go's other numeric
// types, [Object] (key order kept), map[string]any (keys sorted, since Go
// maps have no order) and other slices and string-keyed maps through
// reflection. Every container is copied, so a template that mutates a
// value (list.append, dict.update) never changes the caller's data.
func toValue(v any) (jinja.Value, error) {
	switch x := v.(type) {
	case nil:
		return jinja.None(), nil
	case jinja.Value:
		return x, nil
	case bool:
		return jinja.NewBool(x), nil
	case string:
		return jinja.NewString(x), nil
	case int:
		return jinja.NewInt(int64(x)), nil
	case int8:
		return jinja.NewInt(int64(x)), nil
	case int16:
		return jinja.NewInt(int64(x)), nil
	case int32:
		return jinja.NewInt(int64(x)), nil
	case int64:
		return jinja.NewInt(x), nil
	case uint8:
		return jinja.NewInt(int64(x)), nil
	case uint16:
		return jinja.NewInt(int64(x)), nil
	case uint32:
		return jinja.NewInt(int64(x)), nil
	case uint:
		if uint64(x) > 1<<63-1 {
			return jinja.NewFloat(float64(x)), nil
		}
		return jinja.NewInt(int64(x)), nil
	case uint64:
		if x > 1<<63-1 {
			return jinja.NewFloat(float64(x)), nil
		}
		return jinja.NewInt(int64(x)), nil
	case float32:
		return jinja.NewFloat(float64(x)), nil
	case float64:
		return jinja.NewFloat(x), nil
	case json.Number:
		switch n := numberValue(x).(type) {
		case int64:
			return jinja.NewInt(n), nil
		case float64:
			return jinja.NewFloat(n), nil
		}
		return jinja.NewString(string(x)), nil
	case json.RawMessage:
		d, err := DecodeJSONOrdered(x)
		if err != nil {
			return jinja.Undefined(), err
		}
		return toValue(d)
	case Object:
		d := jinja.NewDict()
		dict := d.AsDict()
		for _, m := range x {
			val, err := toValue(m.Value)
			if err != nil {
				return jinja.Undefined(), err
			}
			dict.Set(m.Key, val)
		}
		return d, nil
	case *Object:
		if x == nil {
			return jinja.None(), nil
		}
		return toValue(*x)
	case []any:
		items := make([]jinja.Value, len(x))
		for i, item := range x {
			val, err := toValue(item)
			if err != nil {
				return jinja.Undefined(), err
			}
			items[i] = val
		}
		return jinja.NewList(items), nil
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		d := jinja.NewDict()
		dict := d.AsDict()
		for _, k := range keys {
			val, err := toValue(x[k])
			if err != nil {
				return jinja.Undefined(), err
			}
			dict.Set(k, val)
		}
		return d, nil
	}

	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer:
		if rv.IsNil() {
			return jinja.None(), nil
		}
		return toValue(rv.Elem().Interface())
	case reflect.Slice, reflect.Array:
		items := make([]jinja.Value, rv.Len())
		for i := range items {
			val, err := toValue(rv.Index(i).Interface())
			if err != nil {
				return jinja.Undefined(), err
			}
			items[i] = val
		}
		return jinja.NewList(items), nil
	case reflect.Map:
		if m, ok := stringMap(rv); ok {
			return toValue(m)
		}
	case reflect.String:
		return jinja.NewString(rv.String()), nil
	}
	return jinja.Undefined(), fmt.Errorf("chat: cannot use a value of type %T in a template", v)
}

// stringMap copies a map whose keys are strings into a map[string]any; ok
// is false for other key kinds.
func stringMap(rv reflect.Value) (m map[string]any, ok bool) {
	if rv.Type().Key().Kind() != reflect.String {
		return nil, false
	}
	m = make(map[string]any, rv.Len())
	for it := rv.MapRange(); it.Next(); {
		m[it.Key().String()] = it.Value().Interface()
	}
	return m, true
}
