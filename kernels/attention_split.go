package kernels

// A decode step over a long cache with fewer key-value heads than threads
// (jamba-3b has one) would leave threads idle if a group of heads were one
// unit. attentionSplit spreads it in three phases, each over all threads,
// without changing any operation of an output:
//
//  1. scores, by (key-value head, block of attnSplitBlock keys): each score
//     is its own dot product, so where it is computed changes nothing;
//  2. weights, by head: the softmax of a row, as the other paths do it;
//  3. values, by (key-value head, strip of 64 columns): an output element
//     is one chain of fused multiply-adds over the keys in order, and the
//     chains of different columns are independent (the strips are whole
//     multiples of 8 columns, so a column is in the vector part or in the
//     tail exactly as in one call over all columns).
//
// So the bits are those of the one-query path, for any thread count.

// attnSplit selects the split decode step; benchmarks clear it to compare.
var attnSplit = true

// attnSplitKeys is the context from which a decode step is split this way
// (below it, three hand-offs between threads cost more than they gain).
const attnSplitKeys = 2048

// attnSplitBlock is the number of keys of one scores unit, and
// attnSplitSub the keys of its sub-blocks.
const (
	attnSplitBlock = 512
	attnSplitSub   = 64
)

// attnSplitCols is the number of output columns of one values unit.
const attnSplitCols = 64

const (
	phaseScores = 1 + iota
	phaseWeights
	phaseValues
)

// attentionSplit runs the decode step t (T = 1) in the three phases.
func attentionSplit(p *pool, t *attnTask, maxKeys int) {
	n := t.past + 1
	t.ldS = (max(n, maxKeys) + 3) &^ 3
	if need := t.nH * t.ldS; cap(p.attnS) < need {
		p.attnS = make([]float32, need)
	}
	t.S = p.attnS[:t.nH*t.ldS]
	nKV := t.nH / t.group
	work := 2 * t.nH * t.hd * n
	t.phase = phaseScores
	t.nchunks = (n + attnSplitBlock - 1) / attnSplitBlock
	p.run(t, t.nchunks, work)
	t.n.Store(0)
	t.phase = phaseWeights
	t.nchunks = t.nH
	p.run(t, t.nchunks, 4*t.nH*n)
	t.n.Store(0)
	t.phase = phaseValues
	t.nchunks = min(p.threads, nKV*((t.hd+attnSplitCols-1)/attnSplitCols))
	p.run(t, t.nchunks, work)
}

func (a *attnTask) splitScores() {
	hd, nKV, n := a.hd, a.nH/a.group, a.past+1
	kvd := nKV * hd
	kc := hd &^ 7
	step := keyHeads()
	for {
		b := a.next(a.nchunks)
		if b < 0 {
			return
		}
		k0 := b * attnSplitBlock
		nk := min(attnSplitBlock, n-k0)
		// Sub-blocks of whole cache rows (every key-value head's keys in
		// turn), so that the thread reads its rows of the cache from
		// memory in order.
		for s0 := k0; s0 < k0+nk; s0 += attnSplitSub {
			ns := min(attnSplitSub, k0+nk-s0)
			for g := range nKV {
				off := s0*kvd + g*hd
				for r := 0; r < a.group; r += step {
					h := g*a.group + r
					y := a.S[h*a.ldS+s0:]
					if useAVX2 && kc > 0 {
						keyScores(y, a.ldS, a.K, a.K16, off, kvd, ns, a.q[h*hd:], hd, min(step, a.group-r), kc)
						continue
					}
					for i := r; i < min(r+step, a.group); i++ {
						xi, yi := a.q[(h+i-r)*hd:(h+i-r+1)*hd], y[(i-r)*a.ldS:(i-r)*a.ldS+ns]
						if a.K16 != nil {
							matVecStridedBF16(yi, a.K16[off:], kvd, xi)
						} else {
							matVecStrided(yi, a.K[off:], kvd, xi)
						}
					}
				}
			}
		}
		if useAVX2 && kc > 0 && kc < hd {
			// The dot order's tail, as matVecStrided adds it.
			for h := range a.nH {
				x := a.q[h*hd : (h+1)*hd]
				for j := k0; j < k0+nk; j++ {
					a.S[h*a.ldS+j] = keyTail(a.K, a.K16, j*kvd+h/a.group*hd, x, kc) + a.S[h*a.ldS+j]
				}
			}
		}
	}
}

