package kernels

import (
	"fmt"
	"math"
)

// DType is the storage type of a weight matrix.
type DType uint8

const (
	F32    DType = iota // float32
	BF16                // bfloat16: the top 16 bits of a float32
	I8                  // int8 with one float32 scale per row
	Blocks              // block-quantized (Matrix.Format says how)
)

func (d DType) String() string {
	switch d {
	case F32:
		return "f32"
	case BF16:
		return "bf16"
	case I8:
		return "int8"
	case Blocks:
		return "blocks"
	}
	return fmt.Sprintf("DType(%d)", uint8(d))
}

// Matrix is a row-major weight matrix of Rows×Cols in one storage type. Only
// the slice of its DType is set; it usually aliases memory-mapped file data.
// A row r holds the weights of output r: y[r] = Σ_c W[r,c]·x[c] (the PyTorch
// nn.Linear [out, in] layout).
type Matrix struct {
	Rows, Cols int
	DType      DType
	F32        []float32
	BF16       []uint16
	I8         []int8
	Scales     []float32 // I8 only: one per row, w = Scales[r]·I8[r*Cols+c]
	// Blocks only: the rows one after the other, each Cols/Format.Elems
	// blocks of Format.Bytes bytes.
	Q      []byte
	Format *BlockFormat
}

// TypeName names the storage of m: "f32", "bf16", "int8" or the block
// format's name.
func (m *Matrix) TypeName() string {
	if m.DType == Blocks && m.Format != nil {
		return m.Format.Name
	}
	return m.DType.String()
}

// Bytes is the storage size of the matrix weights (scales included).
func (m *Matrix) Bytes() int64 {
	n := int64(m.Rows) * int64(m.Cols)
	switch m.DType {
	case BF16:
		return 2 * n
	case I8:
		return n + 4*int64(m.Rows)
	case Blocks:
		return int64(len(m.Q))
	}
	return 4 * n
}

// Row returns row r converted to float32 in dst (len Cols) and returns dst.
func (m *Matrix) Row(dst []float32, r int) []float32 {
	c := m.Cols
	switch m.DType {
	case F32:
		copy(dst[:c], m.F32[r*c:(r+1)*c])
	case BF16:
		for i, v := range m.BF16[r*c : (r+1)*c] {
			dst[i] = BF16ToF32(v)
		}
	case I8:
		s := m.Scales[r]
		for i, v := range m.I8[r*c : (r+1)*c] {
			dst[i] = s * float32(v)
		}
	case Blocks:
		rb := m.Format.rowBytes(c)
		m.Format.Dequantize(dst[:c], m.Q[r*rb:(r+1)*rb])
	}
	return dst[:c]
}

// Slice returns the sub-matrix of rows [r0, r1), sharing storage.
func (m *Matrix) Slice(r0, r1 int) *Matrix {
	s := &Matrix{Rows: r1 - r0, Cols: m.Cols, DType: m.DType, Format: m.Format}
	a, b := r0*m.Cols, r1*m.Cols
	switch m.DType {
	case F32:
		s.F32 = m.F32[a:b]
	case BF16:
		s.BF16 = m.BF16[a:b]
	case I8:
		s.I8 = m.I8[a:b]
		s.Scales = m.Scales[r0:r1]
	case Blocks:
		rb := m.Format.rowBytes(m.Cols)
		s.Q = m.Q[r0*rb : r1*rb]
	}
	return s
}

// Validate reports whether the storage slices match Rows×Cols.
func (m *Matrix) Validate() error {
	n := m.Rows * m.Cols
	var got int
	switch m.DType {
	case F32:
		got = len(m.F32)
	case BF16:
		got = len(m.BF16)
	case I8:
		got = len(m.I8)
		if len(m.Scales) != m.Rows {
			return fmt.Errorf("kernels: int8 matrix %dx%d has %d scales", m.Rows, m.Cols, len(m.Scales))
		}
	case Blocks:
		return m.validateBlocks()
	default:
		return fmt.Errorf("kernels: unknown dtype %v", m.DType)
	}
	if got != n {
		return fmt.Errorf("kernels: %v matrix %dx%d has %d elements", m.DType, m.Rows, m.Cols, got)
	}
	return nil
}

// BF16ToF32 widens a bfloat16 to float32 exactly.
func BF16ToF32(v uint16) float32 { return math.Float32frombits(uint32(v) << 16) }

// F32ToBF16 rounds a float32 to the nearest bfloat16 (ties to even), keeping NaN a NaN.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 { // NaN: keep it quiet and non-zero
		return uint16(b>>16) | 0x40
	}
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}

// QuantizeI8 quantizes m to int8 with one symmetric scale per row:
// scale = max|w_row|/127, q = clamp(round(w/scale), -127, 127).
func QuantizeI8(m *Matrix) *Matrix {
	q := &Matrix{Rows: m.Rows, Cols: m.Cols, DType: I8, I8: make([]int8, m.Rows*m.Cols), Scales: make([]float32, m.Rows)}
	row := make([]float32, m.Cols)
	for r := 0; r < m.Rows; r++ {
		m.Row(row, r)
		var mx float32
		for _, v := range row {
			if a := float32(math.Abs(float64(v))); a > mx {
				mx = a
			}
		}
		if mx == 0 {
			continue
		}
		s := mx / 127
		q.Scales[r] = s
		dst := q.I8[r*m.Cols : (r+1)*m.Cols]
		for i, v := range row {
			x := math.Round(float64(v / s))
			if x > 127 {
				x = 127
			} else if x < -127 {
				x = -127
			}
			dst[i] = int8(x)
		}
	}
	return q
}
