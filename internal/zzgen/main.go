package main

import (
	"os"
	"strconv"

	"github.com/cofferhq/coffer/internal/diskgen"
)

func main() {
	n, _ := strconv.ParseInt(os.Args[2], 10, 64)
	if err := diskgen.Generate(os.Args[1], n, 1, diskgen.Options{}); err != nil {
		panic(err)
	}
}
