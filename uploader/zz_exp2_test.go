package uploader_test

import (
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime/pprof"
	"testing"
)

var profFile *os.File

func startProf(t *testing.T, p string) {
	profFile, _ = os.Create(p)
	pprof.StartCPUProfile(profFile)
}
func stopProf() {
	if profFile != nil {
		pprof.StopCPUProfile()
		profFile.Close()
	}
}
func randFill(b []byte, seed uint64) {
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), byte(seed >> 16), byte(seed >> 24)})
	r.Read(b)
}
func copyFile(t *testing.T, a, b string) {
	exec1(t, "cp", "--sparse=always", a, b)
}
func exec1(t *testing.T, name string, args ...string) {
	cmd := exec.Command(name, args...)
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		t.Fatal(err)
	}
}

var _ = io.EOF
