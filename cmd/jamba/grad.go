package main

import (
	"fmt"
	"io"

	"github.com/jamba-go/jamba/safetensors"
	"github.com/jamba-go/jamba/train"
)

func init() {
	register(&command{name: "grad", summary: "compute the training loss and the gradient of every parameter", run: runGrad})
}

func runGrad(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("grad", "[--model DIR] --ids 1,2,3 [--ids 4,5,6 ...] --output FILE.safetensors", `
Computes the training loss of one batch and its gradient with respect to
every parameter, in float32. Each --ids is one row of the batch. The loss is
the mean next-token cross-entropy over all rows (position t predicts token
t+1; a row of n tokens gives n-1 predictions, and the mean is over all
predictions of the batch) plus router_aux_loss_coef times the
load-balancing loss of the MoE routers.

Rows may have different lengths: the result is what Hugging Face
transformers computes for the rows right-padded to one length with an
attention mask (padded positions predict nothing and are not routed).

The output file holds one F32 tensor per parameter under its checkpoint
name (experts one by one, as stored on disk; with tied embeddings the LM
head's gradient is part of model.embed_tokens.weight). The losses are
printed on stdout as "name value" lines: loss (cross-entropy), aux_loss,
loss_with_aux, tokens (the number of predictions).`, stderr)
	mf := addModelFlags(fs, weightsOnly)
	var rows idList
	fs.Var(&rows, "ids", "comma-separated token ids of one batch row (repeat for more rows; required)")
	output := fs.String("output", "", "safetensors file to write the gradients to (required)")
	recompute := fs.Bool("recompute", false, "recompute each layer's activations in the backward pass (less memory, about a third more time)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if len(rows) == 0 || *output == "" {
		return fmt.Errorf("%w: --ids and --output are required", errUsage)
	}
	for i, r := range rows {
		if len(r) < 2 {
			return fmt.Errorf("%w: --ids row %d has %d token(s); each row needs at least 2 (one prediction)", errUsage, i+1, len(r))
		}
	}
	m, err := mf.open()
	if err != nil {
		return err
	}
	p, err := train.ParamsFromModel(m.Model)
	m.Close()
	if err != nil {
		return err
	}
	e, err := train.NewBackprop(p)
	if err != nil {
		return err
	}
	e.Recompute = *recompute
	loss, err := e.Backward(rows, 1)
	if err != nil {
		return err
	}
	if err := p.WriteTensors(*output, e.Grad, safetensors.F32, nil); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "loss %.9g\naux_loss %.9g\nloss_with_aux %.9g\ntokens %d\n", loss.CE, loss.Aux, loss.Total, loss.Tokens)
	fmt.Fprintf(stderr, "wrote %d gradient tensors (%d values) to %s\n", len(p.Tensors), p.Len(), *output)
	return nil
}
