package model

// ShareWeights returns a Model that reads the same weights as m (the same
// mapping and matrices) but has layer records of its own, so that a matrix
// of the copy can be replaced, by a merged LoRA adapter say, without
// changing m. Closing the copy does nothing: m must stay open while the
// copy is in use.
func (m *Model) ShareWeights() *Model {
	c := *m
	c.shared = true
	c.Layers = make([]Layer, len(m.Layers))
	for i, l := range m.Layers {
		if l.Attn != nil {
			a := *l.Attn
			l.Attn = &a
		}
		if l.Mamba != nil {
			w := *l.Mamba
			l.Mamba = &w
		}
		if l.MLP != nil {
			f := *l.MLP
			l.MLP = &f
		}
		if l.MoE != nil {
			moe := *l.MoE
			moe.Experts = append([]MLPWeights(nil), moe.Experts...)
			l.MoE = &moe
		}
		c.Layers[i] = l
	}
	return &c
}

// MergedWith is called after matrices of m were replaced (through
// Matrices) by weights merged with something, named by desc (an adapter's
// content hash): it recomputes the views the forward pass derives from the
// matrices and records desc in the model's Identity, so that state saved
// with the base model is not taken for this one's.
func (m *Model) MergedWith(desc string) {
	m.prepare()
	if m.identityExtra != "" {
		m.identityExtra += " "
	}
	m.identityExtra += desc
}

// Merges names what was merged into the weights after loading (MergedWith),
// or "" when they are the checkpoint's.
func (m *Model) Merges() string { return m.identityExtra }
