package kernels

//go:generate go run -C _asmgen . -out ../kernels_amd64.s -stubs ../kernels_amd64.go -pkg kernels
