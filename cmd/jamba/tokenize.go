package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

func init() {
	register(&command{name: "tokenize", summary: "print the token ids of a text", run: runTokenize})
	register(&command{name: "detokenize", summary: "print the text of token ids", run: runDetokenize})
}

// openInput returns the named file, or stdin when name is empty.
func openInput(name string) (io.ReadCloser, error) {
	if name == "" {
		return io.NopCloser(stdin), nil
	}
	return os.Open(name)
}

// scanLines calls fn for each line of r (without its line ending), with
// lines of any length.
func scanLines(r io.Reader, fn func(n int, line string) error) error {
	br := bufio.NewReader(r)
	for n := 1; ; n++ {
		line, err := br.ReadString('\n')
		if line == "" && err == io.EOF {
			return nil
		}
		if err != nil && err != io.EOF {
			return err
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		if strings.TrimSpace(line) != "" {
			if ferr := fn(n, line); ferr != nil {
				return ferr
			}
		}
		if err == io.EOF {
			return nil
		}
	}
}

func writeJSONLine(w io.Writer, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	data = append(data, '\n')
	_, err = w.Write(data)
	return err
}

func runTokenize(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("tokenize", "--tokenizer FILE|--model F.gguf [--no-special] [--file PATH] [--jsonl]", `
Reads text from standard input (or --file) and prints its token ids as a JSON
array. Special tokens of the post-processor (BOS and the like) are added
unless --no-special. With --jsonl each input line is a JSON string and each
output line the JSON array of its ids.`, stderr)
	tokPath := fs.String("tokenizer", "", "tokenizer.json, a folder holding one, or a .gguf file (default: the embedded demo model's)")
	modelPath := fs.String("model", "", "the same as --tokenizer: a model folder or .gguf file whose tokenizer to use")
	noSpecial := fs.Bool("no-special", false, "do not add the post-processor's special tokens")
	file := fs.String("file", "", "read the text from this file instead of standard input")
	jsonl := fs.Bool("jsonl", false, "one JSON string per input line, one JSON array per output line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *tokPath == "" {
		*tokPath = *modelPath
	} else if *modelPath != "" {
		return fmt.Errorf("%w: give --tokenizer or --model, not both", errUsage)
	}
	tk, err := openTokenizer(*tokPath)
	if err != nil {
		return err
	}
	in, err := openInput(*file)
	if err != nil {
		return err
	}
	defer in.Close()
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	if !*jsonl {
		data, err := io.ReadAll(in)
		if err != nil {
			return err
		}
		return writeJSONLine(w, nonNil(tk.Encode(string(data), !*noSpecial)))
	}
	return scanLines(in, func(n int, line string) error {
		var s string
		if err := json.Unmarshal([]byte(line), &s); err != nil {
			return fmt.Errorf("line %d: not a JSON string: %v", n, err)
		}
		return writeJSONLine(w, nonNil(tk.Encode(s, !*noSpecial)))
	})
}

func nonNil(ids []int) []int {
	if ids == nil {
		return []int{}
	}
	return ids
}

func runDetokenize(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("detokenize", "--tokenizer FILE|--model F.gguf [--skip-special] [--file PATH] [--jsonl]", `
Reads a JSON array of token ids from standard input (or --file) and prints
their text. With --jsonl each input line is a JSON array of ids and each
output line the JSON string of its text. Ids outside the vocabulary are an
error.`, stderr)
	tokPath := fs.String("tokenizer", "", "tokenizer.json, a folder holding one, or a .gguf file (default: the embedded demo model's)")
	modelPath := fs.String("model", "", "the same as --tokenizer: a model folder or .gguf file whose tokenizer to use")
	skip := fs.Bool("skip-special", false, "leave out special tokens")
	file := fs.String("file", "", "read the ids from this file instead of standard input")
	jsonl := fs.Bool("jsonl", false, "one JSON array per input line, one JSON string per output line")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("%w: unexpected argument %q", errUsage, fs.Arg(0))
	}
	if *tokPath == "" {
		*tokPath = *modelPath
	} else if *modelPath != "" {
		return fmt.Errorf("%w: give --tokenizer or --model, not both", errUsage)
	}
	tk, err := openTokenizer(*tokPath)
	if err != nil {
		return err
	}
	in, err := openInput(*file)
	if err != nil {
		return err
	}
	defer in.Close()
	parse := func(data []byte) ([]int, error) {
		var ids []int
		if err := json.Unmarshal(data, &ids); err != nil {
			return nil, fmt.Errorf("not a JSON array of integers: %v", err)
		}
		for _, id := range ids {
			if _, ok := tk.IDToToken(id); !ok {
				return nil, fmt.Errorf("id %d is not in the vocabulary (size %d)", id, tk.VocabSize())
			}
		}
		return ids, nil
	}
	w := bufio.NewWriter(stdout)
	defer w.Flush()
	if !*jsonl {
		data, err := io.ReadAll(in)
		if err != nil {
			return err
		}
		ids, err := parse(data)
		if err != nil {
			return errors.New("input: " + err.Error())
		}
		_, err = io.WriteString(w, tk.Decode(ids, *skip))
		return err
	}
	return scanLines(in, func(n int, line string) error {
		ids, err := parse([]byte(line))
		if err != nil {
			return fmt.Errorf("line %d: %v", n, err)
		}
		return writeJSONLine(w, tk.Decode(ids, *skip))
	})
}
