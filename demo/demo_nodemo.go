//go:build nodemo

package demo

// File reports that the demo model is not in this build.
func File(name string) ([]byte, bool) { return nil, false }
