package kernels

// Tiled attention. A work unit is one group of heads that share their keys
// and values (g) and a tile of consecutive queries: its rows are the
// (query, head) pairs of the tile, R = queries × group of them. The unit
//
//  1. computes the scores of every row against the keys, attnKeyBlock keys
//     at a time: the block's keys are packed once (as MatMul packs weight
//     rows) and the gemm tiles of 3 rows × 4 keys run over them, so a key
//     is read from memory once per tile instead of once per (query, head);
//  2. turns each row's scores into weights exactly as the one-query path
//     does (scale, max, exp and sum, scale by the inverse sum);
//  3. accumulates the values, attnKeyBlock keys at a time: every row adds
//     its block's weighted values to its output (weightedSum, which loads
//     and stores the output around the block), while the block's values
//     stay in the L2 cache.
//
// Every score is one dot product in the dot order (the gemm tiles and the
// matrix-vector kernel give the same bits, see KERNELS.md), the softmax is
// the same operations on the same numbers, and the values are added to an
// output element by the same fused multiply-adds in key order, only split
// at block boundaries where the partial output goes through memory, which
// rounds nothing. So each output has the bits of the one-query path,
// whatever the tile, the block, the chunking or the thread count: decoding
// (a tile of one query) and prefill share one accumulation order.

// attnTiled selects the tiled path; tests and benchmarks clear it to run
// the one-(query, head)-at-a-time path.
var attnTiled = true

// attnKeyBlock is how many keys (and values) a unit packs or streams at a
// time, a multiple of 4 (the gemm tiles): 256 keys of 128 floats are 128 KiB,
// which stay in the L2 cache while every row of the tile runs over them.
const attnKeyBlock = 256

// attnScoreBudget bounds the scores a tile keeps (floats, 4 MiB): the
// number of queries per tile is chosen so that queries × group × keys
// stays within it.
const attnScoreBudget = 1 << 20

// attnMaxQueries is the largest number of queries in a tile.
const attnMaxQueries = 16

