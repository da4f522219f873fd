package tokenizer_test

import (
	"fmt"

	"github.com/jamba-go/jamba/demo"
	"github.com/jamba-go/jamba/tokenizer"
)

// Encode a text with a model's tokenizer (here the embedded demo model's;
// tokenizer.Load reads any tokenizer.json) and decode it back.
func Example() {
	tok, err := demo.Tokenizer()
	if err != nil {
		panic(err)
	}
	ids := tok.Encode("func main() {", true) // true: add BOS as the post-processor says
	fmt.Println(ids)
	fmt.Printf("%q\n", tok.Decode(ids, true)) // true: skip special tokens
	// Output:
	// [1 859 785 462 546 480]
	// "func main() {"
}

// A StreamDecoder turns ids into text as they are generated, holding back
// bytes of a character that is not complete yet.
func ExampleTokenizer_NewStreamDecoder() {
	tok, err := demo.Tokenizer()
	if err != nil {
		panic(err)
	}
	ids := tok.Encode("x := \"héllo\"", false)
	var dec *tokenizer.StreamDecoder = tok.NewStreamDecoder(true)
	for _, id := range ids {
		fmt.Printf("%q ", dec.Add(id))
	}
	fmt.Printf("%q\n", dec.Flush())
	// Output:
	// "x" " :=" " \"" "h" "" "" "él" "lo" "\"" ""
}
