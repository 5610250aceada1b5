package cli

import (
	"fmt"
	"strings"
)

// EnvVar is one environment variable a command reads.
type EnvVar struct {
	Name string
	What string
}

// EnvHelp formats a command's table of environment variables for --help.
func EnvHelp(vars []EnvVar) string {
	var b strings.Builder
	b.WriteString("Environment:\n")
	for _, v := range vars {
		fmt.Fprintf(&b, "  %-24s %s\n", v.Name, v.What)
	}
	return b.String()
}
