package gguf

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"sync"
)

// The quantizers below reproduce ggml-quants.c's quantize_row_*_ref (and
// the make_qx_quants / make_q3_quants / make_qkx2_quants searches they
// use) operation for operation in float32: the functions llama-quantize
// runs when no importance matrix is given. C's conversions are spelled
// out: a float stored into an int8 or uint8 goes through a 32-bit
// truncating conversion (x86's cvttss2si: NaN and out-of-range give
// math.MinInt32) and keeps the low byte; MIN and MAX are ggml's macros
// (a < b ? a : b). As in dequant.go, each product feeding a sum is
// converted to float32 to keep the compiler from fusing it into an FMA.

// Quantize converts src to type t in dst. len(src) must be a multiple of
// t's block size and dst must hold exactly the bytes of len(src) elements.
// Blocks equal ggml's reference quantizers byte for byte.
func Quantize(t Type, src []float32, dst []byte) error {
	if !t.CanQuantize() {
		return fmt.Errorf("%w: cannot quantize float32 to %s", ErrType, t)
	}
	want := t.RowBytes(int64(len(src)))
	if want < 0 || want != int64(len(dst)) {
		return fmt.Errorf("%w: %d elements as %s need %d bytes (a multiple of %d elements), got %d", ErrSize, len(src), t, want, t.BlockSize(), len(dst))
	}
	le := binary.LittleEndian
	switch t {
	case F32:
		for i, v := range src {
			le.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			le.PutUint16(dst[2*i:], Float32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			le.PutUint16(dst[2*i:], Float32ToBF16(v))
		}
	default:
		bs, bb := t.BlockSize(), t.BlockBytes()
		f := blockQuantizers[t]
		run := func(lo, hi int) {
			var scratch quantScratch
			for i := lo; i < hi; i++ {
				f(src[i*bs:(i+1)*bs], dst[i*bb:(i+1)*bb], &scratch)
			}
		}
		// Blocks are independent, so large inputs are split over the
		// processors; the bytes do not depend on the split.
		nb := len(src) / bs
		workers := min(runtime.GOMAXPROCS(0), nb*bs/parallelElems)
		if workers <= 1 {
			run(0, nb)
			return nil
		}
		var wg sync.WaitGroup
		for w := 0; w < workers; w++ {
			lo, hi := nb*w/workers, nb*(w+1)/workers
			wg.Go(func() { run(lo, hi) })
		}
		wg.Wait()
	}
	return nil
}

// parallelElems is the number of elements per worker below which Quantize
// stays on the calling goroutine.
const parallelElems = 1 << 16

// quantScratch is the per-call working memory of the K-quantizers.
type quantScratch struct {
	L       [QK_K]uint8
	Li      [QK_K]int8
	Laux    [32]uint8
	weights [32]float32
	scales  [QK_K / 16]float32
	mins    [QK_K / 16]float32
}

var blockQuantizers = map[Type]func(x []float32, b []byte, s *quantScratch){
	Q4_0: quantQ4_0,
	Q4_1: quantQ4_1,
	Q5_0: quantQ5_0,
	Q5_1: quantQ5_1,
	Q8_0: quantQ8_0,
	Q2_K: quantQ2_K,
	Q3_K: quantQ3_K,
	Q4_K: quantQ4_K,
	Q5_K: quantQ5_K,
	Q6_K: quantQ6_K,
	Q8_K: quantQ8_K,
}

// cvtt is C's float-to-int conversion as x86 performs it (cvttss2si):
// truncation toward zero, math.MinInt32 for NaN and out-of-range values.
func cvtt(f float32) int32 {
	if f != f || f >= 0x1p31 || f < -0x1p31 {
		return math.MinInt32
	}
	return int32(f)
}

// toInt8 is C's (int8_t)f; toUint8 is (uint8_t)f.
func toInt8(f float32) int8   { return int8(cvtt(f)) }
func toUint8(f float32) uint8 { return uint8(cvtt(f)) }

// roundf is C's roundf: halves away from zero.
func roundf(f float32) float32 { return float32(math.Round(float64(f))) }

func fabsf(f float32) float32 { return math.Float32frombits(math.Float32bits(f) &^ (1 << 31)) }

// nearestInt is ggml's nearest_int: round to nearest, ties to even, by
// adding 1.5*2^23 (valid for |f| <= 4194303, like ggml's).
func nearestInt(f float32) int {
	val := float32(f) + 12582912
	i := int32(math.Float32bits(val))
	return int((i & 0x007fffff) - 0x00400000)
}

func putHalf(b []byte, f float32) { binary.LittleEndian.PutUint16(b, Float32ToF16(f)) }

func quantQ4_0(x []float32, b []byte, _ *quantScratch) {
	var amax, max float32
	for _, v := range x {
		if amax < fabsf(v) {
			amax = fabsf(v)
			max = v
		}
	}
	d := max / -8
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putHalf(b, d)
	qs := b[2:18]
	for j := 0; j < 16; j++ {
		xi0 := uint8(min(15, int(toInt8(float32(x[j]*id)+8.5))))
		xi1 := uint8(min(15, int(toInt8(float32(x[16+j]*id)+8.5))))
		qs[j] = xi0 | xi1<<4
	}
}

func minMax(x []float32) (lo, hi float32) {
	lo, hi = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < lo {
			lo = v
		}
		if v > hi {
			hi = v
		}
	}
	return lo, hi
}

