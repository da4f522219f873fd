package main

import (
	"fmt"
	"io"

	"github.com/jamba-go/jamba/cuda"
	"github.com/jamba-go/jamba/model"
	"github.com/jamba-go/jamba/safetensors"
)

func init() {
	register(&command{name: "forward", summary: "run one forward pass over token ids and save the logits", run: runForward})
}

func runForward(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("forward", "[--model DIR] --ids 5,17,300 --output FILE.safetensors", `
Runs the model over the given token ids in one pass (no cache) and writes the
logits of every position as tensor "logits", F32 [T, V]. With --hidden-states
it also writes "hidden_states" [L+1, T, H] in Hugging Face's convention (the
embeddings, the outputs of layers 0..L-2, the final-normed output of the last
layer) and "router_logits.<j>" [T, E] for each MoE layer.`, stderr)
	mf := addModelFlags(fs, withQuantize)
	idsFlag := fs.String("ids", "", "comma-separated token ids (required)")
	output := fs.String("output", "", "safetensors file to write (required)")
	hidden := fs.Bool("hidden-states", false, "also write per-layer hidden states and router logits")
	device := addDeviceFlag(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *idsFlag == "" || *output == "" {
		return fmt.Errorf("%w: --ids and --output are required", errUsage)
	}
	ids, err := parseIDs(*idsFlag)
	if err != nil {
		return err
	}
	m, err := mf.open()
	if err != nil {
		return err
	}
	defer m.Close()
	gm, err := onDevice(*device, m.Model, mf.options(), stderr)
	if err != nil {
		return err
	}
	if gm != nil {
		defer gm.Close()
		if *hidden {
			return fmt.Errorf("%w: --hidden-states is CPU-only", errUsage)
		}
		seq, err := gm.NewSeq(len(ids))
		if err != nil {
			return err
		}
		defer seq.Free()
		if err := gm.Forward([]cuda.SeqInput{{Tokens: ids, Cache: seq, AllLogits: true}}); err != nil {
			return err
		}
		logits, err := gm.Logits(0)
		if err != nil {
			return err
		}
		if !model.Finite(logits) {
			return fmt.Errorf("the logits on the GPU are not finite (NaN or infinity); run with --device cpu to find the layer")
		}
		return writeLogits(*output, logits, len(ids), m.Config.VocabSize, stderr)
	}
	ws := m.NewWorkspace()
	ws.CaptureHidden, ws.CaptureRouter = *hidden, *hidden
	if err := ws.Forward([]model.SeqInput{{Tokens: ids, Logits: model.AllLogits}}); err != nil {
		return err
	}
	if !model.Finite(ws.Logits(0)) {
		return m.LocateNonFinite(ids, len(ids)-1)
	}
	c := m.Config
	T := len(ids)
	if !*hidden {
		return writeLogits(*output, ws.Logits(0), T, c.VocabSize, stderr)
	}
	tensors := []safetensors.Tensor{f32Tensor("logits", ws.Logits(0), T, c.VocabSize)}
	if *hidden {
		var all []float32
		for _, h := range ws.Hidden {
			all = append(all, h...)
		}
		tensors = append(tensors, f32Tensor("hidden_states", all, len(ws.Hidden), T, c.HiddenSize))
		for j, r := range ws.Router {
			tensors = append(tensors, f32Tensor(fmt.Sprintf("router_logits.%d", j), r, T, c.NumExperts))
		}
	}
	if err := safetensors.WriteFile(*output, tensors, nil); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote logits [%d, %d] to %s\n", T, c.VocabSize, *output)
	return nil
}

func writeLogits(path string, logits []float32, T, V int, stderr io.Writer) error {
	if err := safetensors.WriteFile(path, []safetensors.Tensor{f32Tensor("logits", logits, T, V)}, nil); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "wrote logits [%d, %d] to %s\n", T, V, path)
	return nil
}

func f32Tensor(name string, v []float32, shape ...int) safetensors.Tensor {
	data, _ := safetensors.EncodeFloat32(safetensors.F32, v)
	return safetensors.Tensor{TensorInfo: safetensors.TensorInfo{Name: name, DType: safetensors.F32, Shape: shape}, Data: data}
}
