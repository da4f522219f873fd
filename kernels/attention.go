package kernels

import "math"

// Attention computes causal grouped-query attention without positional
// encoding, as Jamba's attention layers do, for T new queries of one
// sequence whose keys and values hold past earlier tokens followed by the
// T new ones:
//
//	out[t,h] = Σ_{j ≤ past+t} softmax_j(scale · q[t,h]·K[j,g]) · V[j,g],  g = h/(nH/nKV)
//
// q and out are [T][nH·hd], K and V [past+T][nKV·hd]. Tiles of queries ×
// a key-value head's group of query heads are shared among the threads
// (attention_tiled.go); every (query, head) output is computed in one
// order whatever T, the tile, the other queries and the thread count, so a
// query's output has the same bits computed alone or with others (chunked
// prefill, decoding, batched serving). maxKeys sizes each thread's buffers
// on first use (past+T at least; the cache capacity keeps decode steps
// from regrowing them).
func Attention(out, q, K, V []float32, T, past, nH, nKV, hd int, scale float32, maxKeys int) {
	if len(K) < (past+T)*nKV*hd || len(V) < (past+T)*nKV*hd {
		panic("kernels: Attention: keys or values too short")
	}
	attention(&attnTask{K: K, V: V}, out, q, T, past, nH, nKV, hd, scale, maxKeys)
}

// AttentionBF16 is Attention over keys and values stored in bfloat16, widened
// exactly as they are read (half the memory and half the reads of float32).
func AttentionBF16(out, q []float32, K, V []uint16, T, past, nH, nKV, hd int, scale float32, maxKeys int) {
	if len(K) < (past+T)*nKV*hd || len(V) < (past+T)*nKV*hd {
		panic("kernels: AttentionBF16: keys or values too short")
	}
	attention(&attnTask{K16: K, V16: V}, out, q, T, past, nH, nKV, hd, scale, maxKeys)
}

// attention runs Attention with the keys and values of kv.
func attention(kv *attnTask, out, q []float32, T, past, nH, nKV, hd int, scale float32, maxKeys int) {
	if T == 0 || nH == 0 {
		return
	}
	qd := nH * hd
	n := past + T
	if len(q) < T*qd || len(out) < T*qd || nKV == 0 || nH%nKV != 0 {
		panic("kernels: Attention: operands too short or heads not grouped evenly")
	}
	p := lockPool()
	defer p.mu.Unlock()
	for _, s := range p.scratch[:p.threads] {
		if need := max(n, maxKeys); cap(s.scores) < need {
			s.scores = make([]float32, need)
		}
	}
	t := &p.attn
	*t = attnTask{out: out, q: q, K: kv.K, V: kv.V, K16: kv.K16, V16: kv.V16, T: T, past: past, nH: nH, group: nH / nKV, hd: hd, scale: scale}
	if attnTiled && attnSplit && T == 1 && nKV < p.threads && n >= attnSplitKeys {
		attentionSplit(p, t, maxKeys)
		*t = attnTask{}
		return
	}
	if attnTiled {
		t.tiled = true
		// As many queries per tile as keep the tile's scores within
		// attnScoreBudget (at least one, at most attnMaxQueries): the
		// tile size changes no bit, only how often the keys are read.
		ldS := (n + 3) &^ 3
		t.qt = min(attnMaxQueries, T, max(1, attnScoreBudget/(t.group*ldS)))
		needS := max(t.qt*t.group*ldS, t.group*((max(n, maxKeys)+3)&^3))
		for _, s := range p.scratch[:p.threads] {
			if cap(s.attnS) < needS {
				s.attnS = make([]float32, needS)
			}
			if need := t.qt * t.group * hd; cap(s.attnX) < need {
				s.attnX = make([]float32, need)
				s.attnO = make([]float32, need)
			}
			if need := attnKeyBlock * (hd &^ 7); cap(s.attnP) < need {
				s.attnP = make([]float32, need)
			}
			if need := attnKeyBlock / 4 * 3 * 32; cap(s.attnAcc) < need {
				s.attnAcc = make([]float32, need)
			}
		}
		t.chunk = 1
		t.nchunks = nKV * ((T + t.qt - 1) / t.qt)
		p.run(t, t.nchunks, 4*nH*hd*(T*past+T*(T+1)/2))
		*t = attnTask{}
		return
	}
	units := T * nH
	t.chunk = max(1, units/(16*p.threads))
	t.nchunks = (units + t.chunk - 1) / t.chunk
	// Work: a dot product and an axpy of hd per visible key and head.
	p.run(t, t.nchunks, 4*nH*hd*(T*past+T*(T+1)/2))
	*t = attnTask{}
}

