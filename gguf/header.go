package gguf

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// Limits of the format that the reader enforces.
const (
	// Magic is the first four bytes of a GGUF file.
	Magic = "GGUF"
	// DefaultAlignment is the data alignment when general.alignment is absent.
	DefaultAlignment = 32
	// AlignmentKey is the metadata key that sets the data alignment (u32).
	AlignmentKey = "general.alignment"
	// MaxDims is the most dimensions a tensor may have (GGML_MAX_DIMS).
	MaxDims = 4
	// MaxNameLen is the longest tensor name ggml accepts, in bytes
	// (GGML_MAX_NAME - 1).
	MaxNameLen = 63
	// MaxKeyLen is the longest metadata key the format allows, in bytes.
	MaxKeyLen = 65535
	// maxStringLen bounds every string, as ggml's reader does (1 GiB).
	maxStringLen = 1 << 30
	// maxArrayDepth bounds arrays of arrays.
	maxArrayDepth = 8
	// MaxArrayLen bounds the elements of one metadata array: 64 times the
	// largest vocabularies, so that one corrupt length in a large file
	// cannot make the reader allocate gigabytes.
	MaxArrayLen = 1 << 24
	// preallocCap bounds the capacity reserved from a count before the
	// items are read; longer lists grow as they are read.
	preallocCap = 1 << 12
)

// TensorInfo describes one tensor of a file.
type TensorInfo struct {
	Name string
	Type Type
	// Dims are ggml's ne: the number of elements per dimension, innermost
	// (contiguous) first. A (rows, cols) matrix in PyTorch order has Dims
	// [cols, rows].
	Dims []int64
	// Offset is the tensor's byte offset within the data section; Size its
	// byte size (Type.RowBytes of the element count).
	Offset, Size int64
}

// NumElements returns the product of Dims (1 for no dims).
func (t TensorInfo) NumElements() int64 {
	n, _ := elements(t.Dims)
	return n
}

// Shape returns the dims outermost first, as PyTorch and safetensors order
// them (the reverse of Dims).
func (t TensorInfo) Shape() []int64 {
	s := slices.Clone(t.Dims)
	slices.Reverse(s)
	if s == nil {
		s = []int64{}
	}
	return s
}

// RowBytes returns the bytes of one contiguous row (RowLen elements).
func (t TensorInfo) RowBytes() int64 { return t.Type.RowBytes(t.RowLen()) }

// RowLen returns Dims[0], the length of one contiguous row (1 for a tensor
// without dims).
func (t TensorInfo) RowLen() int64 {
	if len(t.Dims) == 0 {
		return 1
	}
	return t.Dims[0]
}

func (t TensorInfo) clone() TensorInfo {
	t.Dims = slices.Clone(t.Dims)
	return t
}

// header is a parsed GGUF header.
type header struct {
	version    uint32
	kvs        []KV
	keys       map[string]int // key -> index in kvs
	tensors    []TensorInfo   // file order
	names      map[string]int // name -> index in tensors
	alignment  int64
	dataOffset int64 // start of the data section in the file
}

// decoder reads little-endian values from a byte slice, never past its end.
type decoder struct {
	b   []byte
	off int
	err error
}

func (d *decoder) remaining() int { return len(d.b) - d.off }

func (d *decoder) take(n int, what string) []byte {
	if d.err != nil {
		return nil
	}
	if n < 0 || n > d.remaining() {
		d.err = fmt.Errorf("%w: %s needs %d bytes at offset %d, file has %d", ErrTruncated, what, n, d.off, len(d.b))
		return nil
	}
	s := d.b[d.off : d.off+n : d.off+n]
	d.off += n
	return s
}

func (d *decoder) u8(what string) uint8 {
	if s := d.take(1, what); s != nil {
		return s[0]
	}
	return 0
}

func (d *decoder) u16(what string) uint16 {
	if s := d.take(2, what); s != nil {
		return binary.LittleEndian.Uint16(s)
	}
	return 0
}

