package safetensors

import (
	"encoding/binary"
	"fmt"
	"math"
	"unsafe"
)

// Tensor is one tensor's description and bytes.
type Tensor struct {
	TensorInfo
	// File names the file the tensor came from, for error messages.
	File string
	// Data holds the little-endian element bytes. For tensors returned by a
	// File it aliases the file's memory: do not modify it, and do not use it
	// after the File is closed.
	Data []byte
}

// littleEndian reports whether the host stores integers little-endian,
// which the zero-copy views require.
var littleEndian = func() bool {
	x := uint16(1)
	return *(*byte)(unsafe.Pointer(&x)) == 1
}()

func (t Tensor) err(err error) error { return newError(t.File, t.Name, err) }

// count checks that Data holds exactly the elements Shape describes and
// returns their number.
func (t Tensor) count() (int, error) {
	size := t.DType.Size()
	if size == 0 {
		return 0, t.err(fmt.Errorf("%w: %q", ErrUnknownDType, t.DType))
	}
	n := t.NumElements()
	if n < 0 {
		return 0, t.err(fmt.Errorf("%w: %v", ErrInvalidShape, t.Shape))
	}
	if n > len(t.Data)/size || n*size != len(t.Data) {
		return 0, t.err(fmt.Errorf("%w: %s%v needs %d elements, data holds %d bytes", ErrSizeMismatch, t.DType, t.Shape, n, len(t.Data)))
	}
	return n, nil
}

// Float32 converts the elements of a float tensor (F64, F32, F16, BF16) to
// a new []float32. F64 values are rounded to nearest; values beyond the
// float32 range become ±Inf.
func (t Tensor) Float32() ([]float32, error) {
	if !t.DType.IsFloat() {
		return nil, t.err(fmt.Errorf("%w: Float32 of a %s tensor", ErrDTypeMismatch, t.DType))
	}
	n, err := t.count()
	if err != nil {
		return nil, err
	}
	out := make([]float32, n)
	d := t.Data
	switch t.DType {
	case F64:
		for i := range out {
			out[i] = float32(math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:])))
		}
	case F32:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:]))
		}
	case F16:
		for i := range out {
			out[i] = F16ToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	case BF16:
		for i := range out {
			out[i] = BF16ToFloat32(binary.LittleEndian.Uint16(d[2*i:]))
		}
	}
	return out, nil
}

// Float64 converts the elements of a float tensor (F64, F32, F16, BF16) to
// a new []float64. The conversion is exact.
func (t Tensor) Float64() ([]float64, error) {
	if !t.DType.IsFloat() {
		return nil, t.err(fmt.Errorf("%w: Float64 of a %s tensor", ErrDTypeMismatch, t.DType))
	}
	n, err := t.count()
	if err != nil {
		return nil, err
	}
	out := make([]float64, n)
	d := t.Data
	switch t.DType {
	case F64:
		for i := range out {
			out[i] = math.Float64frombits(binary.LittleEndian.Uint64(d[8*i:]))
		}
	case F32:
		for i := range out {
			out[i] = float64(math.Float32frombits(binary.LittleEndian.Uint32(d[4*i:])))
		}
	case F16:
		for i := range out {
			out[i] = float64(F16ToFloat32(binary.LittleEndian.Uint16(d[2*i:])))
		}
	case BF16:
		for i := range out {
			out[i] = float64(BF16ToFloat32(binary.LittleEndian.Uint16(d[2*i:])))
		}
	}
	return out, nil
}

// Int64 converts the elements of an integer tensor (I64, I32, I16, I8, U8)
// or a BOOL tensor (0 or 1) to a new []int64.
func (t Tensor) Int64() ([]int64, error) {
	if !t.DType.IsInt() && t.DType != BOOL {
		return nil, t.err(fmt.Errorf("%w: Int64 of a %s tensor", ErrDTypeMismatch, t.DType))
	}
	n, err := t.count()
	if err != nil {
		return nil, err
	}
	out := make([]int64, n)
	d := t.Data
	switch t.DType {
	case I64:
		for i := range out {
			out[i] = int64(binary.LittleEndian.Uint64(d[8*i:]))
		}
	case I32:
		for i := range out {
			out[i] = int64(int32(binary.LittleEndian.Uint32(d[4*i:])))
		}
	case I16:
		for i := range out {
			out[i] = int64(int16(binary.LittleEndian.Uint16(d[2*i:])))
		}
	case I8:
		for i := range out {
			out[i] = int64(int8(d[i]))
		}
	case U8:
		for i := range out {
			out[i] = int64(d[i])
		}
	case BOOL:
		for i := range out {
			if d[i] != 0 {
				out[i] = 1
			}
		}
	}
	return out, nil
}

// CheckFinite returns an error wrapping ErrNonFinite, naming the first
// offending element, if a float tensor holds a NaN or an infinity. The
// format allows them; loaders may scan weights with this on request.
// Integer and BOOL tensors always pass.
func (t Tensor) CheckFinite() error {
	if !t.DType.IsFloat() {
		return nil
	}
	n, err := t.count()
	if err != nil {
		return err
	}
	d := t.Data
	for i := range n {
		var bad bool
		switch t.DType {
		case F64:
			bad = binary.LittleEndian.Uint64(d[8*i:])&0x7ff0000000000000 == 0x7ff0000000000000
		case F32:
			bad = binary.LittleEndian.Uint32(d[4*i:])&0x7f800000 == 0x7f800000
		case F16:
			bad = binary.LittleEndian.Uint16(d[2*i:])&0x7c00 == 0x7c00
		case BF16:
			bad = binary.LittleEndian.Uint16(d[2*i:])&0x7f80 == 0x7f80
		}
		if bad {
			v, _ := Tensor{TensorInfo: TensorInfo{DType: t.DType, Shape: []int{1}}, Data: d[i*t.DType.Size() : (i+1)*t.DType.Size()]}.Float64()
			return t.err(fmt.Errorf("%w: element %d is %v", ErrNonFinite, i, v[0]))
		}
	}
	return nil
}

// F32View returns the data of an F32 tensor as a []float32 sharing its
// memory, without copying. It returns false if the dtype is not F32, the
// data is not 4-byte aligned, its length does not match the shape, or the
// host is not little-endian; use Float32 then. The view is read-only when
// the tensor comes from a mapped file.
func (t Tensor) F32View() ([]float32, bool) {
	if t.DType != F32 || !littleEndian {
		return nil, false
	}
	n, err := t.count()
	if err != nil {
		return nil, false
	}
	if n == 0 {
		return []float32{}, true
	}
	p := unsafe.Pointer(unsafe.SliceData(t.Data))
	if uintptr(p)%unsafe.Alignof(float32(0)) != 0 {
		return nil, false
	}
	return unsafe.Slice((*float32)(p), n), true
}

// BF16View returns the raw bfloat16 bit patterns of a BF16 tensor as a
// []uint16 sharing its memory, without copying. It returns false if the
// dtype is not BF16, the data is not 2-byte aligned, its length does not
// match the shape, or the host is not little-endian.
func (t Tensor) BF16View() ([]uint16, bool) {
	if t.DType != BF16 || !littleEndian {
		return nil, false
	}
	n, err := t.count()
	if err != nil {
		return nil, false
	}
	if n == 0 {
		return []uint16{}, true
	}
	p := unsafe.Pointer(unsafe.SliceData(t.Data))
	if uintptr(p)%unsafe.Alignof(uint16(0)) != 0 {
		return nil, false
	}
	return unsafe.Slice((*uint16)(p), n), true
}
