package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/jamba-go/jamba/model"
)

// SeqInput is one sequence's share of a Forward call (see model.SeqInput).
type SeqInput struct {
	Tokens    []int
	Cache     *Seq
	AllLogits bool // logits of every new token, else of the last only
	NoLogits  bool // no logits (a prompt chunk that is not the last)
}

// workspace is the device scratch of forward passes, grown to the largest
// call and reused, so that a steady decode loop allocates nothing.
type workspace struct {
	rows, headRows, metaBytes int64

	h, xn, mix, big, att, xc, dbc, dtn, draw, y, act, eo, rlog, idx, wt, ein, headIn Buf
	xns                                                                              Buf // xn split into bf16 halves (rmsNorm's xs)
	logits, ids, meta, moeList, part                                                 Buf
	gu2, act2, eo2                                                                   Buf // all-experts path (moeDense)
	mpart                                                                            Buf // column splits of the MoE's mma_bf16
	rowTab                                                                           Buf // sampleEach's parameters, sampleRowBytes a row
	sc                                                                               scratch
	scIn                                                                             scratch // in_proj's product, whose halves the conv and the scan read
	// xs: w.xns.Ptr while it holds the split of xn, else 0; mixP, mixD:
	// where the mixer's or feed-forward's output is (w.mix, or the two
	// halves of a stacked split product, mixD floats apart; 0: one).
	xs, mixP uint64
	mixD     int64
	// fuse: this call's norms and kernels split and add for the stacked
	// products (Forward's fuse).
	fuse bool

	host                []byte
	total, nseq, nhead  int
	maxPos              int // the largest key count of the call's rows
	headOff             []int
	offTok, offSeq      int64
	offPos, offStart    int64
	offHead, offPtr     int64
	hostLogits          []float32
	logitsValid         bool
	hostIDs             []int32
	hostRows            []byte // sampleEach's table on the host
	ids32               []int
	moeIdx              []int32
	moeWt               []float32
	moeRows             []int32
	moeW                []float32
	moeCount, moeOffset []int
}

func (w *workspace) bufs() []*Buf {
	return []*Buf{&w.h, &w.xn, &w.xns, &w.mix, &w.big, &w.att, &w.xc, &w.dbc, &w.dtn, &w.draw, &w.y, &w.act, &w.eo,
		&w.rlog, &w.idx, &w.wt, &w.ein, &w.headIn, &w.logits, &w.ids, &w.meta, &w.moeList, &w.part, &w.sc.hi, &w.sc.y2, &w.scIn.hi, &w.scIn.y2, &w.gu2, &w.act2, &w.eo2, &w.mpart, &w.rowTab}
}

func (w *workspace) free(dev *Device) {
	for _, b := range w.bufs() {
		dev.Free(b)
	}
	w.rows, w.headRows, w.metaBytes = 0, 0, 0
}

// grow makes room for rows batch rows and head rows of logits.
func (m *Model) grow(rows, head int) error {
	w, c, dev := &m.ws, m.Config, m.Dev
	rows = max(rows, gemvMax)
	head = max(head, gemvMax)
	if int64(rows) <= w.rows && int64(head) <= w.headRows {
		return nil
	}
	rows = max(rows, int(w.rows))
	head = max(head, int(w.headRows))
	meta := w.metaBytes
	w.free(dev)
	w.metaBytes = meta
	R := int64(rows)
	H, I, E, K := int64(c.HiddenSize), int64(c.IntermediateSize), int64(c.NumExperts), int64(c.NumExpertsPerTok)
	qd, kvd := int64(c.NumAttentionHeads*c.HeadDimension()), int64(c.NumKeyValueHeads*c.HeadDimension())
	Di, P, Rk := int64(c.InnerSize()), int64(c.MambaDtRank+2*c.MambaDState), int64(c.MambaDtRank)
	big := R * max(qd+2*kvd, 2*Di, 2*I)
	big = max(big, moeMax*K*2*I)
	sizes := []struct {
		b *Buf
		n int64
	}{
		{&w.h, R * H}, {&w.xn, R * H}, {&w.xns, R * H}, {&w.mix, R * H}, {&w.big, big}, {&w.att, R * qd},
		{&w.xc, R * Di}, {&w.dbc, R * P}, {&w.dtn, R * Rk}, {&w.draw, R * Di}, {&w.y, R * Di},
		{&w.act, max(R*I, moeMax*K*I)}, {&w.eo, max(R*H, moeMax*K*H)}, {&w.rlog, R * E},
		{&w.idx, R * K}, {&w.wt, R * K}, {&w.ein, R * H}, {&w.headIn, int64(head) * H},
		{&w.logits, int64(head) * int64(c.VocabSize)}, {&w.ids, int64(head)}, {&w.moeList, 4*max(R, moeMax)*K + 4*E + 8},
	}
	for _, s := range sizes {
		b, err := dev.Alloc(4 * s.n)
		if err != nil {
			w.free(dev)
			return err
		}
		*s.b = b
	}
	w.rows, w.headRows = R, int64(head)
	return nil
}