func (a *attnTask) doTiled(thread int) {
	s := thePool.scratch[thread]
	hd, qd, kvd := a.hd, a.nH*a.hd, a.nH/a.group*a.hd
	nKV := a.nH / a.group
	kc := hd &^ 7
	gemm := useAVX2 && kc > 0
	for {
		u := a.next(a.nchunks)
		if u < 0 {
			return
		}
		g := u % nKV
		t0 := u / nKV * a.qt
		t1 := min(t0+a.qt, a.T)
		R := (t1 - t0) * a.group
		nmax := a.past + t1 // the keys the tile's last query sees
		ldS := (nmax + 3) &^ 3
		S := s.attnS[:R*ldS]
		X := s.attnX[:R*hd]
		gw := a.group * hd
		for t := t0; t < t1; t++ {
			copy(X[(t-t0)*gw:(t-t0+1)*gw], a.q[t*qd+g*gw:t*qd+(g+1)*gw])
		}
		// rowKeys is how many keys row r sees.
		rowKeys := func(r int) int { return a.past + t0 + r/a.group + 1 }

		// 1. Scores.
		for k0 := 0; k0 < nmax; k0 += attnKeyBlock {
			nk := min(attnKeyBlock, nmax-k0)
			if !gemm {
				for r := range R {
					e := min(k0+nk, rowKeys(r))
					if e <= k0 {
						continue
					}
					x := X[r*hd : (r+1)*hd]
					y := S[r*ldS+k0 : r*ldS+e]
					if a.K16 != nil {
						matVecStridedBF16(y, a.K16[k0*kvd+g*hd:], kvd, x)
					} else {
						matVecStrided(y, a.K[k0*kvd+g*hd:], kvd, x)
					}
				}
				continue
			}
			if t1-t0 == 1 {
				// One query (a decode step): packing would cost as
				// much as the products; the few-token kernels read
				// each key in place once for 3 or 4 heads (or fewer),
				// in the same dot order.
				step := keyHeads()
				for r := 0; r < R; r += step {
					keyScores(S[r*ldS+k0:], ldS, a.K, a.K16, k0*kvd+g*hd, kvd, nk, X[r*hd:], hd, min(step, R-r), kc)
				}
			} else {
				quads := (nk + 3) / 4
				for i := range quads {
					j := k0 + 4*i
					dst := s.attnP[i*4*kc : (i+1)*4*kc]
					if j+4 <= nmax {
						packKeys4(dst, a.K, a.K16, j*kvd+g*hd, kvd, kc)
					} else {
						packKeysPartial(dst, a.K, a.K16, j*kvd+g*hd, kvd, kc, nmax-j)
					}
				}
				// Rows past a row's last key are computed too (the keys
				// exist: they are later queries' of the same call) and not
				// used.
				for r := 0; r < R; r += 3 {
					gemmTile(S[r*ldS+k0:], ldS, s.attnAcc, X[r*hd:], hd, s.attnP, min(3, R-r), quads, kc, gemmFinal)
				}
			}
			if kc < hd {
				// The dot order's tail, as matVecStrided adds it.
				for r := range R {
					x := X[r*hd : (r+1)*hd]
					for j := k0; j < k0+nk; j++ {
						S[r*ldS+j] = keyTail(a.K, a.K16, j*kvd+g*hd, x, kc) + S[r*ldS+j]
					}
				}
			}
		}

		// 2. Weights.
		O := s.attnO[:R*hd]
		clear(O)
		for r := range R {
			sr := S[r*ldS : r*ldS+rowKeys(r)]
			scale(sr, a.scale)
			scale(sr, 1/expSubSum(sr, maxOf(sr)))
		}

		// 3. Values, into O (rows hd apart), four (AVX-512, strips of 64
		// columns) or three rows at a time over the keys they all see,
		// then each row over its own last ones.
		for k0 := 0; k0 < nmax; k0 += attnKeyBlock {
			kb := min(k0+attnKeyBlock, nmax)
			voff := k0*kvd + g*hd
			r := 0
			for ; useAVX512 && hd%64 == 0 && r+4 <= R; r += 4 {
				if common := min(kb, rowKeys(r)); common > k0 {
					for c := 0; c < hd; c += 64 {
						if a.V16 != nil {
							weightedSum4x64BF16(O[r*hd+c:], hd, a.V16[voff+c:], kvd, S[r*ldS+k0:], ldS, common-k0)
						} else {
							weightedSum4x64(O[r*hd+c:], hd, a.V[voff+c:], kvd, S[r*ldS+k0:], ldS, common-k0)
						}
					}
				}
				for i := r; i < r+4; i++ {
					common := min(kb, rowKeys(r))
					a.valueRange(O[i*hd:(i+1)*hd], S[i*ldS:], max(k0, common), min(kb, rowKeys(i)), kvd, g)
				}
			}
			for ; r+3 <= R; r += 3 {
				common := min(kb, rowKeys(r))
				if common > k0 {
					if a.V16 != nil {
						weightedSum3BF16(O[r*hd:], hd, hd, a.V16[voff:], kvd, S[r*ldS+k0:], ldS, common-k0)
					} else {
						weightedSum3(O[r*hd:], hd, hd, a.V[voff:], kvd, S[r*ldS+k0:], ldS, common-k0)
					}
				}
				for i := r; i < r+3; i++ {
					a.valueRange(O[i*hd:(i+1)*hd], S[i*ldS:], max(k0, common), min(kb, rowKeys(i)), kvd, g)
				}
			}
			for ; r < R; r++ {
				a.valueRange(O[r*hd:(r+1)*hd], S[r*ldS:], k0, min(kb, rowKeys(r)), kvd, g)
			}
		}
		for r := range R {
			t, h := t0+r/a.group, g*a.group+r%a.group
			copy(a.out[t*qd+h*hd:t*qd+(h+1)*hd], O[r*hd:(r+1)*hd])
		}
	}
}

// valueRange adds the values of keys j0..j1 of group g, weighted by
// p[j0:j1], to o.
func (a *attnTask) valueRange(o, p []float32, j0, j1, kvd, g int) {
	if j1 <= j0 {
		return
	}
	off := j0*kvd + g*a.hd
	if a.V16 != nil {
		weightedSumBF16(o, a.V16[off:], kvd, p[j0:j1])
	} else {
		weightedSum(o, a.V[off:], kvd, p[j0:j1])
	}
}

// packKeysPartial is packKeys4 for the rows < 4 keys that exist, the
// others packed as zeros (see packPanel).
func packKeysPartial(dst, K []float32, K16 []uint16, off, ld, kc, rows int) {
	for k := 0; k < kc; k += 8 {
		for j := range 4 {
			out := dst[4*k+8*j : 4*k+8*j+8]
			if j >= rows {
				clear(out)
				continue
			}
			b := off + j*ld + k
			for l := range out {
				if K16 != nil {
					out[l] = BF16ToF32(K16[b+l])
				} else {
					out[l] = K[b+l]
				}
			}
		}
	}
}

// keyTail is the dot order's tail of the key at off (columns n..len(x)).
func keyTail(K []float32, K16 []uint16, off int, x []float32, n int) float32 {
	C := len(x)
	row := Matrix{Rows: 1, Cols: C, DType: F32}
	if K16 != nil {
		row.DType, row.BF16 = BF16, K16[off:off+C]
	} else {
		row.F32 = K[off : off+C]
	}
	return dotTail(&row, 0, x, n)
}