func (d *decoder) u32(what string) uint32 {
	if s := d.take(4, what); s != nil {
		return binary.LittleEndian.Uint32(s)
	}
	return 0
}

func (d *decoder) u64(what string) uint64 {
	if s := d.take(8, what); s != nil {
		return binary.LittleEndian.Uint64(s)
	}
	return 0
}

// str reads a GGUF string (u64 length, bytes).
func (d *decoder) str(what string) string {
	n := d.u64(what + " length")
	if d.err != nil {
		return ""
	}
	if n > maxStringLen {
		d.err = fmt.Errorf("%w: %s of %d bytes (limit %d)", ErrString, what, n, maxStringLen)
		return ""
	}
	if n > uint64(d.remaining()) {
		d.err = fmt.Errorf("%w: %s of %d bytes at offset %d runs past the end of the file (%d bytes)", ErrTruncated, what, n, d.off, len(d.b))
		return ""
	}
	return string(d.take(int(n), what))
}

// count reads a u64 count of items of at least minSize bytes each and
// checks that so many could fit in the rest of the file.
func (d *decoder) count(what string, minSize int) int {
	n := d.u64(what)
	if d.err != nil {
		return 0
	}
	if n > uint64(d.remaining()/minSize) {
		d.err = fmt.Errorf("%w: %s is %d, but %d bytes remain (at least %d bytes each)", ErrCount, what, n, d.remaining(), minSize)
		return 0
	}
	return int(n)
}