func quantQ4_1(x []float32, b []byte, _ *quantScratch) {
	lo, hi := minMax(x)
	d := (hi - lo) / 15
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putHalf(b, d)
	putHalf(b[2:], lo)
	qs := b[4:20]
	for j := 0; j < 16; j++ {
		xi0 := uint8(min(15, int(toInt8(float32((x[j]-lo)*id)+0.5))))
		xi1 := uint8(min(15, int(toInt8(float32((x[16+j]-lo)*id)+0.5))))
		qs[j] = xi0 | xi1<<4
	}
}

func quantQ5_0(x []float32, b []byte, _ *quantScratch) {
	var amax, max float32
	for _, v := range x {
		if amax < fabsf(v) {
			amax = fabsf(v)
			max = v
		}
	}
	d := max / -16
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putHalf(b, d)
	var qh uint32
	qs := b[6:22]
	for j := 0; j < 16; j++ {
		xi0 := uint8(min(31, int(toInt8(float32(x[j]*id)+16.5))))
		xi1 := uint8(min(31, int(toInt8(float32(x[16+j]*id)+16.5))))
		qs[j] = xi0&0x0F | (xi1&0x0F)<<4
		qh |= uint32(xi0&0x10) >> 4 << j
		qh |= uint32(xi1&0x10) >> 4 << (j + 16)
	}
	binary.LittleEndian.PutUint32(b[2:], qh)
}

func quantQ5_1(x []float32, b []byte, _ *quantScratch) {
	lo, hi := minMax(x)
	d := (hi - lo) / 31
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putHalf(b, d)
	putHalf(b[2:], lo)
	var qh uint32
	qs := b[8:24]
	for j := 0; j < 16; j++ {
		xi0 := toUint8(float32((x[j]-lo)*id) + 0.5)
		xi1 := toUint8(float32((x[16+j]-lo)*id) + 0.5)
		qs[j] = xi0&0x0F | (xi1&0x0F)<<4
		qh |= uint32(xi0&0x10) >> 4 << j
		qh |= uint32(xi1&0x10) >> 4 << (j + 16)
	}
	binary.LittleEndian.PutUint32(b[4:], qh)
}

