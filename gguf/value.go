package gguf

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"
)

// ValueType is the type of a metadata value (gguf_type).
type ValueType uint32

// The metadata value types of GGUF.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12

	valueTypeCount = 13
)

var valueTypeNames = [valueTypeCount]string{"u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64"}

// String returns the type's short name ("u32", "string", "array").
func (t ValueType) String() string {
	if t < valueTypeCount {
		return valueTypeNames[t]
	}
	return "value_type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// size returns the encoded size of a scalar of type t, 0 for string and
// array, -1 for an unknown type.
func (t ValueType) size() int {
	switch t {
	case TypeUint8, TypeInt8, TypeBool:
		return 1
	case TypeUint16, TypeInt16:
		return 2
	case TypeUint32, TypeInt32, TypeFloat32:
		return 4
	case TypeUint64, TypeInt64, TypeFloat64:
		return 8
	case TypeString, TypeArray:
		return 0
	}
	return -1
}

// Value is one metadata value. Its Go representation (Any) is one of
// uint8, int8, uint16, int16, uint32, int32, float32, bool, string, uint64,
// int64, float64, a slice of one of those for an array, or []Value for an
// array of arrays (each element itself an array).
type Value struct {
	v any
}

// ValueOf wraps x, which must have one of the Go types listed for Value
// (the writer rejects any other with ErrValueType).
func ValueOf(x any) Value { return Value{x} }

// Any returns the Go value.
func (v Value) Any() any { return v.v }

// Type returns the value's type (TypeArray for an array), or an invalid
// type (String "value_type(...)") when the Go value is not one GGUF holds.
func (v Value) Type() ValueType {
	switch v.v.(type) {
	case uint8:
		return TypeUint8
	case int8:
		return TypeInt8
	case uint16:
		return TypeUint16
	case int16:
		return TypeInt16
	case uint32:
		return TypeUint32
	case int32:
		return TypeInt32
	case float32:
		return TypeFloat32
	case bool:
		return TypeBool
	case string:
		return TypeString
	case uint64:
		return TypeUint64
	case int64:
		return TypeInt64
	case float64:
		return TypeFloat64
	case []uint8, []int8, []uint16, []int16, []uint32, []int32, []float32, []bool, []string, []uint64, []int64, []float64, []Value:
		return TypeArray
	}
	return ValueType(math.MaxUint32)
}

// ElemType returns the element type of an array (TypeArray for an array of
// arrays), or an invalid type for a scalar.
func (v Value) ElemType() ValueType {
	switch v.v.(type) {
	case []uint8:
		return TypeUint8
	case []int8:
		return TypeInt8
	case []uint16:
		return TypeUint16
	case []int16:
		return TypeInt16
	case []uint32:
		return TypeUint32
	case []int32:
		return TypeInt32
	case []float32:
		return TypeFloat32
	case []bool:
		return TypeBool
	case []string:
		return TypeString
	case []uint64:
		return TypeUint64
	case []int64:
		return TypeInt64
	case []float64:
		return TypeFloat64
	case []Value:
		return TypeArray
	}
	return ValueType(math.MaxUint32)
}

// Len returns the number of elements of an array, 1 for a scalar.
func (v Value) Len() int {
	switch a := v.v.(type) {
	case []uint8:
		return len(a)
	case []int8:
		return len(a)
	case []uint16:
		return len(a)
	case []int16:
		return len(a)
	case []uint32:
		return len(a)
	case []int32:
		return len(a)
	case []float32:
		return len(a)
	case []bool:
		return len(a)
	case []string:
		return len(a)
	case []uint64:
		return len(a)
	case []int64:
		return len(a)
	case []float64:
		return len(a)
	case []Value:
		return len(a)
	}
	return 1
}

// TypeName describes the value's type: "u32", "string", "array[f32]",
// "array[array]".
func (v Value) TypeName() string {
	t := v.Type()
	if t == TypeArray {
		return "array[" + v.ElemType().String() + "]"
	}
	return t.String()
}

// Int returns an integer scalar of any width as int64; ok is false for
// other types and for a uint64 above math.MaxInt64.
func (v Value) Int() (int64, bool) {
	switch x := v.v.(type) {
	case uint8:
		return int64(x), true
	case int8:
		return int64(x), true
	case uint16:
		return int64(x), true
	case int16:
		return int64(x), true
	case uint32:
		return int64(x), true
	case int32:
		return int64(x), true
	case uint64:
		if x > math.MaxInt64 {
			return 0, false
		}
		return int64(x), true
	case int64:
		return x, true
	}
	return 0, false
}

// Float returns a float32 or float64 scalar as float64.
func (v Value) Float() (float64, bool) {
	switch x := v.v.(type) {
	case float32:
		return float64(x), true
	case float64:
		return x, true
	}
	return 0, false
}

// Ints returns an array of integers of any width as []int64; ok is false
// for other types and for uint64 elements above math.MaxInt64.
func (v Value) Ints() ([]int64, bool) {
	var out []int64
	conv := func(n int, at func(int) int64) []int64 {
		out = make([]int64, n)
		for i := range out {
			out[i] = at(i)
		}
		return out
	}
	switch a := v.v.(type) {
	case []uint8:
		return conv(len(a), func(i int) int64 { return int64(a[i]) }), true
	case []int8:
		return conv(len(a), func(i int) int64 { return int64(a[i]) }), true
	case []uint16:
		return conv(len(a), func(i int) int64 { return int64(a[i]) }), true
	case []int16:
		return conv(len(a), func(i int) int64 { return int64(a[i]) }), true
	case []uint32:
		return conv(len(a), func(i int) int64 { return int64(a[i]) }), true
	case []int32:
		return conv(len(a), func(i int) int64 { return int64(a[i]) }), true
	case []int64:
		return conv(len(a), func(i int) int64 { return a[i] }), true
	case []uint64:
		for _, x := range a {
			if x > math.MaxInt64 {
				return nil, false
			}
		}
		return conv(len(a), func(i int) int64 { return int64(a[i]) }), true
	}
	return nil, false
}

// String formats the value for people: strings quoted, arrays of more than
// 8 elements shortened to their first elements and length.
func (v Value) String() string {
	switch x := v.v.(type) {
	case string:
		return strconv.Quote(x)
	case []string:
		return formatArray(len(x), func(i int) string { return strconv.Quote(x[i]) })
	case []Value:
		return formatArray(len(x), func(i int) string { return x[i].String() })
	}
	if v.Type() == TypeArray {
		return formatArrayAny(v)
	}
	return fmt.Sprint(v.v)
}

func formatArrayAny(v Value) string {
	rv := reflect.ValueOf(v.v)
	return formatArray(rv.Len(), func(i int) string { return fmt.Sprint(rv.Index(i).Interface()) })
}

func formatArray(n int, at func(int) string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := 0; i < n && i < 8; i++ {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(at(i))
	}
	if n > 8 {
		fmt.Fprintf(&b, " ...] (%d elements)", n)
		return b.String()
	}
	b.WriteByte(']')
	return b.String()
}

// KV is one metadata key and its value.
type KV struct {
	Key   string
	Value Value
}