func parseHeader(data []byte) (*header, *Error) {
	d := &decoder{b: data}
	fail := func(key, tensor string, err error) (*header, *Error) {
		return nil, &Error{Key: key, Tensor: tensor, Err: err}
	}
	magic := d.take(4, "magic")
	if d.err != nil {
		return fail("", "", fmt.Errorf("%w: %d bytes", ErrMagic, len(data)))
	}
	if string(magic) != Magic {
		return fail("", "", fmt.Errorf("%w: magic %q, want %q", ErrMagic, magic, Magic))
	}
	h := &header{version: d.u32("version")}
	if d.err != nil {
		return fail("", "", d.err)
	}
	switch v := h.version; {
	case v == 2 || v == 3:
	case v&0xFFFF == 0:
		return fail("", "", fmt.Errorf("%w: version field %#08x looks byte-swapped (a big-endian file); only little-endian files are supported", ErrVersion, v))
	case v == 1:
		return fail("", "", fmt.Errorf("%w: version 1 (counts of 32 bits) is obsolete; convert the file again", ErrVersion))
	default:
		return fail("", "", fmt.Errorf("%w: version %d (supported: 2 and 3)", ErrVersion, v))
	}
	// The minimum encoded size of one tensor info (empty name, no dims)
	// and one key/value (one-byte key, one-byte value) bound the counts.
	nTensors := d.count("tensor count", 8+4+4+8)
	nKV := d.count("key/value count", 8+1+4+1)
	if d.err != nil {
		return fail("", "", d.err)
	}

	h.kvs = make([]KV, 0, min(nKV, preallocCap))
	h.keys = make(map[string]int, min(nKV, preallocCap))
	for i := 0; i < nKV; i++ {
		key := d.str(fmt.Sprintf("key %d", i))
		if d.err != nil {
			return fail("", "", d.err)
		}
		switch {
		case key == "":
			return fail("", "", fmt.Errorf("%w: key %d is empty", ErrKey, i))
		case len(key) > MaxKeyLen:
			return fail(key[:64]+"...", "", fmt.Errorf("%w: key of %d bytes (limit %d)", ErrKey, len(key), MaxKeyLen))
		}
		if _, dup := h.keys[key]; dup {
			return fail(key, "", fmt.Errorf("%w: duplicate key", ErrKey))
		}
		typ := ValueType(d.u32("value type"))
		if d.err != nil {
			return fail(key, "", d.err)
		}
		v, err := d.value(typ, 0)
		if err != nil {
			return fail(key, "", err)
		}
		h.keys[key] = len(h.kvs)
		h.kvs = append(h.kvs, KV{Key: key, Value: v})
	}

	h.alignment = DefaultAlignment
	if i, ok := h.keys[AlignmentKey]; ok {
		a, isU32 := h.kvs[i].Value.v.(uint32)
		if !isU32 {
			return fail(AlignmentKey, "", fmt.Errorf("%w: %s, want u32", ErrValueType, h.kvs[i].Value.TypeName()))
		}
		if a == 0 || a&(a-1) != 0 {
			return fail(AlignmentKey, "", fmt.Errorf("%w: alignment %d is not a power of two", ErrValue, a))
		}
		h.alignment = int64(a)
	}

	h.tensors = make([]TensorInfo, 0, min(nTensors, preallocCap))
	h.names = make(map[string]int, min(nTensors, preallocCap))
	for i := 0; i < nTensors; i++ {
		t, err := d.tensorInfo(i)
		if err != nil {
			return fail("", t.Name, err)
		}
		if _, dup := h.names[t.Name]; dup {
			return fail("", t.Name, fmt.Errorf("%w: duplicate tensor name", ErrTensorName))
		}
		h.names[t.Name] = len(h.tensors)
		h.tensors = append(h.tensors, t)
	}

	// The data section starts at the next multiple of the alignment (ggml
	// pads only when there are tensors).
	end := int64(d.off)
	if nTensors > 0 {
		end = alignUp(end, h.alignment)
	}
	if end > int64(len(data)) {
		return fail("", "", fmt.Errorf("%w: data section starts at %d (aligned to %d), file has %d bytes", ErrTruncated, end, h.alignment, len(data)))
	}
	h.dataOffset = end
	dataLen := int64(len(data)) - end

	// Offsets: aligned, inside the file, and no two tensors overlap.
	for _, t := range h.tensors {
		if t.Offset%h.alignment != 0 {
			return fail("", t.Name, fmt.Errorf("%w: offset %d is not a multiple of the alignment %d", ErrOffset, t.Offset, h.alignment))
		}
		if t.Offset > dataLen || t.Size > dataLen-t.Offset {
			return fail("", t.Name, fmt.Errorf("%w: %s %v needs bytes [%d, %d) of the data section, which has %d (file of %d bytes)", ErrTruncated, t.Type, t.Dims, t.Offset, uint64(t.Offset)+uint64(t.Size), dataLen, len(data)))
		}
	}
	order := make([]int, len(h.tensors))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int {
		ta, tb := h.tensors[a], h.tensors[b]
		return cmp.Or(cmp.Compare(ta.Offset, tb.Offset), cmp.Compare(ta.Size, tb.Size))
	})
	last := -1 // the non-empty tensor that ends last so far
	for _, i := range order {
		cur := h.tensors[i]
		if cur.Size == 0 {
			continue // an empty tensor occupies no bytes
		}
		if last >= 0 {
			prev := h.tensors[last]
			if cur.Offset < prev.Offset+prev.Size {
				return fail("", cur.Name, fmt.Errorf("%w: bytes [%d, %d) overlap tensor %q at [%d, %d)", ErrOffset, cur.Offset, cur.Offset+cur.Size, prev.Name, prev.Offset, prev.Offset+prev.Size))
			}
		}
		if last < 0 || cur.Offset+cur.Size > h.tensors[last].Offset+h.tensors[last].Size {
			last = i
		}
	}
	return h, nil
}

func alignUp(n, a int64) int64 { return (n + a - 1) / a * a }