func quantQ8_0(x []float32, b []byte, _ *quantScratch) {
	var amax float32
	for _, v := range x {
		if a := fabsf(v); !(amax > a) { // ggml's MAX(amax, a)
			amax = a
		}
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	putHalf(b, d)
	for j, v := range x {
		b[2+j] = uint8(toInt8(roundf(float32(v * id))))
	}
}

const groupMaxEps = 1e-15

// makeQxQuants is ggml's make_qx_quants with rmse_type 1 and no weights
// (the only form the reference quantizers use, for Q6_K). L receives
// nmax + q for q in [-nmax, nmax-1].
func makeQxQuants(x []float32, nmax int, L []int8) float32 {
	var max, amax float32
	for _, v := range x {
		if ax := fabsf(v); ax > amax {
			amax, max = ax, v
		}
	}
	if amax < groupMaxEps {
		for i := range x {
			L[i] = 0
		}
		return 0
	}
	iscale := float32(-nmax) / max
	var sumlx, suml2 float32
	for i, v := range x {
		l := nearestInt(float32(iscale * v))
		l = max2(-nmax, min2(nmax-1, l))
		L[i] = int8(l + nmax)
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := float32(scale * sumlx)
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(float32(nmax) + float32(0.1*float32(is))) / max
		sumlx, suml2 = 0, 0
		for _, v := range x {
			l := nearestInt(float32(iscale * v))
			l = max2(-nmax, min2(nmax-1, l))
			w := float32(v * v)
			fl := float32(l)
			sumlx += float32(float32(w*v) * fl)
			suml2 += float32(float32(w*fl) * fl)
		}
		if suml2 > 0 && float32(sumlx*sumlx) > float32(best*suml2) {
			for i, v := range x {
				l := nearestInt(float32(iscale * v))
				L[i] = int8(nmax + max2(-nmax, min2(nmax-1, l)))
			}
			scale = sumlx / suml2
			best = float32(scale * sumlx)
		}
	}
	return scale
}

// min2 and max2 are ggml's MIN and MAX on ints.
func min2(a, b int) int {
	if a < b {
		return a
	}
	return b
}

func max2(a, b int) int {
	if a > b {
		return a
	}
	return b
}

// makeQ3Quants is ggml's make_q3_quants with do_rmse true (as Q3_K uses
// it). L receives nmax + q for q in [-nmax, nmax-1].
func makeQ3Quants(x []float32, nmax int, L []int8) float32 {
	var max, amax float32
	for _, v := range x {
		if ax := fabsf(v); ax > amax {
			amax, max = ax, v
		}
	}
	if amax < groupMaxEps {
		for i := range x {
			L[i] = 0
		}
		return 0
	}
	iscale := float32(-nmax) / max
	var sumlx, suml2 float32
	for i, v := range x {
		l := nearestInt(float32(iscale * v))
		l = max2(-nmax, min2(nmax-1, l))
		L[i] = int8(l)
		w := float32(v * v)
		fl := float32(l)
		sumlx += float32(float32(w*v) * fl)
		suml2 += float32(float32(w*fl) * fl)
	}
	for itry := 0; itry < 5; itry++ {
		changed := 0
		for i, v := range x {
			w := float32(v * v)
			fL := float32(L[i])
			slx := sumlx - float32(float32(w*v)*fL)
			if slx > 0 {
				sl2 := suml2 - float32(float32(w*fL)*fL)
				newL := nearestInt(float32(float32(v*sl2) / slx))
				newL = max2(-nmax, min2(nmax-1, newL))
				if newL != int(L[i]) {
					fn := float32(newL)
					slx += float32(float32(w*v) * fn)
					sl2 += float32(float32(w*fn) * fn)
					if sl2 > 0 && float32(float32(slx*slx)*suml2) > float32(float32(sumlx*sumlx)*sl2) {
						L[i] = int8(newL)
						sumlx, suml2 = slx, sl2
						changed++
					}
				}
			}
		}
		if changed == 0 {
			break
		}
	}
	for i := range x {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// makeQkx2Quants is ggml's make_qkx2_quants: a scale and min for x with
// levels in [0, nmax], searched over nstep+1 trial scales. It returns the
// scale and the negated min.
func makeQkx2Quants(x, weights []float32, nmax int, L, Laux []uint8, rmin, rdelta float32, nstep int, useMad bool) (float32, float32) {
	n := len(x)
	weights, L, Laux = weights[:n], L[:n], Laux[:n] // one bounds check for the loops below
	lo, hi := x[0], x[0]
	sumW := weights[0]
	sumX := float32(sumW * x[0])
	for i := 1; i < n; i++ {
		if x[i] < lo {
			lo = x[i]
		}
		if x[i] > hi {
			hi = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if lo > 0 {
		lo = 0
	}
	if hi == lo {
		clear(L)
		return 0, -lo
	}
	iscale := float32(nmax) / (hi - lo)
	scale := 1 / iscale
	var bestError float32
	for i, v := range x {
		l := nearestInt(float32(iscale * (v - lo)))
		L[i] = uint8(max2(0, min2(nmax, l)))
		diff := float32(float32(scale*float32(L[i]))+lo) - v
		if useMad {
			diff = fabsf(diff)
		} else {
			diff = float32(diff * diff)
		}
		bestError += float32(weights[i] * diff)
	}
	if nstep < 1 {
		return scale, -lo
	}
	for is := 0; is <= nstep; is++ {
		iscale = float32(float32(rmin+float32(rdelta*float32(is)))+float32(nmax)) / (hi - lo)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			l := nearestInt(float32(iscale * (v - lo)))
			l = max2(0, min2(nmax, l))
			Laux[i] = uint8(l)
			fl := float32(l)
			wl := float32(weights[i] * fl)
			sumL += wl
			sumL2 += float32(wl * fl)
			sumXL += float32(wl * v)
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curError float32
			for i, v := range x {
				diff := float32(float32(thisScale*float32(Laux[i]))+thisMin) - v
				if useMad {
					diff = fabsf(diff)
				} else {
					diff = float32(diff * diff)
				}
				curError += float32(weights[i] * diff)
			}
			if curError < bestError {
				copy(L, Laux)
				bestError = curError
				scale = thisScale
				lo = thisMin
			}
		}
	}
	return scale, -lo
}

func quantQ2_K(x []float32, b []byte, s *quantScratch) {
	const q4scale = 15
	L := s.L[:]
	var maxScale, maxMin float32
	for j := 0; j < QK_K/16; j++ {
		xs := x[16*j : 16*j+16]
		w := s.weights[:16]
		for l, v := range xs {
			w[l] = fabsf(v)
		}
		s.scales[j], s.mins[j] = makeQkx2Quants(xs, w, 3, L[16*j:16*j+16], s.Laux[:16], -0.5, 0.1, 15, true)
		if s.scales[j] > maxScale {
			maxScale = s.scales[j]
		}
		if s.mins[j] > maxMin {
			maxMin = s.mins[j]
		}
	}
	scales, qs := b[0:16], b[16:80]
	if maxScale > 0 {
		iscale := q4scale / maxScale
		for j := range scales {
			scales[j] = uint8(nearestInt(float32(iscale * s.scales[j])))
		}
		putHalf(b[80:], maxScale/q4scale)
	} else {
		clear(scales)
		putHalf(b[80:], 0)
	}
	if maxMin > 0 {
		iscale := q4scale / maxMin
		for j := range scales {
			l := nearestInt(float32(iscale * s.mins[j]))
			scales[j] |= uint8(l << 4)
		}
		putHalf(b[82:], maxMin/q4scale)
	} else {
		putHalf(b[82:], 0)
	}
	dAll, dminAll := half(b[80:]), half(b[82:])
	for j := 0; j < QK_K/16; j++ {
		d := dAll * float32(scales[j]&0xF)
		if d == 0 {
			continue
		}
		dm := float32(dminAll * float32(scales[j]>>4))
		for ii := 0; ii < 16; ii++ {
			l := nearestInt((x[16*j+ii] + dm) / d)
			L[16*j+ii] = uint8(max2(0, min2(3, l)))
		}
	}
	for j := 0; j < QK_K; j += 128 {
		for l := 0; l < 32; l++ {
			qs[j/4+l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6
		}
	}
}

func quantQ3_K(x []float32, b []byte, s *quantScratch) {
	L := s.Li[:]
	var maxScale, amax float32
	for j := 0; j < QK_K/16; j++ {
		s.scales[j] = makeQ3Quants(x[16*j:16*j+16], 4, L[16*j:16*j+16])
		if sc := fabsf(s.scales[j]); sc > amax {
			amax, maxScale = sc, s.scales[j]
		}
	}
	hmask, qs, scales := b[0:32], b[32:96], b[96:108]
	clear(scales)
	if maxScale != 0 {
		iscale := -32 / maxScale
		for j := 0; j < QK_K/16; j++ {
			l8 := int8(nearestInt(float32(iscale * s.scales[j])))
			l8 = int8(max2(-32, min2(31, int(l8))) + 32)
			if j < 8 {
				scales[j] = uint8(l8) & 0xF
			} else {
				scales[j-8] |= (uint8(l8) & 0xF) << 4
			}
			l8 >>= 4
			scales[j%4+8] |= uint8(int(l8) << (2 * (j / 4)))
		}
		putHalf(b[108:], 1/iscale)
	} else {
		putHalf(b[108:], 0)
	}
	dAll := half(b[108:])
	for j := 0; j < QK_K/16; j++ {
		var sc int8
		if j < 8 {
			sc = int8(scales[j] & 0xF)
		} else {
			sc = int8(scales[j-8] >> 4)
		}
		sc = int8(int(uint8(sc)|((scales[8+j%4]>>(2*(j/4)))&3)<<4) - 32)
		d := dAll * float32(sc)
		if d == 0 {
			continue
		}
		for ii := 0; ii < 16; ii++ {
			l := nearestInt(x[16*j+ii] / d)
			L[16*j+ii] = int8(max2(-4, min2(3, l)) + 4)
		}
	}
	clear(hmask)
	m, hm := 0, uint8(1)
	for j := 0; j < QK_K; j++ {
		if L[j] > 3 {
			hmask[m] |= hm
			L[j] -= 4
		}
		if m++; m == QK_K/8 {
			m = 0
			hm <<= 1
		}
	}
	for j := 0; j < QK_K; j += 128 {
		for l := 0; l < 32; l++ {
			qs[j/4+l] = uint8(L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6)
		}
	}
}

// quantK4K5 is the shared body of quantize_row_q4_K_ref (nmax 15) and
// quantize_row_q5_K_ref (nmax 31): 8 sub-blocks of 32 with 6-bit scales
// and mins. It fills d, dmin and scales in b and the levels in s.L.
func quantK4K5(x []float32, b []byte, s *quantScratch, nmax int, rmin float32, nstep int) {
	L := s.L[:]
	var maxScale, maxMin float32
	for j := 0; j < QK_K/32; j++ {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := float32(math.Sqrt(float64(sumX2 / 32)))
		w := s.weights[:32]
		for l, v := range xs {
			w[l] = avX + fabsf(v)
		}
		s.scales[j], s.mins[j] = makeQkx2Quants(xs, w, nmax, L[32*j:32*j+32], s.Laux[:32], rmin, 0.1, nstep, false)
		if s.scales[j] > maxScale {
			maxScale = s.scales[j]
		}
		if s.mins[j] > maxMin {
			maxMin = s.mins[j]
		}
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	scales := b[4:16]
	for j := 0; j < QK_K/32; j++ {
		ls := min(63, uint8(nearestInt(float32(invScale*s.scales[j]))))
		lm := min(63, uint8(nearestInt(float32(invMin*s.mins[j]))))
		if j < 4 {
			scales[j] = ls
			scales[j+4] = lm
		} else {
			scales[j+4] = ls&0xF | (lm&0xF)<<4
			scales[j-4] |= (ls >> 4) << 6
			scales[j] |= (lm >> 4) << 6
		}
	}
	putHalf(b[0:], maxScale/63)
	putHalf(b[2:], maxMin/63)
	dAll, dminAll := half(b[0:]), half(b[2:])
	for j := 0; j < QK_K/32; j++ {
		sc, m := scaleMinK4(j, scales)
		d := dAll * float32(sc)
		if d == 0 {
			continue
		}
		dm := float32(dminAll * float32(m))
		for ii := 0; ii < 32; ii++ {
			l := nearestInt((x[32*j+ii] + dm) / d)
			L[32*j+ii] = uint8(max2(0, min2(nmax, l)))
		}
	}
}

func quantQ4_K(x []float32, b []byte, s *quantScratch) {
	quantK4K5(x, b, s, 15, -1, 20)
	q := b[16:144]
	for j := 0; j < QK_K; j += 64 {
		for l := 0; l < 32; l++ {
			q[l] = s.L[j+l] | s.L[j+l+32]<<4
		}
		q = q[32:]
	}
}

func quantQ5_K(x []float32, b []byte, s *quantScratch) {
	quantK4K5(x, b, s, 31, -0.5, 15)
	qh, ql := b[16:48], b[48:176]
	clear(qh)
	var m1, m2 uint8 = 1, 2
	for n := 0; n < QK_K; n += 64 {
		for j := 0; j < 32; j++ {
			l1, l2 := s.L[n+j], s.L[n+j+32]
			if l1 > 15 {
				l1 -= 16
				qh[j] |= m1
			}
			if l2 > 15 {
				l2 -= 16
				qh[j] |= m2
			}
			ql[j] = l1 | l2<<4
		}
		m1 <<= 2
		m2 <<= 2
		ql = ql[32:]
	}
}

func quantQ6_K(x []float32, b []byte, s *quantScratch) {
	L := s.Li[:]
	var maxScale, maxAbsScale float32
	for ib := 0; ib < QK_K/16; ib++ {
		scale := makeQxQuants(x[16*ib:16*ib+16], 32, L[16*ib:16*ib+16])
		s.scales[ib] = scale
		if a := fabsf(scale); a > maxAbsScale {
			maxAbsScale, maxScale = a, scale
		}
	}
	if maxAbsScale < groupMaxEps {
		clear(b)
		return
	}
	ql, qh, scales := b[0:128], b[128:192], b[192:208]
	iscale := -128 / maxScale
	putHalf(b[208:], 1/iscale)
	for ib := range scales {
		scales[ib] = uint8(int8(min2(127, nearestInt(float32(iscale*s.scales[ib])))))
	}
	dAll := half(b[208:])
	for j := 0; j < QK_K/16; j++ {
		d := dAll * float32(int8(scales[j]))
		if d == 0 {
			continue
		}
		for ii := 0; ii < 16; ii++ {
			l := nearestInt(x[16*j+ii] / d)
			L[16*j+ii] = int8(max2(-32, min2(31, l)) + 32)
		}
	}
	for j := 0; j < QK_K; j += 128 {
		for l := 0; l < 32; l++ {
			q1 := uint8(L[j+l]) & 0xF
			q2 := uint8(L[j+l+32]) & 0xF
			q3 := uint8(L[j+l+64]) & 0xF
			q4 := uint8(L[j+l+96]) & 0xF
			ql[l] = q1 | q3<<4
			ql[l+32] = q2 | q4<<4
			qh[l] = uint8(L[j+l]>>4 | (L[j+l+32]>>4)<<2 | (L[j+l+64]>>4)<<4 | (L[j+l+96]>>4)<<6)
		}
		ql = ql[64:]
		qh = qh[32:]
	}
}

func quantQ8_K(x []float32, b []byte, _ *quantScratch) {
	var max, amax float32
	for _, v := range x {
		if ax := fabsf(v); ax > amax {
			amax, max = ax, v
		}
	}
	le := binary.LittleEndian
	if amax == 0 {
		// ggml leaves bsums untouched here; this writes zeros, their
		// correct value.
		clear(b)
		return
	}
	iscale := -127 / max
	qs := b[4 : 4+QK_K]
	for j, v := range x {
		qs[j] = uint8(int8(min2(127, nearestInt(float32(iscale*v)))))
	}
	for j := 0; j < QK_K/16; j++ {
		sum := 0
		for ii := 0; ii < 16; ii++ {
			sum += int(int8(qs[16*j+ii]))
		}
		le.PutUint16(b[4+QK_K+2*j:], uint16(int16(sum)))
	}
	le.PutUint32(b, math.Float32bits(1/iscale))
}
