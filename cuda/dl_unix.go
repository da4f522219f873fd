//go:build (darwin || freebsd || linux || netbsd) && (amd64 || arm64)

package cuda

import "github.com/ebitengine/purego"

// dlopenFirst opens the first library of names that loads.
func dlopenFirst(names []string) (uintptr, error) {
	var first error
	for _, n := range names {
		h, err := purego.Dlopen(n, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			return h, nil
		}
		if first == nil {
			first = err
		}
	}
	return 0, first
}

func dlsym(lib uintptr, name string) (uintptr, error) { return purego.Dlsym(lib, name) }

// bind looks name up in lib and makes fn (a pointer to a func variable) call it.
func bind(lib uintptr, fn any, name string) error {
	sym, err := purego.Dlsym(lib, name)
	if err != nil {
		return err
	}
	purego.RegisterFunc(fn, sym)
	return nil
}

// callArgs calls the C function fn with the words of args (integers and
// pointers) as its arguments, without reflection. args is passed on as it
// is, so a slice of memory that already lives on the heap (Device.sys)
// costs no allocation, unlike a variadic call.
func callArgs(fn uintptr, args []uintptr) uintptr {
	r1, _, _ := purego.SyscallN(fn, args...)
	return r1
}