// attnTask is Attention split by (query, head) pairs.
type attnTask struct {
	taskCounter
	out, q, K, V       []float32
	K16, V16           []uint16 // bfloat16 keys and values instead of K, V
	T, past, nH, group int
	hd                 int
	scale              float32
	chunk, nchunks     int
	tiled              bool // doTiled
	qt                 int  // doTiled: queries per tile
	phase              int  // attentionSplit's phase, 0 otherwise
	S                  []float32
	ldS                int
}

func (a *attnTask) do(thread int) {
	switch a.phase {
	case phaseScores:
		a.splitScores()
		return
	case phaseWeights:
		a.splitWeights()
		return
	case phaseValues:
		a.splitValues()
		return
	}
	if a.tiled {
		a.doTiled(thread)
		return
	}
	sc := thePool.scratch[thread].scores
	hd, qd, kvd := a.hd, a.nH*a.hd, a.nH/a.group*a.hd
	for {
		i := a.next(a.nchunks)
		if i < 0 {
			return
		}
		for u := i * a.chunk; u < min((i+1)*a.chunk, a.T*a.nH); u++ {
			t, h := u/a.nH, u%a.nH
			g := h / a.group
			n := a.past + t + 1
			qv := a.q[t*qd+h*hd : t*qd+(h+1)*hd]
			s := sc[:n]
			attnProbs(s, a.K, a.K16, g*hd, kvd, qv, a.scale)
			o := a.out[t*qd+h*hd : t*qd+(h+1)*hd]
			clear(o)
			if a.V16 != nil {
				weightedSumBF16(o, a.V16[g*hd:], kvd, s)
			} else {
				weightedSum(o, a.V[g*hd:], kvd, s)
			}
		}
	}
}

// attnProbs sets s[j] to the attention weight of query qv on key j, for the
// first len(s) keys (rows of K or K16 with stride kvd, from column off):
// the softmax of the scaled dot products. Attention and AttentionWeights
// share it, so the weights reported are the very ones the forward pass uses.
func attnProbs(s, K []float32, K16 []uint16, off, kvd int, qv []float32, sc float32) {
	if K16 != nil {
		matVecStridedBF16(s, K16[off:], kvd, qv)
	} else {
		matVecStrided(s, K[off:], kvd, qv)
	}
	scale(s, sc)
	scale(s, 1/expSubSum(s, maxOf(s)))
}

// AttentionWeights writes the attention weights that Attention computes for
// the same arguments into w, [nH][T][past+T]: w[h][t][j] is the weight of
// query t (position past+t) of head h on key j, zero for j > past+t (the
// causal mask). It runs on the calling goroutine; it is for inspection,
// not for the forward pass. Exactly one of K and K16 is non-nil.
func AttentionWeights(w, q, K []float32, K16 []uint16, T, past, nH, nKV, hd int, sc float32) {
	n := past + T
	qd, kvd := nH*hd, nKV*hd
	if len(w) < nH*T*n || len(q) < T*qd || nKV == 0 || nH%nKV != 0 ||
		(K16 == nil && len(K) < n*kvd) || (K16 != nil && len(K16) < n*kvd) {
		panic("kernels: AttentionWeights: operands too short or heads not grouped evenly")
	}
	group := nH / nKV
	for h := range nH {
		for t := range T {
			row := w[(h*T+t)*n : (h*T+t+1)*n]
			clear(row[past+t+1:])
			attnProbs(row[:past+t+1], K, K16, h/group*hd, kvd, q[t*qd+h*hd:t*qd+(h+1)*hd], sc)
		}
	}
}

// AttentionGeneric is the plain reference of Attention: float64 softmax,
// one query and head at a time.
func AttentionGeneric(out, q, K, V []float32, T, past, nH, nKV, hd int, scale float32) {
	qd, kvd, group := nH*hd, nKV*hd, nH/nKV
	for t := range T {
		n := past + t + 1
		for h := range nH {
			g := h / group
			qv := q[t*qd+h*hd : t*qd+(h+1)*hd]
			s := make([]float64, n)
			mx := -1e300
			for j := range s {
				k := j*kvd + g*hd
				s[j] = float64(DotGeneric(qv, K[k:k+hd])) * float64(scale)
				mx = max(mx, s[j])
			}
			var sum float64
			for j := range s {
				s[j] = math.Exp(s[j] - mx)
				sum += s[j]
			}
			o := out[t*qd+h*hd : t*qd+(h+1)*hd]
			acc := make([]float64, hd)
			for j, w := range s {
				k := j*kvd + g*hd
				for d := range hd {
					acc[d] += w / sum * float64(V[k+d])
				}
			}
			for d := range hd {
				o[d] = float32(acc[d])
			}
		}
	}
}
