package model

import (
	"errors"
	"fmt"
	"math"

	"github.com/jamba-go/jamba/safetensors"
)

// ErrNonFinite is wrapped by the error for logits that hold a NaN or an
// infinity (non-finite weights, or an overflow inside the model).
var ErrNonFinite = errors.New("model: non-finite logits")

// Stages of a forward pass, besides the layers 0..L-1.
const (
	stageEmbed     = -1
	stageFinalNorm = -2
	stageLMHead    = -3
	stageUnknown   = -4
)

// NonFiniteError reports non-finite logits and where in the model the
// first non-finite value appears.
type NonFiniteError struct {
	// Layer is the first layer whose output holds a NaN or an infinity;
	// -1: the embeddings already do; -2: the final norm; -3: every
	// activation is finite but the LM head's output is not; -4: not found
	// by re-running the tokens at hand (the state from earlier turns).
	Layer int
	// Kind describes the layer ("mamba, MoE"); "" for the other stages.
	Kind string
	// Position is the sequence position at which the logits were not
	// finite.
	Position int
}

func (e *NonFiniteError) Error() string {
	where := ""
	switch e.Layer {
	case stageEmbed:
		where = "the embeddings"
	case stageFinalNorm:
		where = "the final norm"
	case stageLMHead:
		where = "the LM head (every layer's output is finite)"
	case stageUnknown:
		return fmt.Sprintf("%v at position %d (the layers' outputs over this turn's tokens are finite: the state from earlier ones is not)", ErrNonFinite, e.Position)
	default:
		where = fmt.Sprintf("the output of layer %d (%s)", e.Layer, e.Kind)
	}
	return fmt.Sprintf("%v at position %d: the first NaN or infinity is in %s; check the weights with --check-finite", ErrNonFinite, e.Position, where)
}

func (e *NonFiniteError) Unwrap() error { return ErrNonFinite }

// Finite reports whether every value of v is finite.
func Finite(v []float32) bool {
	for _, x := range v {
		if math.Float32bits(x)&0x7f800000 == 0x7f800000 { // exponent all ones: NaN or ±Inf
			return false
		}
	}
	return true
}

// finiteTrace records the first stage of a forward pass whose output is
// not finite.
type finiteTrace struct {
	first int // stage, or stageUnknown while all are finite
}

func (tr *finiteTrace) check(stage int, v []float32) {
	if tr.first == stageUnknown && !Finite(v) {
		tr.first = stage
	}
}

// LocateNonFinite runs tokens through the model again from an empty state,
// in chunks as a prefill does, and returns the error naming the first
// layer whose output holds a NaN or an infinity. position is where the
// logits were found not finite (for the message).
func (m *Model) LocateNonFinite(tokens []int, position int) *NonFiniteError {
	e := &NonFiniteError{Layer: stageUnknown, Position: position}
	if len(tokens) == 0 {
		return e
	}
	ws := m.NewWorkspace()
	ws.trace = &finiteTrace{first: stageUnknown}
	st := m.NewCache(len(tokens))
	const chunk = 512
	for i := 0; i < len(tokens); i += chunk {
		end := min(i+chunk, len(tokens))
		if err := ws.Forward([]SeqInput{{Tokens: tokens[i:end], Cache: st}}); err != nil {
			return e
		}
		if ws.trace.first == stageUnknown && !Finite(ws.Logits(0)) {
			ws.trace.first = stageLMHead
		}
		if ws.trace.first != stageUnknown {
			break
		}
	}
	e.Layer = ws.trace.first
	if e.Layer >= 0 {
		e.Kind = m.layerKind(e.Layer)
	}
	return e
}

// layerKind describes layer li: "attention, MoE", "mamba, dense MLP", ...
func (m *Model) layerKind(li int) string {
	if li >= len(m.Layers) {
		return ""
	}
	l := &m.Layers[li]
	mixer, ffn := "mamba", "dense MLP"
	if l.Mixer == Attention {
		mixer = "attention"
	}
	if l.FFN == MoE {
		ffn = "MoE"
	}
	return mixer + ", " + ffn
}

// CheckWeightsFinite scans every tensor of the checkpoint for NaN and
// infinities and returns an error naming the first offending tensor and
// element.
func (m *Model) CheckWeightsFinite() error {
	if m.gg != nil {
		return checkGGUFFinite(m.gg)
	}
	if m.set == nil {
		return nil
	}
	for _, name := range m.set.Names() {
		t, err := m.set.Tensor(name)
		if err != nil {
			return err
		}
		if err := t.CheckFinite(); err != nil {
			return fmt.Errorf("model: %w", err)
		}
	}
	return nil
}

// CheckDirFinite scans every tensor of the checkpoint in dir for NaN and
// infinities, without loading the model, and returns how many tensors it
// scanned or an error naming the first offending tensor and element.
func CheckDirFinite(dir string) (int, error) {
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return 0, err
	}
	defer set.Close()
	for i, name := range set.Names() {
		t, err := set.Tensor(name)
		if err != nil {
			return i, err
		}
		if err := t.CheckFinite(); err != nil {
			return i, fmt.Errorf("model: %w", err)
		}
		set.Release(name)
	}
	return set.Len(), nil
}
