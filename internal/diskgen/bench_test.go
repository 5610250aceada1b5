package diskgen

import (
	"testing"
)

func BenchmarkFillText(b *testing.B) {
	p := make([]byte, RegionSize)
	b.SetBytes(RegionSize)
	for i := range b.N {
		fillText(p, uint64(i))
	}
}

func BenchmarkFillRandom(b *testing.B) {
	p := make([]byte, RegionSize)
	b.SetBytes(RegionSize)
	for i := range b.N {
		fillRegion(p, Random, 1, uint64(i))
	}
}
