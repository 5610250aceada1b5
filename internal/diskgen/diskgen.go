package diskgen

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"
	"math/rand/v2"
	"os"
	"runtime"
	"sync"
)

// RegionSize is the unit of an image's layout.
const RegionSize = 1 << 20

// Kind is what a region holds.
type Kind uint8

const (
	Zero   Kind = iota // all zeros, a hole in a sparse image
	Random             // incompressible bytes
	Text               // lines of words, compressible about 3-4x
)

func (k Kind) String() string {
	switch k {
	case Zero:
		return "zero"
	case Random:
		return "random"
	case Text:
		return "text"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Mix is the share of regions of each kind; the rest are Text.
type Mix struct {
	Zero   float64
	Random float64
}

// Reference is the benchmark's mix: half zeros, a fifth random, the rest text.
var Reference = Mix{Zero: 0.5, Random: 0.2}

// Options tune Generate.
type Options struct {
	// Mix is the share of each kind; nil means Reference.
	Mix *Mix
	// NonSparse writes zero regions as real zeros instead of leaving holes.
	NonSparse bool
}

// Layout returns the kind of each region of an image of the given size; the
// last region may be shorter than RegionSize. The counts are exact (rounded
// to whole regions) and the order is a seeded shuffle.
func Layout(size int64, seed uint64, mix Mix) []Kind {
	n := int((size + RegionSize - 1) / RegionSize)
	nz := int(mix.Zero*float64(n) + 0.5)
	nr := min(int(mix.Random*float64(n)+0.5), n-nz)
	kinds := make([]Kind, n)
	for i := range kinds {
		switch {
		case i < nz:
			kinds[i] = Zero
		case i < nz+nr:
			kinds[i] = Random
		default:
			kinds[i] = Text
		}
	}
	r := rand.New(rand.NewPCG(seed, 0x6c61796f7574))
	r.Shuffle(n, func(i, j int) { kinds[i], kinds[j] = kinds[j], kinds[i] })
	return kinds
}

// Generate writes an image of size bytes with the given seed to path,
// replacing any file there.
func Generate(path string, size int64, seed uint64, opt Options) error {
	mix := Reference
	if opt.Mix != nil {
		mix = *opt.Mix
	}
	if err := checkMix(mix); err != nil {
		return err
	}
	if size < 0 {
		return fmt.Errorf("diskgen: negative size %d", size)
	}
	return writeLayout(path, size, seed, Layout(size, seed, mix), opt.NonSparse)
}

// GenerateSparse writes a sparse image of size bytes holding about dataBytes
// of data (rounded to whole regions, text and random in the reference
// proportion) scattered over holes. It is meant for tests of hole handling.
func GenerateSparse(path string, size, dataBytes int64, seed uint64) error {
	if size < 0 || dataBytes < 0 || dataBytes > size {
		return fmt.Errorf("diskgen: need 0 <= dataBytes (%d) <= size (%d)", dataBytes, size)
	}
	n := (size + RegionSize - 1) / RegionSize
	data := float64((dataBytes+RegionSize/2)/RegionSize) / float64(max(n, 1))
	mix := Mix{Zero: 1 - data, Random: data * Reference.Random / (1 - Reference.Zero)}
	return writeLayout(path, size, seed, Layout(size, seed, mix), false)
}

func checkMix(m Mix) error {
	if m.Zero < 0 || m.Random < 0 || m.Zero+m.Random > 1+1e-9 {
		return fmt.Errorf("diskgen: invalid mix %+v", m)
	}
	return nil
}

func writeLayout(path string, size int64, seed uint64, kinds []Kind, nonSparse bool) (err error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	if err := f.Truncate(size); err != nil {
		return err
	}
	return parallelRegions(len(kinds), func(i int, buf []byte) error {
		off := int64(i) * RegionSize
		p := buf[:min(RegionSize, size-off)]
		if kinds[i] == Zero {
			if !nonSparse {
				return nil
			}
			clear(p)
		} else {
			fillRegion(p, kinds[i], seed, uint64(i))
		}
		_, err := f.WriteAt(p, off)
		return err
	})
}

// parallelRegions calls fn for regions 0..n-1 on GOMAXPROCS workers, each
// with its own RegionSize buffer, and returns the first error.
func parallelRegions(n int, fn func(i int, buf []byte) error) error {
	workers := min(runtime.GOMAXPROCS(0), max(n, 1))
	var (
		mu    sync.Mutex
		next  int
		first error
		wg    sync.WaitGroup
	)
	for range workers {
		wg.Go(func() {
			buf := make([]byte, RegionSize)
			for {
				mu.Lock()
				i := next
				next++
				stop := first != nil
				mu.Unlock()
				if i >= n || stop {
					return
				}
				if err := fn(i, buf); err != nil {
					mu.Lock()
					first = cmpErr(first, err)
					mu.Unlock()
					return
				}
			}
		})
	}
	wg.Wait()
	return first
}

func cmpErr(a, b error) error {
	if a != nil {
		return a
	}
	return b
}

// fillRegion fills p with data of kind k from the stream of (seed, domain, index).
func fillRegion(p []byte, k Kind, seed, index uint64) {
	switch k {
	case Random:
		fillRandom(p, seed, index)
	case Text:
		fillText(p, seed^splitmix(index^0x74657874))
	default:
		clear(p)
	}
}

// fillRandom fills p with incompressible bytes from wyrand, a fast
// non-cryptographic generator, seeded from (seed, index).
func fillRandom(p []byte, seed, index uint64) {
	s := splitmix(seed ^ splitmix(index^0x72616e646f6d))
	for len(p) >= 8 {
		s += 0xa0761d6478bd642f
		hi, lo := bits.Mul64(s, s^0xe7037ed1a0b428db)
		binary.LittleEndian.PutUint64(p, hi^lo)
		p = p[8:]
	}
	for i := range p {
		p[i] = byte(splitmix(s + uint64(i)))
	}
}

func splitmix(x uint64) uint64 {
	x += 0x9e3779b97f4a7c15
	x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
	x = (x ^ x>>27) * 0x94d049bb133111eb
	return x ^ x>>31
}

// isZero reports whether p is all zeros.
func isZero(p []byte) bool {
	for len(p) > 0 {
		n := min(len(p), len(zeros))
		if !bytes.Equal(p[:n], zeros[:n]) {
			return false
		}
		p = p[n:]
	}
	return true
}

var zeros = make([]byte, 64<<10)

var errShortCopy = errors.New("diskgen: source ended early")
