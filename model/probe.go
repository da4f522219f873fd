package model

// Probe observes a forward pass from inside, for tools that study a model
// (attention maps, state memory, layer ablations). Set Workspace.Probe to
// use one; every field may be nil. Without a probe a forward pass pays one
// nil check per layer. The slices a probe receives are valid only during
// the call and must not be kept.
type Probe struct {
	// Attention receives, for sequence s of the batch and attention layer
	// li, the attention weights of its T new tokens over all past+T
	// positions: w is [nH][T][past+T], w[h][t][j] the weight of query t
	// (position past+t) of head h on position j, zero above the diagonal.
	// They are computed by kernels.AttentionWeights, the same arithmetic as
	// the forward pass's attention, only when this field is set.
	Attention func(li, s int, w []float32, T, past int)
	// Mamba receives, for sequence s and Mamba layer li, the inputs of the
	// selective scan, before it runs.
	Mamba func(li, s int, in ScanInputs)
	// Mixer receives the output of layer li's mixer for the whole batch,
	// [tokens·H] in batch order, before it is added to the residual
	// stream; it may change it (zeroing it ablates the mixer).
	Mixer func(li int, out []float32)
}

// ScanInputs are the operands of one sequence's selective scan in a Mamba
// layer (see kernels.ScanStep): the state h_t = exp(Δ_t·A)⊙h_{t−1} +
// Δ_t·x_t·B_tᵀ, read out as y_t = h_t·C_t + D⊙x_t.
type ScanInputs struct {
	T, Di, N int
	State    []float32 // [Di·N]: the state before the first new token
	A        []float32 // [Di·N]: −exp(A_log)
	D        []float32 // [Di]
	Delta    []float32 // [T·Di]: Δ, after dt_proj, its bias and softplus
	X        []float32 // [T·Di]: the conv output after the activation
	B, C     []float32 // [T·N]: after their RMSNorms
}
