//go:build race

package server

// raceEnabled is true under the race detector, which slows the model.
const raceEnabled = true
