package model

// ActiveWeightBytes is the storage read for one token: every matrix and
// vector except the embedding table, counting k of the E experts of each MoE
// layer (all experts have the same size). With tied embeddings the LM head
// reads the whole table.
func (m *Model) ActiveWeightBytes() int64 {
	c := m.Config
	var n int64
	vec := func(v []float32) { n += 4 * int64(len(v)) }
	for i := range m.Layers {
		l := &m.Layers[i]
		vec(l.InputNorm)
		vec(l.PreFFNorm)
		if a := l.Attn; a != nil {
			n += a.Q.Bytes() + a.K.Bytes() + a.V.Bytes() + a.O.Bytes()
		}
		if w := l.Mamba; w != nil {
			n += w.InProj.Bytes() + w.XProj.Bytes() + w.DtProj.Bytes() + w.OutProj.Bytes()
			for _, v := range [][]float32{w.InBias, w.ConvW, w.ConvB, w.DtNorm, w.BNorm, w.CNorm, w.DtBias, w.A, w.D, w.OutBias} {
				vec(v)
			}
		}
		if f := l.MLP; f != nil {
			n += f.Gate.Bytes() + f.Up.Bytes() + f.Down.Bytes()
		}
		if e := l.MoE; e != nil {
			n += e.Router.Bytes()
			x := e.Experts[0]
			n += int64(c.NumExpertsPerTok) * (x.Gate.Bytes() + x.Up.Bytes() + x.Down.Bytes())
		}
	}
	vec(m.FinalNorm)
	return n + m.LMHead.Bytes()
}
