package engine

// The backend: what computes the model for the engine. The CPU's is the
// model itself (model.Workspace over cache.Seq states); another device
// fills the same interface with states in its own memory (package cuda's
// EngineBackend keeps them on the GPU, and copies them device to device).

import (
	"fmt"

	"github.com/jamba-go/jamba/cache"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/sample"
)

// Backend runs the model's forward passes for an engine. Only the engine's
// scheduler goroutine calls it (and the states it makes), one call at a
// time.
type Backend interface {
	// NewState returns an empty state (one sequence's hybrid cache) with
	// room for capacity tokens.
	NewState(capacity int) (State, error)
	// Forward runs the model over a batch of sequences, each continuing
	// its own state (made by NewState) by its tokens; the logits of each
	// sequence's last token are kept for Logits and Argmax (the CPU's
	// computes them for every sequence, NoLogits or not).
	Forward(batch []Input) error
	// Logits returns the logits of sequence i of the last Forward, on the
	// host, valid until the next Forward; the engine only reads them.
	Logits(i int) ([]float32, error)
	// Choose picks on the device the next token of every sequence of the
	// last Forward whose Choice (indexed as the batch) has Device set:
	// the id of its largest logit when greedy (temperature ≤ 0; the lower
	// id on ties), else a draw from softmax(logits/T) after top-k, top-p
	// and min-p in the CPU sampler's order, from Params.Seed and Step (not
	// the CPU sampler's random sequence); −1 when one of its logits is NaN
	// or infinite. Other entries of the result are not meaningful. nil when
	// the backend leaves every choice to the engine (which then samples
	// from Logits, as on the CPU). Only the ids need to cross to the host.
	Choose(choices []Choice) ([]int, error)
	// SnapshotBytes is the size of one copy of a sequence's Mamba state
	// (0 for a model without Mamba layers).
	SnapshotBytes() int64
	// Close releases what the backend holds (not the states).
	Close()
}

// Input is one sequence's share of a Backend.Forward call.
type Input struct {
	Tokens  []int
	State   State
	Adapter *model.LowRank // a LoRA adapter applied on the fly (CPU only)
	// NoLogits says the step samples nothing from this sequence (a prompt
	// chunk that is not the last): a backend may skip its logits, and
	// Logits and Argmax are not asked for them.
	NoLogits bool
}

// Choice asks a Backend to choose one sequence's next token on its device
// (Backend.Choose).
type Choice struct {
	Device bool          // choose this sequence's token on the device
	Params sample.Params // temperature, top-k, top-p, min-p and seed; no penalties
	Step   int           // tokens the request has generated: varies the draw
}

// State is one sequence's state on a backend: the keys and values of its
// attention layers, the conv windows and SSM states of its Mamba layers.
type State interface {
	// Len is the number of tokens the state holds.
	Len() int
	// Reset empties the state, keeping its memory.
	Reset() error
	// Reserve makes room for capacity tokens (keeping those held).
	Reserve(capacity int) error
	// CopyFrom makes the state a copy of src, a state of the same
	// backend.
	CopyFrom(src State) error
	// NewSnapshot returns a buffer for SaveMamba.
	NewSnapshot() (Snapshot, error)
	// SaveMamba copies the Mamba layers' state into dst: with the first
	// Len tokens of the attention layers, that is the state at Len.
	SaveMamba(dst Snapshot) error
	// Rewind returns the state to its first n tokens (n ≤ Len), taking
	// the Mamba state that SaveMamba wrote into src at n tokens.
	Rewind(n int, src Snapshot) error
	// Free releases the state's memory; it is not used afterwards.
	Free()
}

// Snapshot is a copy of a state's Mamba layers (see State.SaveMamba).
type Snapshot interface {
	// Free releases the copy's memory.
	Free()
}

// cpuBackend is the model itself on the CPU: its Workspace over cache.Seq
// states.
type cpuBackend struct {
	m      *model.Model
	ws     *model.Workspace
	in     []model.SeqInput
	floats int // MambaFloats of a state
}

func newCPUBackend(m *model.Model) *cpuBackend {
	return &cpuBackend{m: m, ws: m.NewWorkspace(), floats: m.NewCache(1).MambaFloats()}
}

// cpuState is a cache.Seq of the CPU backend.
type cpuState struct{ c *cache.Seq }

// hostSnapshot is the Mamba state of a cache.Seq (cache.Seq.SaveMamba).
type hostSnapshot []float32

func (hostSnapshot) Free() {}

func (b *cpuBackend) NewState(capacity int) (State, error) {
	return &cpuState{b.m.NewCache(capacity)}, nil
}

func (b *cpuBackend) Forward(batch []Input) error {
	b.in = b.in[:0]
	for _, x := range batch {
		b.in = append(b.in, model.SeqInput{Tokens: x.Tokens, Cache: x.State.(*cpuState).c, Adapter: x.Adapter})
	}
	err := b.ws.Forward(b.in)
	clear(b.in)
	return err
}

func (b *cpuBackend) Logits(i int) ([]float32, error) { return b.ws.Logits(i), nil }
func (b *cpuBackend) Choose([]Choice) ([]int, error)  { return nil, nil }
func (b *cpuBackend) SnapshotBytes() int64            { return 4 * int64(b.floats) }
func (b *cpuBackend) Close()                          {}

func (s *cpuState) Len() int                   { return s.c.Len }
func (s *cpuState) Reset() error               { s.c.Reset(); return nil }
func (s *cpuState) Reserve(capacity int) error { s.c.Reserve(capacity); return nil }
func (s *cpuState) Free()                      {}

func (s *cpuState) CopyFrom(src State) error {
	o, ok := src.(*cpuState)
	if !ok {
		return fmt.Errorf("engine: copying a %T into a CPU state", src)
	}
	return s.c.CopyFrom(o.c)
}

func (s *cpuState) NewSnapshot() (Snapshot, error) {
	return hostSnapshot(make([]float32, s.c.MambaFloats())), nil
}

func (s *cpuState) SaveMamba(dst Snapshot) error {
	s.c.SaveMamba(dst.(hostSnapshot))
	return nil
}

func (s *cpuState) Rewind(n int, src Snapshot) error {
	return s.c.Rewind(n, src.(hostSnapshot))
}

// release frees the states and copies every slot holds and closes the
// backend, when the scheduler ends.
func (e *Engine) release() {
	if e.cpu != nil {
		return // the garbage collector's
	}
	for _, s := range e.active {
		if s.slot != nil {
			freeSlot(s.slot)
		}
	}
	for _, sl := range e.free {
		freeSlot(sl)
	}
	e.be.Close()
}

// freeSlot releases sl's state and its copies of the Mamba state.
func freeSlot(sl *slot) {
	if sl.cache != nil {
		sl.cache.Free()
		sl.cache = nil
	}
	for _, sn := range sl.snaps {
		sn.data.Free()
	}
	for _, b := range sl.spare {
		b.Free()
	}
	sl.snaps, sl.spare = nil, nil
}