// Forward runs the model over a batch of independent sequences, each
// continuing its own cache, with every weight read once for the batch.
func (m *Model) Forward(seqs []SeqInput) error {
	c, w, dev := m.Config, &m.ws, m.Dev
	if dev.enter() {
		defer dev.leave()
	}
	H, V := c.HiddenSize, c.VocabSize
	w.logitsValid = false
	total, nhead := 0, 0
	w.headOff = w.headOff[:0]
	for i := range seqs {
		s := &seqs[i]
		if len(s.Tokens) == 0 {
			return fmt.Errorf("cuda: sequence %d of the batch has no tokens", i)
		}
		if s.Cache == nil || s.Cache.m != m {
			return fmt.Errorf("cuda: sequence %d has no cache of this model", i)
		}
		if s.Cache.Len+len(s.Tokens) > s.Cache.Cap {
			return fmt.Errorf("cuda: sequence %d: %d tokens past %d exceed the cache capacity %d", i, len(s.Tokens), s.Cache.Len, s.Cache.Cap)
		}
		for _, id := range s.Tokens {
			if id < 0 || id >= V {
				return fmt.Errorf("cuda: sequence %d: %w: %d not in [0, %d)", i, model.ErrTokenRange, id, V)
			}
		}
		w.headOff = append(w.headOff, nhead)
		switch {
		case s.NoLogits:
		case s.AllLogits:
			nhead += len(s.Tokens)
		default:
			nhead++
		}
		total += len(s.Tokens)
	}
	w.headOff = append(w.headOff, nhead)
	if err := m.grow(total, nhead); err != nil {
		return err
	}
	w.total, w.nseq, w.nhead = total, len(seqs), nhead
	if err := m.packMeta(seqs); err != nil {
		return err
	}
	if m.hold != nil {
		if err := m.hold(); err != nil {
			return err
		}
	}
	meta := w.meta.Ptr
	tok, rseq, rpos, sstart := meta+uint64(w.offTok), meta+uint64(w.offSeq), meta+uint64(w.offPos), meta+uint64(w.offStart)
	var err error
	run := func(e error) {
		if err == nil {
			err = e
		}
	}
	m.mark("embed")
	if m.embed.DType == BF16 {
		run(dev.launch("embed_bf16", [2]int{total}, 256, w.h.Ptr, m.embed.Ptr, tok, ia(H)))
	} else {
		run(dev.launch("embed_f32", [2]int{total}, 256, w.h.Ptr, m.embed.Ptr, tok, ia(H)))
	}
	delta, dhalf := uint64(0), int64(0)
	// The norms write xn split too where the products after them take the
	// stacked split cuBLAS path (their split kernels then do not run), and
	// those products' results are added by the next norm (no add_halves).
	fuse := dev.fuse && total > dev.gemvRows && total <= stackMax
	w.fuse = fuse
	for li := range m.layers {
		l := &m.layers[li]
		m.mark("norm")
		w.xs = 0
		if fuse {
			w.xs = w.xns.Ptr
		}
		run(dev.rmsNorm(w.xn.Ptr, w.h.Ptr, delta, dhalf, l.inNorm.Ptr, total, H, m.eps, w.xs))
		w.mixP, w.mixD = w.mix.Ptr, 0
		if l.mixer == model.Attention {
			run(m.attention(l, tok, rseq, rpos))
		} else {
			run(m.mamba(l, rseq, rpos, sstart))
		}
		m.mark("norm")
		if w.xs = 0; fuse && l.ffn == model.Dense {
			w.xs = w.xns.Ptr
		}
		run(dev.rmsNorm(w.xn.Ptr, w.h.Ptr, w.mixP, w.mixD, l.ffNorm.Ptr, total, H, m.eps, w.xs))
		w.mixP, w.mixD = w.mix.Ptr, 0
		if l.ffn == model.Dense {
			m.mark("mlp")
			run(m.mlp(l))
		} else {
			run(m.moe(l))
		}
		delta, dhalf = w.mixP, w.mixD
		if err != nil {
			return fmt.Errorf("layer %d: %w", li, err)
		}
	}
	m.mark("head")
	run(dev.rmsNorm(w.xn.Ptr, w.h.Ptr, delta, dhalf, m.finalNorm.Ptr, total, H, m.eps, 0))
	if nhead > 0 {
		run(dev.launch("gather_rows", [2]int{blocks(int64(nhead)*int64(H), 256)}, 256, w.headIn.Ptr, w.xn.Ptr, meta+uint64(w.offHead), ia(H), la(int64(nhead))))
		run(dev.MatMul(w.logits.Ptr, w.headIn.Ptr, nhead, &m.head, &w.sc))
	}
	if err != nil {
		return err
	}
	for i := range seqs {
		seqs[i].Cache.Len += len(seqs[i].Tokens)
	}
	return nil
}

