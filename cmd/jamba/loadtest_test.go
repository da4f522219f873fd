package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestLoadtest runs jamba loadtest against jamba serve on the demo model:
// closed-loop levels complete every request with consistent statistics,
// and an open loop far above a one-slot, one-place queue server's capacity
// counts its 429s as rejections, not failures.
func TestLoadtest(t *testing.T) {
	url, _, _ := startServe(t, "--max-batch", "2")
	stdout, stderr, code := run(t, "loadtest", "--url", url, "--concurrency", "1,3", "--requests", "6",
		"--prompt-tokens", "16", "--max-tokens", "8", "--json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	if len(lines) != 2 {
		t.Fatalf("want one JSON line per level, got %q", stdout)
	}
	for i, line := range lines {
		var r loadReport
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatal(err)
		}
		want := []string{"1 clients", "3 clients"}[i]
		if r.Level != want || r.Requests != 6 || r.Completed != 6 || r.Failed != 0 || r.Rejected != 0 {
			t.Errorf("%s: %+v", want, r)
		}
		// 6 requests of 8 tokens within the level's time.
		if got := r.TokensPerS * r.Seconds; got < 47.9 || got > 48.1 {
			t.Errorf("%s: %.2f tokens counted, want 48", want, got)
		}
		for name, l := range map[string]latencyStats{"ttft": r.TTFT, "tpot": r.TPOT, "itl": r.ITL, "e2e": r.E2E} {
			if !(l.P50 > 0 && l.P50 <= l.P99 && l.Mean > 0) {
				t.Errorf("%s %s: %+v", want, name, l)
			}
		}
		if r.TTFT.P99 > r.E2E.P99 || r.TPOT.Mean > r.E2E.Mean {
			t.Errorf("%s: first token or per-token time beyond the whole request: %+v", want, r)
		}
	}

	small, _, _ := startServe(t, "--max-batch", "1", "--queue", "1")
	stdout, stderr, code = run(t, "loadtest", "--url", small, "--rate", "400", "--duration", "500ms",
		"--prompt-tokens", "16", "--max-tokens", "64", "--json")
	if code != 0 {
		t.Fatalf("open loop: exit %d: %s", code, stderr)
	}
	var r loadReport
	if err := json.Unmarshal([]byte(stdout), &r); err != nil {
		t.Fatal(err)
	}
	if r.Rejected == 0 || r.Completed == 0 || r.Failed != 0 || r.Requests != r.Completed+r.Rejected {
		t.Errorf("open loop over capacity: %+v", r)
	}

	if _, stderr, code := run(t, "loadtest", "--url", "http://127.0.0.1:1", "--concurrency", "1"); code == 0 || !strings.Contains(stderr, "is the server running?") {
		t.Errorf("no server: exit %d, %q", code, stderr)
	}
	if _, stderr, code := run(t, "loadtest", "--concurrency", "0"); code == 0 || !strings.Contains(stderr, "--concurrency") {
		t.Errorf("--concurrency 0: exit %d, %q", code, stderr)
	}
}
