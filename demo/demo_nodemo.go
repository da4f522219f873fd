//go:build nodemo

package demo

// Name is the name of the demo model, which this build (tag nodemo) leaves
// out: `jamba run` then needs --model.
const Name = "jamba-gostd-4m"

// File reports that the demo model is not in this build.
func File(name string) ([]byte, bool) { return nil, false }
