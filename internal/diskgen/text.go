package diskgen

import (
	"encoding/binary"
	"math"
	"math/bits"
	"math/rand/v2"
)

const (
	vocabSize   = 8192
	zipfBits    = 16
	zipfEntries = 1 << zipfBits
	slotSize    = 16 // longest word (12 letters) and its space, padded
)

var (
	// wordSlots holds each word of a fixed vocabulary (the same for every
	// seed) followed by a space and zero padding, as two little-endian
	// words, so that writing a word is two 8-byte stores.
	wordSlots [vocabSize][2]uint64
	// wordLen is the length of each word plus its space.
	wordLen [vocabSize]uint8
	// zipf maps 16 random bits to a word index with a Zipf-like skew, so a
	// few words are frequent and most are rare, as in real text.
	zipf [zipfEntries]uint16
)

func init() {
	r := rand.New(rand.NewPCG(0x636f66666572, 0x766f636162))
	const letters = "etaoinshrdlcumwfgypbvkjxqz"
	for i := range wordSlots {
		n := 2 + r.IntN(7) + r.IntN(5)
		var slot [slotSize]byte
		for j := range n {
			// Squaring skews towards the frequent letters.
			f := r.Float64()
			slot[j] = letters[int(f*f*float64(len(letters)))]
		}
		slot[n] = ' '
		wordSlots[i][0] = binary.LittleEndian.Uint64(slot[:])
		wordSlots[i][1] = binary.LittleEndian.Uint64(slot[8:])
		wordLen[i] = uint8(n + 1)
	}
	// Cumulative Zipf weights with exponent zipfS over the vocabulary.
	const zipfS = 1.0
	var total float64
	cum := make([]float64, vocabSize)
	for i := range cum {
		total += 1 / math.Pow(float64(i+1), zipfS)
		cum[i] = total
	}
	w := 0
	for k := range zipf {
		x := (float64(k) + 0.5) / zipfEntries * total
		for cum[w] < x {
			w++
		}
		zipf[k] = uint16(w)
	}
}

// fillText fills p with lines of words drawn from the vocabulary.
func fillText(p []byte, seed uint64) {
	s := splitmix(seed)
	next := func() uint64 {
		s += 0xa0761d6478bd642f
		hi, lo := bits.Mul64(s, s^0xe7037ed1a0b428db)
		return hi ^ lo
	}
	n := 0
	lineEnd := 30 + int(next()%90)
	var v uint64
	left := 0
	for n < len(p) {
		if left == 0 {
			v, left = next(), 4 // four words from one draw
		}
		w := zipf[v&(zipfEntries-1)]
		v >>= zipfBits
		left--
		if n+slotSize <= len(p) {
			binary.LittleEndian.PutUint64(p[n:], wordSlots[w][0])
			binary.LittleEndian.PutUint64(p[n+8:], wordSlots[w][1])
		} else {
			var b [slotSize]byte
			binary.LittleEndian.PutUint64(b[:], wordSlots[w][0])
			binary.LittleEndian.PutUint64(b[8:], wordSlots[w][1])
			copy(p[n:], b[:wordLen[w]])
		}
		n += int(wordLen[w])
		if n >= lineEnd {
			if n <= len(p) {
				p[n-1] = '\n' // the word's trailing space
			}
			lineEnd = n + 30 + int(next()%90)
		}
	}
}
