package safetensors

// DType is the element type of a tensor, spelled as in the safetensors
// header ("F32", "BF16", ...).
type DType string

// The element types this package reads and writes. Any other dtype in a
// header is rejected with ErrUnknownDType.
const (
	F64  DType = "F64"
	F32  DType = "F32"
	F16  DType = "F16"
	BF16 DType = "BF16"
	I64  DType = "I64"
	I32  DType = "I32"
	I16  DType = "I16"
	I8   DType = "I8"
	U8   DType = "U8"
	BOOL DType = "BOOL"
)

// Size returns the size of one element in bytes, or 0 if d is not a
// supported dtype.
func (d DType) Size() int {
	switch d {
	case F64, I64:
		return 8
	case F32, I32:
		return 4
	case F16, BF16, I16:
		return 2
	case I8, U8, BOOL:
		return 1
	}
	return 0
}

// Valid reports whether d is one of the supported dtypes.
func (d DType) Valid() bool { return d.Size() != 0 }

// IsFloat reports whether d is a floating-point dtype (F64, F32, F16, BF16).
func (d DType) IsFloat() bool {
	switch d {
	case F64, F32, F16, BF16:
		return true
	}
	return false
}

// IsInt reports whether d is an integer dtype (I64, I32, I16, I8, U8).
// BOOL is not an integer dtype.
func (d DType) IsInt() bool {
	switch d {
	case I64, I32, I16, I8, U8:
		return true
	}
	return false
}

// String returns the header spelling of d.
func (d DType) String() string { return string(d) }