// packMeta uploads the call's tokens, row and sequence tables and the
// cache pointers of every layer.
func (m *Model) packMeta(seqs []SeqInput) error {
	w := &m.ws
	nseq := len(seqs)
	i32 := int64(w.total)*3 + int64(nseq) + 1 + int64(w.nhead)
	w.offTok = 0
	w.offSeq = 4 * int64(w.total)
	w.offPos = 8 * int64(w.total)
	w.offStart = 12 * int64(w.total)
	w.offHead = w.offStart + 4*int64(nseq+1)
	w.offPtr = (4*i32 + 7) &^ 7
	size := w.offPtr + 8*int64(nseq)*int64(2*m.nAttn+2*m.nMamba)
	if int64(cap(w.host)) < size {
		w.host = make([]byte, size)
	}
	b := w.host[:size]
	put := func(off int64, v int) { le.PutUint32(b[off:], uint32(int32(v))) }
	row, head := 0, 0
	w.maxPos = 0
	for s := range seqs {
		w.maxPos = max(w.maxPos, seqs[s].Cache.Len+len(seqs[s].Tokens))
		in := &seqs[s]
		put(w.offStart+4*int64(s), row)
		for t, id := range in.Tokens {
			put(w.offTok+4*int64(row), id)
			put(w.offSeq+4*int64(row), s)
			put(w.offPos+4*int64(row), in.Cache.Len+t)
			if !in.NoLogits && (in.AllLogits || t == len(in.Tokens)-1) {
				put(w.offHead+4*int64(head), row)
				head++
			}
			row++
		}
	}
	put(w.offStart+4*int64(nseq), row)
	p := w.offPtr
	table := func(get func(*Seq) uint64) {
		for s := range seqs {
			le.PutUint64(b[p:], get(seqs[s].Cache))
			p += 8
		}
	}
	for a := 0; a < m.nAttn; a++ {
		table(func(s *Seq) uint64 { return s.k[a].Ptr })
		table(func(s *Seq) uint64 { return s.v[a].Ptr })
	}
	for j := 0; j < m.nMamba; j++ {
		table(func(s *Seq) uint64 { return s.conv[j].Ptr })
		table(func(s *Seq) uint64 { return s.ssm[j].Ptr })
	}
	if size > w.meta.Bytes {
		m.Dev.Free(&w.meta)
		var err error
		if w.meta, err = m.Dev.Alloc(max(size, 4096)); err != nil {
			return err
		}
	}
	return m.Dev.Upload(w.meta, 0, unsafe.Pointer(&b[0]), size)
}

// ptrs returns the device addresses of a layer's two pointer tables.
func (m *Model) ptrs(l *layer) (uint64, uint64) {
	w := &m.ws
	base := w.meta.Ptr + uint64(w.offPtr)
	n := uint64(8 * w.nseq)
	g := uint64(2 * l.slot)
	if l.mixer == model.Mamba {
		g += uint64(2 * m.nAttn)
	}
	return base + g*n, base + (g+1)*n
}

func (m *Model) attention(l *layer, tok, rseq, rpos uint64) error {
	c, w, dev := m.Config, &m.ws, m.Dev
	n := w.total
	hd := c.HeadDimension()
	qd, kvd := c.NumAttentionHeads*hd, c.NumKeyValueHeads*hd
	ld := qd + 2*kvd
	m.mark("attn.proj")
	if _, _, err := dev.matMul(w.big.Ptr, w.xn.Ptr, w.xs, n, &l.qkv, &w.sc, false); err != nil {
		return err
	}
	kp, vp := m.ptrs(l)
	m.mark("attn.core")
	if err := dev.launch("kv_append", [2]int{blocks(int64(n)*int64(kvd), 256)}, 256,
		kp, vp, w.big.Ptr, la(int64(ld)), ia(qd), ia(kvd), rseq, rpos, la(int64(n))); err != nil {
		return err
	}
	scale := float32(1 / math.Sqrt(float64(hd)))
	nH := c.NumAttentionHeads
	// Few rows over long caches: split the keys so that the grid fills the
	// GPU (at least 256 keys a split), then merge the splits.
	splits := 1
	if blocksNeeded := n * nH; blocksNeeded < 4*dev.SMs && w.maxPos > 512 {
		splits = min((4*dev.SMs+blocksNeeded-1)/blocksNeeded, w.maxPos/256, maxSplits)
	}
	if splits > 1 {
		need := int64(n) * int64(nH) * int64(splits) * int64(hd+2)
		if w.part.Bytes < 4*need {
			dev.Free(&w.part)
			var err error
			if w.part, err = dev.Alloc(4 * need); err != nil {
				return err
			}
		}
	}
	if err := dev.launch3("attention", [3]int{n, nH, splits}, 256,
		w.att.Ptr, w.part.Ptr, w.big.Ptr, la(int64(ld)), kp, vp, rseq, rpos, ia(nH), ia(c.NumKeyValueHeads), ia(hd), fa(scale)); err != nil {
		return err
	}
	if splits > 1 {
		if err := dev.launch("attn_merge", [2]int{n * nH}, 128, w.att.Ptr, w.part.Ptr, ia(nH), ia(hd), ia(splits)); err != nil {
			return err
		}
	}
	m.mark("attn.proj")
	var err error
	w.mixP, w.mixD, err = dev.matMul(w.mix.Ptr, w.att.Ptr, 0, n, &l.o, &w.sc, dev.fuse)
	return err
}

