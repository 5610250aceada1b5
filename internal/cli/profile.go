package cli

import (
	"fmt"
	"os"
	"runtime/pprof"

	"github.com/spf13/pflag"
)

// Profile is the hidden --cpu-profile flag both commands take: a CPU
// profile (pprof) of the whole command, for measuring before optimising.
// For cofferd serve it covers the server's life, up to a graceful stop.
type Profile struct {
	path string
	file *os.File
}

// AddFlag registers --cpu-profile, hidden from help.
func (p *Profile) AddFlag(fs *pflag.FlagSet) {
	fs.StringVar(&p.path, "cpu-profile", "", "write a CPU profile (pprof) to this file, and the allocations to FILE.heap")
	_ = fs.MarkHidden("cpu-profile")
}

// Start begins profiling when the flag was given.
func (p *Profile) Start() error {
	if p.path == "" {
		return nil
	}
	f, err := os.Create(p.path)
	if err != nil {
		return fmt.Errorf("--cpu-profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return fmt.Errorf("--cpu-profile: %w", err)
	}
	p.file = f
	return nil
}

// Stop ends a profile Start began and writes the allocation profile beside
// it; without one it does nothing.
func (p *Profile) Stop() {
	if p.file == nil {
		return
	}
	pprof.StopCPUProfile()
	p.file.Close()
	p.file = nil
	if f, err := os.Create(p.path + ".heap"); err == nil {
		_ = pprof.Lookup("allocs").WriteTo(f, 0)
		f.Close()
	}
}
