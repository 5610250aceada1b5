package store

import (
	"errors"
	"testing"
)

// TestSourceReaderReleased checks that once a put has returned, a late read
// of the request body (as Go's HTTP transport may do) never touches the
// caller's buffer again.
func TestSourceReaderReleased(t *testing.T) {
	buf := Bytes("pack bytes")
	src := &PutSource{r: buf, size: int64(len(buf))}
	p := make([]byte, 4)
	if n, err := src.ReadAt(p, 0); n != 4 || err != nil || string(p) != "pack" {
		t.Fatalf("read before finish: %d %v %q", n, err, p)
	}
	src.Finish()
	if n, err := src.ReadAt(p, 5); n != 0 || !errors.Is(err, errSourceReleased) {
		t.Fatalf("read after finish: %d, %v; want 0, errSourceReleased", n, err)
	}
}
