package testfile

import (
	"bytes"
	"io"
	"os"
)

// Equal reports whether the files at a and b hold the same bytes; unlike
// the test helpers it returns errors, so goroutines and programs can use it.
func Equal(a, b string) (bool, error) {
	fa, err := os.Open(a)
	if err != nil {
		return false, err
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		return false, err
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, erra := io.ReadFull(fa, ba)
		nb, errb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false, nil
		}
		aEnd := erra == io.EOF || erra == io.ErrUnexpectedEOF
		bEnd := errb == io.EOF || errb == io.ErrUnexpectedEOF
		switch {
		case erra != nil && !aEnd:
			return false, erra
		case errb != nil && !bEnd:
			return false, errb
		case aEnd || bEnd:
			return aEnd == bEnd, nil
		}
	}
}
