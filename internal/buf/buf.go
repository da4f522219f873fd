// Package buf holds the scratch-buffer helper of the forward and backward
// passes, which reuse their buffers from call to call so that the decode
// loop does not allocate.
package buf

// Grow returns (*b)[:n], first replacing *b with a new slice when its
// capacity is less than n. The contents are not cleared.
func Grow[T any](b *[]T, n int) []T {
	if cap(*b) < n {
		*b = make([]T, n)
	}
	*b = (*b)[:n]
	return *b
}
