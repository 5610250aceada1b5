package diskread

import (
	"math"
	"sync"

	"github.com/hashicorp/golang-lru/v2/simplelru"

	"github.com/cofferhq/coffer/crypto"
)

// chunkCache keeps decrypted chunk plaintexts, least recently used first
// out, bounded by their total size. Cached slices are never written to:
// readers copy out of them, and eviction only drops the reference.
type chunkCache struct {
	mu    sync.Mutex
	lru   *simplelru.LRU[crypto.ID, []byte]
	bytes int64
	limit int64
}

func newChunkCache(limit int64) *chunkCache {
	c := &chunkCache{limit: limit}
	// The entry count is unbounded here: size in bytes is the bound, kept
	// by add.
	c.lru, _ = simplelru.NewLRU[crypto.ID, []byte](math.MaxInt, func(_ crypto.ID, b []byte) {
		c.bytes -= int64(len(b))
	})
	return c
}

// get returns the plaintext of chunk id if it is cached.
func (c *chunkCache) get(id crypto.ID) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Get(id)
}

// add caches a chunk's plaintext, evicting the least recently used chunks
// to stay within the limit. A chunk larger than the whole cache is not kept.
func (c *chunkCache) add(id crypto.ID, plain []byte) {
	if int64(len(plain)) > c.limit {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lru.Contains(id) {
		return
	}
	c.lru.Add(id, plain)
	c.bytes += int64(len(plain))
	for c.bytes > c.limit {
		c.lru.RemoveOldest()
	}
}

// size returns the bytes cached and the number of chunks.
func (c *chunkCache) size() (int64, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes, c.lru.Len()
}