// tensorInfo reads the i-th tensor info. On error the returned info holds
// the name when it was read.
func (d *decoder) tensorInfo(i int) (TensorInfo, error) {
	var t TensorInfo
	t.Name = d.str(fmt.Sprintf("name of tensor %d", i))
	if d.err != nil {
		return t, d.err
	}
	switch {
	case t.Name == "":
		return t, fmt.Errorf("%w: tensor %d has an empty name", ErrTensorName, i)
	case len(t.Name) > MaxNameLen:
		return t, fmt.Errorf("%w: name of %d bytes (ggml's limit is %d)", ErrTensorName, len(t.Name), MaxNameLen)
	}
	nDims := d.u32("dimension count")
	if d.err != nil {
		return t, d.err
	}
	if nDims > MaxDims {
		return t, fmt.Errorf("%w: %d dimensions (limit %d)", ErrShape, nDims, MaxDims)
	}
	t.Dims = make([]int64, nDims)
	for j := range t.Dims {
		v := d.u64("dimension")
		if d.err != nil {
			return t, d.err
		}
		if v > math.MaxInt64 {
			return t, fmt.Errorf("%w: dimension %d is %d", ErrShape, j, v)
		}
		t.Dims[j] = int64(v)
	}
	n, ok := elements(t.Dims)
	if !ok {
		return t, fmt.Errorf("%w: %v has more than 2^63 elements", ErrShape, t.Dims)
	}
	t.Type = Type(d.u32("type"))
	t.Offset = 0
	off := d.u64("offset")
	if d.err != nil {
		return t, d.err
	}
	if !t.Type.Known() {
		return t, fmt.Errorf("%w: unknown ggml type id %d", ErrType, uint32(t.Type))
	}
	if bs := int64(t.Type.BlockSize()); t.RowLen()%bs != 0 {
		return t, fmt.Errorf("%w: %s rows of %d elements are not a multiple of the block size %d", ErrShape, t.Type, t.RowLen(), bs)
	}
	t.Size = t.Type.RowBytes(n)
	if t.Size < 0 {
		return t, fmt.Errorf("%w: %s %v is too large", ErrShape, t.Type, t.Dims)
	}
	if off > math.MaxInt64 {
		return t, fmt.Errorf("%w: offset %d", ErrOffset, off)
	}
	t.Offset = int64(off)
	return t, nil
}

// value reads a value of type typ; depth counts enclosing arrays.
func (d *decoder) value(typ ValueType, depth int) (Value, error) {
	switch typ {
	case TypeUint8:
		return Value{d.u8("u8 value")}, d.err
	case TypeInt8:
		return Value{int8(d.u8("i8 value"))}, d.err
	case TypeUint16:
		return Value{d.u16("u16 value")}, d.err
	case TypeInt16:
		return Value{int16(d.u16("i16 value"))}, d.err
	case TypeUint32:
		return Value{d.u32("u32 value")}, d.err
	case TypeInt32:
		return Value{int32(d.u32("i32 value"))}, d.err
	case TypeFloat32:
		return Value{math.Float32frombits(d.u32("f32 value"))}, d.err
	case TypeUint64:
		return Value{d.u64("u64 value")}, d.err
	case TypeInt64:
		return Value{int64(d.u64("i64 value"))}, d.err
	case TypeFloat64:
		return Value{math.Float64frombits(d.u64("f64 value"))}, d.err
	case TypeBool:
		b := d.u8("bool value")
		if d.err != nil {
			return Value{}, d.err
		}
		if b > 1 {
			return Value{}, fmt.Errorf("%w: bool byte %d (want 0 or 1)", ErrValue, b)
		}
		return Value{b == 1}, nil
	case TypeString:
		s := d.str("string value")
		return Value{s}, d.err
	case TypeArray:
		return d.array(depth)
	}
	return Value{}, fmt.Errorf("%w: unknown value type %d", ErrValueType, uint32(typ))
}