func (m *Model) mamba(l *layer, rseq, rpos, sstart uint64) error {
	c, w, dev := m.Config, &m.ws, m.Dev
	n := int64(w.total)
	Di, N, K, R := c.InnerSize(), c.MambaDState, c.MambaDConv, c.MambaDtRank
	P := R + 2*N
	m.mark("mamba.in_proj")
	// Fused: the conv and the scan read in_proj's result from its two
	// halves (kept in w.scIn, apart from the x and dt products' scratch),
	// and the scan writes its output split for out_proj.
	halves, sc := w.fuse && l.inBias.Ptr == 0, &w.sc
	if halves {
		sc = &w.scIn
	}
	xz, xzD, err := dev.matMul(w.big.Ptr, w.xn.Ptr, w.xs, int(n), &l.inProj, sc, halves)
	if err != nil {
		return err
	}
	if l.inBias.Ptr != 0 {
		if err := dev.launch("add_bias", [2]int{blocks(n*int64(2*Di), 256)}, 256, xz, l.inBias.Ptr, ia(2*Di), la(n*int64(2*Di))); err != nil {
			return err
		}
	}
	convp, ssmp := m.ptrs(l)
	m.mark("mamba.conv")
	if err := dev.launch("conv_fwd", [2]int{blocks(n*int64(Di), 256)}, 256,
		w.xc.Ptr, xz, la(int64(2*Di)), la(xzD), l.convWT.Ptr, l.convB.Ptr, convp, rseq, rpos, sstart, ia(Di), ia(K), la(n), ia(m.act)); err != nil {
		return err
	}
	if err := dev.launch("conv_state", [2]int{blocks(int64(w.nseq)*int64(Di), 256)}, 256,
		convp, xz, la(int64(2*Di)), la(xzD), sstart, rpos, ia(Di), ia(K), ia(w.nseq)); err != nil {
		return err
	}
	m.mark("mamba.x_dt_proj")
	if err := dev.MatMul(w.dbc.Ptr, w.xc.Ptr, int(n), &l.xProj, &w.sc); err != nil {
		return err
	}
	if l.dtNorm.Ptr != 0 {
		if err := dev.launch("dbc_norm", [2]int{int(n)}, 256, w.dtn.Ptr, w.dbc.Ptr, l.dtNorm.Ptr, l.bNorm.Ptr, l.cNorm.Ptr, ia(R), ia(N), fa(m.eps)); err != nil {
			return err
		}
	} else if err := dev.launch("dt_copy", [2]int{blocks(n*int64(R), 256)}, 256, w.dtn.Ptr, w.dbc.Ptr, ia(R), ia(P), la(n)); err != nil {
		return err
	}
	if err := dev.MatMul(w.draw.Ptr, w.dtn.Ptr, int(n), &l.dtProj, &w.sc); err != nil {
		return err
	}
	lpc := 1
	for lpc < N {
		lpc *= 2
	}
	threads := int64(w.nseq) * int64(Di) * int64(lpc)
	if threads >= 1<<31 {
		return fmt.Errorf("cuda: %d sequences of %d Mamba channels exceed the scan kernel's 32-bit indices", w.nseq, Di)
	}
	ys := uint64(0)
	if w.fuse {
		if err := dev.growBuf(&w.sc.hi, 4*n*int64(Di)); err != nil {
			return err
		}
		ys = w.sc.hi.Ptr
	}
	m.mark("mamba.scan")
	if N <= 16 && w.total == w.nseq && w.nseq >= dev.scanChanSeqs {
		// A decode step of several sequences: one thread per channel.
		if err := dev.launch("scan_chan", [2]int{blocks(int64(w.nseq)*int64(Di), 128)}, 128,
			w.y.Ptr, w.draw.Ptr, l.dtBias.Ptr, w.xc.Ptr, xz+uint64(4*Di), la(int64(2*Di)), la(xzD), w.dbc.Ptr, ia(P), ia(R),
			l.a.Ptr, l.d.Ptr, ssmp, sstart, ia(Di), ia(N), ia(w.nseq), ys, la(n*int64(Di))); err != nil {
			return err
		}
	} else if err := dev.launch("scan_fwd", [2]int{blocks(threads, 256)}, 256,
		w.y.Ptr, w.draw.Ptr, l.dtBias.Ptr, w.xc.Ptr, xz+uint64(4*Di), la(int64(2*Di)), la(xzD), w.dbc.Ptr, ia(P), ia(R),
		l.a.Ptr, l.d.Ptr, ssmp, sstart, ia(Di), ia(N), ia(lpc), ia(w.nseq), ys, la(n*int64(Di))); err != nil {
		return err
	}
	m.mark("mamba.out_proj")
	if w.mixP, w.mixD, err = dev.matMul(w.mix.Ptr, w.y.Ptr, ys, int(n), &l.outProj, &w.sc, dev.fuse && l.outBias.Ptr == 0); err != nil {
		return err
	}
	if l.outBias.Ptr != 0 {
		H := c.HiddenSize
		return dev.launch("add_bias", [2]int{blocks(n*int64(H), 256)}, 256, w.mix.Ptr, l.outBias.Ptr, ia(H), la(n*int64(H)))
	}
	return nil
}

