module github.com/jamba-go/jamba

go 1.26