func (d *decoder) array(depth int) (Value, error) {
	if depth >= maxArrayDepth {
		return Value{}, fmt.Errorf("%w: arrays nested more than %d deep", ErrValueType, maxArrayDepth)
	}
	elem := ValueType(d.u32("array element type"))
	if d.err != nil {
		return Value{}, d.err
	}
	size := elem.size()
	switch {
	case size < 0:
		return Value{}, fmt.Errorf("%w: unknown array element type %d", ErrValueType, uint32(elem))
	case elem == TypeString:
		size = 8 // the length prefix
	case elem == TypeArray:
		size = 12 // element type and length
	}
	n := d.count("array length", size)
	if d.err != nil {
		return Value{}, d.err
	}
	if n > MaxArrayLen {
		return Value{}, fmt.Errorf("%w: array of %d elements (limit %d)", ErrCount, n, MaxArrayLen)
	}
	var raw []byte
	if elem != TypeString && elem != TypeArray {
		raw = d.take(n*size, "array")
		if d.err != nil {
			return Value{}, d.err
		}
	}
	le := binary.LittleEndian
	switch elem {
	case TypeUint8:
		return Value{slices.Clone(raw)}, nil
	case TypeInt8:
		a := make([]int8, n)
		for i := range a {
			a[i] = int8(raw[i])
		}
		return Value{a}, nil
	case TypeBool:
		a := make([]bool, n)
		for i := range a {
			if raw[i] > 1 {
				return Value{}, fmt.Errorf("%w: bool element %d is byte %d (want 0 or 1)", ErrValue, i, raw[i])
			}
			a[i] = raw[i] == 1
		}
		return Value{a}, nil
	case TypeUint16:
		a := make([]uint16, n)
		for i := range a {
			a[i] = le.Uint16(raw[2*i:])
		}
		return Value{a}, nil
	case TypeInt16:
		a := make([]int16, n)
		for i := range a {
			a[i] = int16(le.Uint16(raw[2*i:]))
		}
		return Value{a}, nil
	case TypeUint32:
		a := make([]uint32, n)
		for i := range a {
			a[i] = le.Uint32(raw[4*i:])
		}
		return Value{a}, nil
	case TypeInt32:
		a := make([]int32, n)
		for i := range a {
			a[i] = int32(le.Uint32(raw[4*i:]))
		}
		return Value{a}, nil
	case TypeFloat32:
		a := make([]float32, n)
		for i := range a {
			a[i] = math.Float32frombits(le.Uint32(raw[4*i:]))
		}
		return Value{a}, nil
	case TypeUint64:
		a := make([]uint64, n)
		for i := range a {
			a[i] = le.Uint64(raw[8*i:])
		}
		return Value{a}, nil
	case TypeInt64:
		a := make([]int64, n)
		for i := range a {
			a[i] = int64(le.Uint64(raw[8*i:]))
		}
		return Value{a}, nil
	case TypeFloat64:
		a := make([]float64, n)
		for i := range a {
			a[i] = math.Float64frombits(le.Uint64(raw[8*i:]))
		}
		return Value{a}, nil
	case TypeString:
		a := make([]string, 0, min(n, preallocCap))
		for i := 0; i < n; i++ {
			s := d.str("string element")
			if d.err != nil {
				return Value{}, fmt.Errorf("element %d: %w", i, d.err)
			}
			a = append(a, s)
		}
		return Value{a}, nil
	case TypeArray:
		a := make([]Value, 0, min(n, preallocCap))
		for i := 0; i < n; i++ {
			v, err := d.array(depth + 1)
			if err != nil {
				return Value{}, fmt.Errorf("element %d: %w", i, err)
			}
			a = append(a, v)
		}
		return Value{a}, nil
	}
	return Value{}, fmt.Errorf("%w: unknown array element type %d", ErrValueType, uint32(elem))
}

// elements returns the number of elements of a shape of non-negative
// dimensions, and false when it exceeds math.MaxInt64. A shape with a zero
// dimension holds no elements, however large the others are: the reader and
// the writer both count this way, so whatever one accepts the other does.
func elements(dims []int64) (int64, bool) {
	if slices.Index(dims, 0) >= 0 {
		return 0, true
	}
	n := int64(1)
	for _, d := range dims {
		hi, lo := bits.Mul64(uint64(n), uint64(d))
		if hi != 0 || lo > math.MaxInt64 {
			return 0, false
		}
		n = int64(lo)
	}
	return n, true
}