func (a *attnTask) splitWeights() {
	n := a.past + 1
	for {
		h := a.next(a.nchunks)
		if h < 0 {
			return
		}
		sr := a.S[h*a.ldS : h*a.ldS+n]
		scale(sr, a.scale)
		scale(sr, 1/expSubSum(sr, maxOf(sr)))
	}
}

func (a *attnTask) splitValues() {
	hd, kvd, n := a.hd, a.nH/a.group*a.hd, a.past+1
	ns := (hd + attnSplitCols - 1) / attnSplitCols
	units := a.nH / a.group * ns
	for {
		i := a.next(a.nchunks)
		if i < 0 {
			return
		}
		// Chunk i takes a run of consecutive strips, so that the thread
		// reads one piece of each cache row.
		u0, u1 := i*units/a.nchunks, (i+1)*units/a.nchunks
		for u := u0; u < u1; u++ {
			g, st := u/ns, u%ns
			c0, c1 := st*attnSplitCols, min((st+1)*attnSplitCols, hd)
			for h := g * a.group; h < (g+1)*a.group; h++ {
				clear(a.out[h*hd+c0 : h*hd+c1])
			}
		}
		// Key blocks outermost, so that the strips of the block's values
		// stay in the cache while every head of the group runs over
		// them; between blocks the partial outputs go through memory,
		// which rounds nothing.
		for k0 := 0; k0 < n; k0 += attnKeyBlock {
			nk := min(attnKeyBlock, n-k0)
			for u := u0; u < u1; u++ {
				g, st := u/ns, u%ns
				c0, c1 := st*attnSplitCols, min((st+1)*attnSplitCols, hd)
				a.valuesStrip(g, c0, c1, k0, nk, kvd)
			}
		}
	}
}

// valuesStrip adds the weighted values of keys k0 to k0+nk, columns c0 to
// c1 of key-value head g, to the outputs of the group's heads.
func (a *attnTask) valuesStrip(g, c0, c1, k0, nk, kvd int) {
	hd, C := a.hd, c1-c0
	h0 := g * a.group
	voff := k0*kvd + g*hd + c0
	r := 0
	if useAVX512 && C == 64 {
		for ; r+4 <= a.group; r += 4 {
			o, p := a.out[(h0+r)*hd+c0:], a.S[(h0+r)*a.ldS+k0:]
			if a.V16 != nil {
				weightedSum4x64BF16(o, hd, a.V16[voff:], kvd, p, a.ldS, nk)
			} else {
				weightedSum4x64(o, hd, a.V[voff:], kvd, p, a.ldS, nk)
			}
		}
	}
	for ; r+3 <= a.group; r += 3 {
		o, p := a.out[(h0+r)*hd+c0:], a.S[(h0+r)*a.ldS+k0:]
		if a.V16 != nil {
			weightedSum3BF16(o, hd, C, a.V16[voff:], kvd, p, a.ldS, nk)
		} else {
			weightedSum3(o, hd, C, a.V[voff:], kvd, p, a.ldS, nk)
		}
	}
	for ; r < a.group; r++ {
		o, p := a.out[(h0+r)*hd+c0:(h0+r)*hd+c1], a.S[(h0+r)*a.ldS+k0:(h0+r)*a.ldS+k0+nk]
		if a.V16 != nil {
			weightedSumBF16(o, a.V16[voff:], kvd, p)
		} else {
			weightedSum(o, a.V[voff:], kvd, p)
		}
	}
}
