package kernels

import "testing"

// TestParallelFor: every item is visited once, in the chunks that
// ParallelChunks announces, for sizes around the chunk boundaries and
// thread counts of 1 to 3.
func TestParallelFor(t *testing.T) {
	defer SetThreads(Threads())
	for _, threads := range []int{1, 2, 3} {
		SetThreads(threads)
		for _, n := range []int{0, 1, 2, 5, 63, 64, 65, 1000} {
			for _, minChunk := range []int{0, 1, 7, 64} {
				chunks, step := ParallelChunks(n, minChunk)
				seen := make([]int32, n)
				got := make([][2]int, chunks)
				ParallelFor(n, minChunk, func(c, lo, hi int) {
					got[c] = [2]int{lo, hi}
					for i := lo; i < hi; i++ {
						seen[i]++
					}
				})
				for i, s := range seen {
					if s != 1 {
						t.Fatalf("threads %d, n %d, minChunk %d: item %d visited %d times", threads, n, minChunk, i, s)
					}
				}
				if chunks > threads {
					t.Errorf("threads %d, n %d: %d chunks", threads, n, chunks)
				}
				for c, r := range got {
					if r != [2]int{c * step, min((c+1)*step, n)} {
						t.Errorf("threads %d, n %d, minChunk %d: chunk %d is %v, step %d", threads, n, minChunk, c, r, step)
					}
				}
			}
		}
	}
}
