module github.com/jamba-go/jamba/kernels/_blasbench

go 1.26.0

require github.com/jamba-go/jamba v0.0.0

require golang.org/x/sys v0.50.0 // indirect

replace github.com/jamba-go/jamba => ../..
