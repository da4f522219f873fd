//go:build !((darwin || freebsd || linux || netbsd) && (amd64 || arm64))

package cuda

import (
	"errors"
	"runtime"
)

var errNoDlopen = errors.New("the CUDA backend is built for Linux on amd64 and arm64 only (this is " + runtime.GOOS + "/" + runtime.GOARCH + ")")

func dlopenFirst([]string) (uintptr, error)  { return 0, errNoDlopen }
func dlsym(uintptr, string) (uintptr, error) { return 0, errNoDlopen }
func bind(uintptr, any, string) error        { return errNoDlopen }

// callArgs is never reached: Open fails first.
func callArgs(uintptr, []uintptr) uintptr { panic(errNoDlopen) }
