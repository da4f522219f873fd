// Command vulncheck reads govulncheck's JSON output (-format json) on
// standard input and fails when the code calls a vulnerable function of a
// module that go.mod requires: those are fixed by upgrading the module.
// Findings in the standard library are listed but do not fail: they are
// fixed by the Go release the machine runs, not by this repository.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
)

type frame struct {
	Module   string `json:"module"`
	Version  string `json:"version"`
	Package  string `json:"package"`
	Function string `json:"function"`
}

type message struct {
	Finding *struct {
		OSV          string  `json:"osv"`
		FixedVersion string  `json:"fixed_version"`
		Trace        []frame `json:"trace"`
	} `json:"finding"`
}

func main() {
	dec := json.NewDecoder(os.Stdin)
	modules, stdlib := map[string]bool{}, map[string]bool{}
	for {
		var m message
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			fmt.Fprintln(os.Stderr, "vulncheck: reading govulncheck's output:", err)
			os.Exit(2)
		}
		f := m.Finding
		if f == nil || len(f.Trace) == 0 || f.Trace[0].Function == "" {
			continue // not a function the code calls
		}
		t := f.Trace[0]
		line := fmt.Sprintf("%s: %s in %s@%s (fixed in %s)", f.OSV, t.Package, t.Module, t.Version, f.FixedVersion)
		if t.Module == "stdlib" {
			stdlib[line] = true
		} else {
			modules[line] = true
		}
	}
	print := func(title string, set map[string]bool) {
		lines := make([]string, 0, len(set))
		for l := range set {
			lines = append(lines, l)
		}
		sort.Strings(lines)
		if len(lines) > 0 {
			fmt.Println(title)
		}
		for _, l := range lines {
			fmt.Println("  " + l)
		}
	}
	print("called in the standard library (fixed by a newer Go release than this machine's):", stdlib)
	print("called in required modules (upgrade them):", modules)
	if len(modules) > 0 {
		os.Exit(1)
	}
	fmt.Println("vulncheck: no vulnerable function of a required module is called")
}
