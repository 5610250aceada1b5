package repo

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/fsx"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
)

// MapPackCache remembers, per region map, the packs its chunks are in, so
// a receipt does not read every region map of every disk each night (a
// changed-block night reuses almost all of them). It lives in the agent's
// cache directory; an entry is used only while every pack it names is in
// the index (a pack the vault's collector marked is dropped from the index,
// so its maps are read again). Safe for concurrent use.
type MapPackCache struct {
	path    string
	mu      sync.Mutex
	m       map[crypto.ID][]pack.ID
	touched map[crypto.ID]bool
	// noted are the chunks of region maps this process wrote, within
	// notedBudget IDs: their packs are looked up in the index instead of
	// reading the maps back.
	noted  map[crypto.ID][]crypto.ID
	nNoted int
}

// notedBudget bounds the chunk IDs noted (32 bytes each: 64 MiB), so a
// first backup of a large disk reads its maps back instead.
const notedBudget = 2 << 20

const mapPackMagic = "CMP1"

// OpenMapPackCache loads the cache at path; a missing or unreadable file
// is an empty cache (it is only ever a shortcut).
func OpenMapPackCache(path string) *MapPackCache {
	c := &MapPackCache{path: path, m: map[crypto.ID][]pack.ID{}, touched: map[crypto.ID]bool{}, noted: map[crypto.ID][]crypto.ID{}}
	f, err := os.Open(path)
	if err != nil {
		return c
	}
	defer f.Close()
	if m, err := readMapPacks(bufio.NewReader(f)); err == nil {
		c.m = m
	}
	return c
}

func readMapPacks(r io.Reader) (map[crypto.ID][]pack.ID, error) {
	var head [8]byte
	if _, err := io.ReadFull(r, head[:]); err != nil || string(head[:4]) != mapPackMagic {
		return nil, errors.New("not a map pack cache")
	}
	n := binary.LittleEndian.Uint32(head[4:])
	m := make(map[crypto.ID][]pack.ID, min(n, 1<<20))
	for range n {
		var id crypto.ID
		var cnt [2]byte
		if _, err := io.ReadFull(r, id[:]); err != nil {
			return nil, err
		}
		if _, err := io.ReadFull(r, cnt[:]); err != nil {
			return nil, err
		}
		packs := make([]pack.ID, binary.LittleEndian.Uint16(cnt[:]))
		for i := range packs {
			if _, err := io.ReadFull(r, packs[i][:]); err != nil {
				return nil, err
			}
		}
		m[id] = packs
	}
	return m, nil
}

// get returns the packs of map id if every one is still indexed.
func (c *MapPackCache) get(id crypto.ID, indexed func(pack.ID) bool) ([]pack.ID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	packs, ok := c.m[id]
	if !ok {
		return nil, false
	}
	for _, p := range packs {
		if !indexed(p) {
			delete(c.m, id)
			return nil, false
		}
	}
	c.touched[id] = true
	return packs, true
}

// Note records the chunks of a region map this process stored.
func (c *MapPackCache) Note(id crypto.ID, extents []manifest.Extent) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.noted[id]; ok || c.nNoted+len(extents) > notedBudget {
		return
	}
	ids := make([]crypto.ID, len(extents))
	for i, e := range extents {
		ids[i] = e.ID
	}
	c.noted[id] = ids
	c.nNoted += len(ids)
}

// notedChunks returns the chunks noted for map id.
func (c *MapPackCache) notedChunks(id crypto.ID) ([]crypto.ID, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids, ok := c.noted[id]
	return ids, ok
}

func (c *MapPackCache) put(id crypto.ID, packs []pack.ID) {
	if len(packs) > 0xffff {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[id] = packs
	c.touched[id] = true
}

// Save writes the entries this process used (older ones go), atomically.
func (c *MapPackCache) Save() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	var buf bytes.Buffer
	w := bufio.NewWriter(&buf)
	var head [8]byte
	copy(head[:], mapPackMagic)
	binary.LittleEndian.PutUint32(head[4:], uint32(len(c.touched)))
	w.Write(head[:])
	for id := range c.touched {
		packs := c.m[id]
		w.Write(id[:])
		w.Write(binary.LittleEndian.AppendUint16(nil, uint16(len(packs))))
		for _, p := range packs {
			w.Write(p[:])
		}
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return fsx.WriteFileAtomic(filepath.Dir(c.path), filepath.Base(c.path), buf.Bytes())
}

// SetMapPackCache makes SnapshotPacks use c.
func (r *Repo) SetMapPackCache(c *MapPackCache) { r.mapPacks = c }