// ffn runs one SwiGLU block on n rows of in into out; xs and halves as
// for matMul (the result is at p, in halves dhalf floats apart when dhalf
// ≠ 0).
func (m *Model) ffn(gu, down *Matrix, in, xs, out uint64, n int, halves bool) (p uint64, dhalf int64, err error) {
	w, dev := &m.ws, m.Dev
	I := m.Config.IntermediateSize
	g, gh, err := dev.matMul(w.big.Ptr, in, xs, n, gu, &w.sc, halves)
	if err != nil {
		return 0, 0, err
	}
	if gh == 0 {
		if err := dev.launch("swiglu", [2]int{blocks(int64(n)*int64(I), 256)}, 256, w.act.Ptr, w.big.Ptr, ia(I), la(int64(n)), ia(m.act)); err != nil {
			return 0, 0, err
		}
		return dev.matMul(out, w.act.Ptr, 0, n, down, &w.sc, halves)
	}
	// The gate-up product's halves are summed by the SwiGLU, which also
	// writes its output split for the down product (in w.sc.hi, which
	// the down product's split path would have filled).
	if err := dev.growBuf(&w.sc.hi, 4*int64(n)*int64(I)); err != nil {
		return 0, 0, err
	}
	if err := dev.launch("swiglu_halves", [2]int{blocks(int64(n)*int64(I), 256)}, 256, w.act.Ptr, w.sc.hi.Ptr, g, la(gh), ia(I), la(int64(n)), ia(m.act)); err != nil {
		return 0, 0, err
	}
	return dev.matMul(out, w.act.Ptr, w.sc.hi.Ptr, n, down, &w.sc, halves)
}

func (m *Model) mlp(l *layer) error {
	w := &m.ws
	var err error
	w.mixP, w.mixD, err = m.ffn(&l.gu, &l.down, w.xn.Ptr, w.xs, w.mix.Ptr, w.total, m.Dev.fuse)
	return err
}

