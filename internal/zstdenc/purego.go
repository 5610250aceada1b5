//go:build !cgo

package zstdenc

import (
	"github.com/klauspost/compress/zstd"
)

// Impl names the encoder this build uses.
const Impl = "klauspost/compress (pure Go)"

// Encoder compresses one input at a time; it is not safe for concurrent use.
type Encoder struct {
	enc *zstd.Encoder
}

// New returns an encoder.
func New() *Encoder {
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(1), zstd.WithZeroFrames(true),
		zstd.WithWindowSize(1<<20), zstd.WithEncoderCRC(false))
	if err != nil {
		panic(err) // only on invalid options, which are constants here
	}
	return &Encoder{enc: enc}
}

// Encode compresses src into one zstd frame, reusing dst's memory when it is
// large enough, and returns the frame.
func (e *Encoder) Encode(dst, src []byte) ([]byte, error) {
	return e.enc.EncodeAll(src, dst[:0]), nil
}
