package sample_test

import (
	"fmt"

	"github.com/jamba-go/jamba/sample"
)

func Example() {
	logits := []float32{0.5, 2.0, 1.0, 2.0}

	// Temperature 0 is greedy: the largest logit, the lower id on a tie.
	s := sample.New(sample.Params{}, len(logits))
	fmt.Println(s.Sample(logits))

	// A repetition penalty makes a generated token less likely.
	s.Reset(sample.Params{RepetitionPenalty: 2})
	s.Accept(1)
	fmt.Println(s.Sample(logits))

	// With a seed, sampling is repeatable; top-k 1 leaves one choice.
	s.Reset(sample.Params{Temperature: 0.8, TopK: 1, Seed: 42})
	fmt.Println(s.Sample(logits))
	// Output:
	// 1
	// 3
	// 1
}
