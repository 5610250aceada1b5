package nbd

import (
	"context"
	"crypto/tls"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
)

// holeExport is a memExport whose layout of data and holes it reports as
// an ExtentsExport; its holes read as zeros.
type holeExport struct {
	memExport
	layout      []Extent
	extentCalls atomic.Int64
	// extentsErr, when set, fails every Extents call.
	extentsErr error
	// extentsFn, when set, answers Extents instead of the layout.
	extentsFn func(off, length int64) []Extent
}

func (h *holeExport) Extents(_ context.Context, off, length int64) ([]Extent, error) {
	h.extentCalls.Add(1)
	if h.extentsErr != nil {
		return nil, h.extentsErr
	}
	if h.extentsFn != nil {
		return h.extentsFn(off, length), nil
	}
	var out []Extent
	pos := int64(0)
	for _, e := range h.layout {
		end := pos + e.Len
		if end > off && pos < off+length {
			start := max(pos, off)
			out = append(out, Extent{Len: end - start, Hole: e.Hole})
		}
		pos = end
	}
	return out, nil
}

// newHoleExport builds an export of the layout with random data in its data
// extents and zeros in its holes.
func newHoleExport(layout []Extent, seed uint64) *holeExport {
	var size int64
	for _, e := range layout {
		size += e.Len
	}
	data := randomBytes(int(size), seed)
	pos := int64(0)
	for _, e := range layout {
		if e.Hole {
			clear(data[pos : pos+e.Len])
		}
		pos += e.Len
	}
	return &holeExport{memExport: memExport{data: data}, layout: layout}
}

// testLayout has holes at the start, in the middle (unaligned) and at the
// end, around data extents of various sizes.
var testLayout = []Extent{
	{Len: 128 << 10, Hole: true},
	{Len: 1 << 20},
	{Len: 1<<20 + 4096, Hole: true},
	{Len: 64 << 10},
	{Len: 512 << 10, Hole: true},
	{Len: 3<<20 + 7*512},
	{Len: 256 << 10, Hole: true},
}

// fullServer serves the exports of m in full mode; other names fail to open.
func fullServer(t testing.TB, m map[string]ServerExport, conf *tls.Config) (*Server, Export) {
	t.Helper()
	s := &Server{
		Full:      true,
		TLSConfig: conf,
		Open: func(_ context.Context, name string) (ServerExport, error) {
			if e, ok := m[name]; ok {
				return e, nil
			}
			return nil, errors.New("no such export")
		},
		List: func(context.Context) ([]string, error) {
			names := make([]string, 0, len(m))
			for name := range m {
				names = append(names, name)
			}
			slices.Sort(names)
			return names, nil
		},
		Logf: t.Logf,
	}
	host, port := startServer(t, s)
	return s, Export{Address: host, Port: port}
}
