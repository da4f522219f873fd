package model

import "testing"

// TestDecodeAllocs checks that a decode step allocates nothing once the
// workspace and the cache have reached their size, with keys and values
// cached in float32 and in bfloat16.
func TestDecodeAllocs(t *testing.T) {
	for _, kv := range []string{"f32", "bf16"} {
		t.Run(kv, func(t *testing.T) { testDecodeAllocs(t, kv) })
	}
}

func testDecodeAllocs(t *testing.T, kv string) {
	m, _ := loadFixtureWith(t, "tiny-moe", Options{KVCache: kv})
	ws := m.NewWorkspace()
	st := m.NewCache(256)
	if err := ws.Forward([]SeqInput{{Tokens: []int{1, 5, 9, 13}, Cache: st}}); err != nil {
		t.Fatal(err)
	}
	in := []SeqInput{{Tokens: []int{7}, Cache: st}}
	ws.Forward(in) // warm the decode-sized buffers
	allocs := testing.AllocsPerRun(50, func() {
		if err := ws.Forward(in); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 0 {
		t.Errorf("decode step allocates %.1f times", allocs)
	}
}

func BenchmarkDecodeTinyMoE(b *testing.B) {
	m, _ := loadFixture(&testing.T{}, "tiny-moe")
	ws := m.NewWorkspace()
	st := m.NewCache(b.N + 8)
	ws.Forward([]SeqInput{{Tokens: []int{1, 5, 9, 13}, Cache: st}})
	in := []SeqInput{{Tokens: []int{7}, Cache: st}}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		ws.Forward(in)
	}
}
