package parity

import (
	"context"
	"io"
	"math/rand/v2"
	"testing"
)

// benchSeed is 64 files of 4 MiB (256 MiB) with parity for any 5%.
func benchSeed(b *testing.B) (*testSeed, int64) {
	b.Helper()
	sizes := equalSizes(64, 4<<20)
	l, err := Plan(sizes, 0.05)
	if err != nil {
		b.Fatal(err)
	}
	return newTestSeed(b, sizes, l, rand.New(rand.NewPCG(18, 18)), Options{}), 64 * 4 << 20
}

func BenchmarkEncode(b *testing.B) {
	ts, total := benchSeed(b)
	discard := func(int) (io.WriterAt, error) { return discardWriter{}, nil }
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		if err := Encode(context.Background(), ts.l, ts.sizes, ts.open(nil), discard, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkRepair rebuilds as many 4 MiB files as there are parity files;
// its MB/s count the seed's data (what a repair reads to rebuild them).
func BenchmarkRepair(b *testing.B) {
	ts, total := benchSeed(b)
	damaged := make([]int, ts.l.ParityShards)
	for i := range damaged {
		damaged[i] = 7 * i
	}
	discard := func(int) (io.WriterAt, error) { return discardWriter{}, nil }
	b.SetBytes(total)
	b.ResetTimer()
	for b.Loop() {
		if err := Repair(context.Background(), ts.l, ts.sizes, damaged, ts.open(damaged), discard, Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

type discardWriter struct{}

func (discardWriter) WriteAt(p []byte, _ int64) (int, error) { return len(p), nil }