// moe routes every row to its top-k experts. One row reads its k experts
// through the routing indices on the device. Up to moeRows rows, the
// routing slots are grouped by expert on the device and each expert's
// weights are read once per eight of its slots by the matrix-vector
// kernels; more rows are grouped by expert on the host (one copy of the
// routing back) so each expert's weights are read once by a matrix product
// over its rows.
func (m *Model) moe(l *layer) error {
	c, w, dev := m.Config, &m.ws, m.Dev
	n := w.total
	H, I, E, K := c.HiddenSize, c.IntermediateSize, c.NumExperts, c.NumExpertsPerTok
	m.mark("moe.route")
	if err := dev.MatMul(w.rlog.Ptr, w.xn.Ptr, n, &l.router, &w.sc); err != nil {
		return err
	}
	if err := dev.launch("route", [2]int{blocks(int64(n), 64)}, 64, w.idx.Ptr, w.wt.Ptr, w.rlog.Ptr, ia(E), ia(K), ia(n)); err != nil {
		return err
	}
	slots := n * K
	m.mark("moe.experts")
	if n == 1 {
		if err := dev.moeGemv(w.big.Ptr, l.expGU.Ptr, l.expGU.DType, l.guStride, w.idx.Ptr, w.xn.Ptr, K, slots, 2*I, H); err != nil {
			return err
		}
		if err := dev.launch("swiglu", [2]int{blocks(int64(slots)*int64(I), 256)}, 256, w.act.Ptr, w.big.Ptr, ia(I), la(int64(slots)), ia(m.act)); err != nil {
			return err
		}
		if err := dev.moeGemv(w.eo.Ptr, l.expDown.Ptr, l.expDown.DType, l.dnStride, w.idx.Ptr, w.act.Ptr, 1, slots, H, I); err != nil {
			return err
		}
		return dev.launch("moe_combine", [2]int{blocks(int64(n)*int64(H), 256)}, 256, w.mix.Ptr, w.eo.Ptr, w.wt.Ptr, ia(K), ia(H), la(int64(n)))
	}
	if n >= dev.moeMMAMin && n <= dev.moeMMARows && dev.mmaFits(&l.expGU) && dev.mmaFits(&l.expDown) {
		return m.moeMMA(l)
	}
	if n >= dev.moeDenseRows && n <= moeMax && l.expGU.DType == BF16 {
		return m.moeDense(l)
	}
	if n <= dev.moeRows {
		// off[E+1], then the chunk count and (expert, slot) pairs, then list.
		maxWork := min(E, slots) + slots/8 + 1
		off := w.moeList.Ptr
		work := off + uint64(4*(E+2))
		list := work + uint64(8*maxWork)
		if err := dev.launch("moe_lists", [2]int{1}, 32, off, list, work, w.idx.Ptr, ia(E), ia(slots)); err != nil {
			return err
		}
		if err := dev.groupedGemv(w.big.Ptr, l.expGU.Ptr, l.expGU.DType, l.guStride, maxWork, off, list, work, w.xn.Ptr, K, 2*I, H); err != nil {
			return err
		}
		if err := dev.launch("swiglu", [2]int{blocks(int64(slots)*int64(I), 256)}, 256, w.act.Ptr, w.big.Ptr, ia(I), la(int64(slots)), ia(m.act)); err != nil {
			return err
		}
		if err := dev.groupedGemv(w.eo.Ptr, l.expDown.Ptr, l.expDown.DType, l.dnStride, maxWork, off, list, work, w.act.Ptr, 1, H, I); err != nil {
			return err
		}
		return dev.launch("moe_combine", [2]int{blocks(int64(n)*int64(H), 256)}, 256, w.mix.Ptr, w.eo.Ptr, w.wt.Ptr, ia(K), ia(H), la(int64(n)))
	}
	if cap(w.moeIdx) < slots {
		w.moeIdx = make([]int32, slots)
		w.moeWt = make([]float32, slots)
		w.moeRows = make([]int32, 2*slots)
		w.moeW = make([]float32, slots)
	}
	w.moeIdx, w.moeWt = w.moeIdx[:slots], w.moeWt[:slots]
	if err := dev.Download(unsafe.Pointer(&w.moeIdx[0]), w.idx, 0, 4*int64(slots)); err != nil {
		return err
	}
	if err := dev.DownloadF32(w.moeWt, w.wt, 0); err != nil {
		return err
	}
	if len(w.moeCount) < E+1 {
		w.moeCount = make([]int, E+1)
		w.moeOffset = make([]int, E+1)
	}
	clear(w.moeCount)
	for _, e := range w.moeIdx {
		w.moeCount[e]++
	}
	off := 0
	for e := 0; e < E; e++ {
		w.moeOffset[e] = off
		off += w.moeCount[e]
	}
	// rows (int32) in the first half of moeRows, weights (float bits) in the second.
	list := w.moeRows[:2*slots]
	for s, e := range w.moeIdx {
		o := w.moeOffset[e]
		w.moeOffset[e]++
		list[o] = int32(s / K)
		list[slots+o] = int32(math.Float32bits(w.moeWt[s]))
	}
	if err := dev.Upload(w.moeList, 0, unsafe.Pointer(&list[0]), 8*int64(slots)); err != nil {
		return err
	}
	if err := dev.Zero(w.mix.Ptr, 4*int64(n)*int64(H)); err != nil {
		return err
	}
	off = 0
	for e := 0; e < E; e++ {
		cnt := w.moeCount[e]
		if cnt == 0 {
			continue
		}
		rows := w.moeList.Ptr + uint64(4*off)
		wts := w.moeList.Ptr + uint64(4*(slots+off))
		if err := dev.launch("gather_rows", [2]int{blocks(int64(cnt)*int64(H), 256)}, 256, w.ein.Ptr, w.xn.Ptr, rows, ia(H), la(int64(cnt))); err != nil {
			return err
		}
		if _, _, err := m.ffn(expert(l.expGU, l.guStride, e), expert(l.expDown, l.dnStride, e), w.ein.Ptr, 0, w.eo.Ptr, cnt, false); err != nil {
			return err
		}
		if err := dev.launch("scatter_add", [2]int{blocks(int64(cnt)*int64(H), 256)}, 256, w.mix.Ptr, w.eo.Ptr, rows, wts, ia(H), la(int64(cnt))); err != nil {
			return err
		}
		off += cnt
	}
	return nil
}

// Logits returns the logits of sequence i of the last Forward call, copied
// to the host: one row of V floats per requested token. Valid until the
// next Forward.
func (m *Model) Logits(i int) ([]float32, error) {
	w := &m.ws
	V := m.Config.VocabSize
	if !w.logitsValid {
		n := w.nhead * V
		if cap(w.hostLogits) < n {
			w.hostLogits = make([]float32, n)
		}
		w.hostLogits = w.hostLogits[:n]
		if err := m.Dev.DownloadF32(w.hostLogits, w.logits, 0); err != nil {
			return nil, err
		}
		w.logitsValid = true
	}
	return w.hostLogits[w.headOff[i]*V : w.headOff[i+1]*V], nil
}

