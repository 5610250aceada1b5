package vault

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"testing"
	"testing/iotest"
)

func TestVerifyReader(t *testing.T) {
	data := randBytes(100000)
	sum := sha256.Sum256(data)
	// Good body, read in small pieces: every byte arrives, then EOF.
	vr := newVerifyReader(iotest.HalfReader(bytes.NewReader(data)), int64(len(data)), sum[:])
	got, err := io.ReadAll(vr)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("good body: %v, %d bytes", err, len(got))
	}
	// Wrong bytes: the final read fails, so the consumer never sees all of them.
	bad := bytes.Clone(data)
	bad[len(bad)-1] ^= 1
	vr = newVerifyReader(bytes.NewReader(bad), int64(len(bad)), sum[:])
	got, err = io.ReadAll(vr)
	if !errors.Is(err, errDigestMismatch) || len(got) >= len(data) {
		t.Fatalf("bad body: %v after %d bytes", err, len(got))
	}
	// Short body.
	vr = newVerifyReader(bytes.NewReader(data[:10]), int64(len(data)), sum[:])
	if _, err = io.ReadAll(vr); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("short body: %v", err)
	}
	// Extra bytes after size are never read.
	vr = newVerifyReader(bytes.NewReader(append(bytes.Clone(data), 1, 2, 3)), int64(len(data)), sum[:])
	if got, err = io.ReadAll(vr); err != nil || len(got) != len(data) {
		t.Fatalf("long body: %v, %d", err, len(got))
	}
	// Not content-named: no check.
	vr = newVerifyReader(bytes.NewReader(bad), int64(len(bad)), nil)
	if _, err = io.ReadAll(vr); err != nil {
		t.Fatal(err)
	}
}

func TestSeqReaderAt(t *testing.T) {
	data := randBytes(1000)
	s := &seqReaderAt{r: bytes.NewReader(data), size: int64(len(data))}
	sr := io.NewSectionReader(s, 0, int64(len(data)))
	got, err := io.ReadAll(sr)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("in order: %v", err)
	}
	// A second pass (a retry) is refused.
	if _, err := s.ReadAt(make([]byte, 10), 0); !errors.Is(err, errNotSequential) {
		t.Fatalf("re-read: %v", err)
	}
	s = &seqReaderAt{r: bytes.NewReader(data), size: int64(len(data))}
	if _, err := s.ReadAt(make([]byte, 10), 5); !errors.Is(err, errNotSequential) {
		t.Fatalf("skip ahead: %v", err)
	}
	// A read past the end returns what exists and io.EOF.
	s = &seqReaderAt{r: bytes.NewReader(data), size: int64(len(data))}
	if n, err := s.ReadAt(make([]byte, 2000), 0); n != 1000 || err != io.EOF {
		t.Fatalf("past end: %d %v", n, err)
	}
}
