package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sort"
)

// Identity is a fingerprint of the model: a sha256 of its config and of
// every weight tensor's name, dtype, shape and place in its file (the
// safetensors headers). Saved state (a chat session) records it, so that
// state made by another model, or by other weights of the same shape, is
// refused instead of silently continued. It does not read the weights
// themselves: rewriting a file's bytes in place keeps the identity.
func (m *Model) Identity() string {
	h := sha256.New()
	cfg, _ := json.Marshal(m.Config)
	fmt.Fprintf(h, "config %d\n", len(cfg))
	h.Write(cfg)
	if m.set != nil {
		names := m.set.Names()
		sort.Strings(names)
		for _, n := range names {
			info, _ := m.set.Info(n)
			fmt.Fprintf(h, "\n%s %s %v %d %d", n, info.DType, info.Shape, info.Begin, info.End)
		}
	}
	if m.identityExtra != "" {
		fmt.Fprintf(h, "\nmerged %s", m.identityExtra)
	}
	return hex.EncodeToString(h.Sum(nil))
}