// SampleOptions choose the next token on the GPU, with the CPU sampler's
// filters in its order (sample.Sampler; penalties excepted). Temperature 0
// is greedy.
type SampleOptions struct {
	Temperature float32
	TopK        int     // keep the k most likely ids (ties: lower id first); ≤ 0: all
	TopP        float32 // then the most likely of those up to this probability mass; 0 or 1: all
	MinP        float32 // keep tokens with probability ≥ MinP × the largest (0: all)
	Seed        uint64
	Step        uint64 // varies the draw between calls
}

// Sample picks one token for every logits row of the last Forward call on
// the GPU and returns the ids (one per row, sequences in order); only the
// ids cross to the host. A row with a NaN or infinite logit gets −1.
func (m *Model) Sample(o SampleOptions) ([]int, error) {
	w, dev := &m.ws, m.Dev
	if w.nhead == 0 {
		return nil, nil
	}
	if dev.enter() {
		defer dev.leave()
	}
	if err := m.sampleRows(0, w.nhead, o); err != nil {
		return nil, err
	}
	return m.downloadIDs()
}

// sampleRows launches the sampling kernel for logits rows [row, row+n) of
// the last Forward, writing their ids on the device.
func (m *Model) sampleRows(row, n int, o SampleOptions) error {
	w, dev := &m.ws, m.Dev
	V := m.Config.VocabSize
	ids, logits := w.ids.Ptr+4*uint64(row), w.logits.Ptr+4*uint64(row)*uint64(V)
	if o.Temperature > 0 && (o.TopK > 0 && o.TopK < V || o.TopP > 0 && o.TopP < 1) {
		return dev.launch("sample_top", [2]int{n}, 1024, ids, logits, ia(V),
			fa(o.Temperature), ia(o.TopK), fa(o.TopP), fa(o.MinP), o.Seed, o.Step)
	}
	return dev.launch("sample", [2]int{n}, 1024, ids, logits, ia(V),
		fa(o.Temperature), fa(o.MinP), o.Seed, o.Step)
}

// sampleRowBytes is the size of one row of sampleEach's table: the
// kernels' SampleRow (temperature, top-p, min-p, top-k; seed, step).
const sampleRowBytes = 32

// sampleEach launches the sampling kernel once for every logits row of the
// last Forward, row i with opts[i] (len(opts) must be the number of rows),
// writing their ids on the device. Each row draws as it would as the first
// row of a sampleRows launch of its own. The table of options is uploaded
// first, which waits for the forward pass to end.
func (m *Model) sampleEach(opts []SampleOptions) error {
	w, dev := &m.ws, m.Dev
	if len(opts) != w.nhead {
		return fmt.Errorf("cuda: %d sampling options for %d rows of logits", len(opts), w.nhead)
	}
	if len(opts) == 0 {
		return nil
	}
	n := sampleRowBytes * len(opts)
	if cap(w.hostRows) < n {
		w.hostRows = make([]byte, n)
	}
	b := w.hostRows[:n]
	for i, o := range opts {
		r := b[sampleRowBytes*i:]
		le.PutUint32(r[0:], math.Float32bits(max(o.Temperature, 0)))
		le.PutUint32(r[4:], math.Float32bits(o.TopP))
		le.PutUint32(r[8:], math.Float32bits(o.MinP))
		le.PutUint32(r[12:], uint32(int32(o.TopK)))
		le.PutUint64(r[16:], o.Seed)
		le.PutUint64(r[24:], o.Step)
	}
	if err := dev.growBuf(&w.rowTab, int64(n)); err != nil {
		return err
	}
	if err := dev.Upload(w.rowTab, 0, unsafe.Pointer(&b[0]), int64(n)); err != nil {
		return err
	}
	return dev.launch("sample_rows", [2]int{len(opts)}, 1024, w.ids.Ptr, w.logits.Ptr, ia(m.Config.VocabSize), w.rowTab.Ptr)
}

// downloadIDs copies the ids of every logits row of the last Forward to
// the host.
func (m *Model) downloadIDs() ([]int, error) {
	w, dev := &m.ws, m.Dev
	if cap(w.hostIDs) < w.nhead {
		w.hostIDs = make([]int32, w.nhead)
		w.ids32 = make([]int, w.nhead)
	}
	ids := w.hostIDs[:w.nhead]
	if err := dev.Download(unsafe.Pointer(&ids[0]), w.ids, 0, 4*int64(len(ids))); err != nil {
		return nil, err
	}
	out := w.ids32[:len(ids)]
	for i, v := range ids {
		out[i] = int(v)
	}
	return out, nil
}

// moeDense computes every expert over every row with two strided-batched
// cuBLAS products on the split input (each expert's weights read once, at
// cuBLAS's bandwidth) and keeps each row's top-k results: for decode
// batches that route to nearly every expert anyway.
func (m *Model) moeDense(l *layer) error {
	c, w, dev := m.Config, &m.ws, m.Dev
	n := w.total
	H, I, E, K := c.HiddenSize, c.IntermediateSize, c.NumExperts, c.NumExpertsPerTok
	n2 := 2 * int64(n)
	for _, g := range []struct {
		b     *Buf
		bytes int64
	}{{&w.gu2, 4 * int64(E) * n2 * int64(2*I)}, {&w.act2, 2 * int64(E) * n2 * int64(I)}, {&w.eo2, 4 * int64(E) * n2 * int64(H)}} {
		if err := dev.growBuf(g.b, g.bytes); err != nil {
			return err
		}
	}
	elems := int64(n) * int64(H)
	if err := dev.growBuf(&w.sc.hi, 4*elems); err != nil {
		return err
	}
	if err := dev.launch("split_bf16", [2]int{blocks(elems, 256)}, 256, w.sc.hi.Ptr, w.sc.hi.Ptr+uint64(2*elems), w.xn.Ptr, la(elems)); err != nil {
		return err
	}
	if err := dev.gemmBatched(cublasOpT, cublasOpN, int32(2*I), int32(n2), int32(H),
		l.expGU.Ptr, cudaR16BF, int32(H), l.guStride,
		w.sc.hi.Ptr, cudaR16BF, int32(H), 0,
		w.gu2.Ptr, cudaR32F, int32(2*I), n2*int64(2*I), int32(E), cublasCompute32F); err != nil {
		return err
	}
	if err := dev.launch("moe_dense_act", [2]int{blocks(int64(E)*int64(n)*int64(I), 256)}, 256, w.act2.Ptr, w.gu2.Ptr, ia(I), ia(n), ia(E), ia(m.act)); err != nil {
		return err
	}
	if err := dev.gemmBatched(cublasOpT, cublasOpN, int32(H), int32(n2), int32(I),
		l.expDown.Ptr, cudaR16BF, int32(I), l.dnStride,
		w.act2.Ptr, cudaR16BF, int32(I), n2*int64(I),
		w.eo2.Ptr, cudaR32F, int32(H), n2*int64(H), int32(E), cublasCompute32F); err != nil {
		return err
	}
	return dev.launch("moe_dense_combine", [2]int{blocks(int64(n)*int64(H), 256)}, 256, w.mix.Ptr, w.eo2.Ptr, w.idx.Ptr, w.wt.Ptr, ia(K), ia(H), ia(n))
}

// moeMMA runs the routed slots of a decode batch through the tensor-core
// kernel: moe_lists groups the slots by expert on the device, and each
// expert's weights are read once for all its slots (up to 32 at a time).
func (m *Model) moeMMA(l *layer) error {
	c, w, dev := m.Config, &m.ws, m.Dev
	n := w.total
	H, I, E, K := c.HiddenSize, c.IntermediateSize, c.NumExperts, c.NumExpertsPerTok
	slots := n * K
	maxWork := min(E, slots) + slots/8 + 1
	off := w.moeList.Ptr
	work := off + uint64(4*(E+2))
	list := work + uint64(8*maxWork)
	if err := dev.launch("moe_lists", [2]int{1}, 32, off, list, work, w.idx.Ptr, ia(E), ia(slots)); err != nil {
		return err
	}
	// The split input (bf16 [n][2][H]) goes to ein, the split activations
	// (bf16 [slots][2][I]) to act: both fit the float32 sizes of grow.
	if err := dev.launch("split_rows", [2]int{blocks(int64(n)*int64(H), 256)}, 256, w.ein.Ptr, w.xn.Ptr, ia(H), la(int64(n))); err != nil {
		return err
	}
	active := min(E, slots)
	wide := dev.mmaWide || n >= dev.mmaWideRows
	if err := dev.mma(w.big.Ptr, l.expGU.Ptr, l.guStride, E, active, off, list, w.ein.Ptr, K, 2*I, H, 0, int64(slots), &w.mpart, wide); err != nil {
		return err
	}
	if err := dev.launch("swiglu_split", [2]int{blocks(int64(slots)*int64(I), 256)}, 256, w.act.Ptr, w.big.Ptr, ia(I), la(int64(slots)), ia(m.act)); err != nil {
		return err
	}
	if err := dev.mma(w.eo.Ptr, l.expDown.Ptr, l.dnStride, E, active, off, list, w.act.Ptr, 1, H, I, 0, int64(slots), &w.mpart, wide); err != nil {
		return err
	}
	return dev.launch("moe_combine", [2]int{blocks(int64(n)*int64(H), 256)}, 256, w.mix.Ptr, w.eo.Ptr, w.wt.Ptr, ia(K), ia(H), la(int64(n)))
}
