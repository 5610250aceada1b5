package repo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/restic/chunker"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/index"
	"github.com/cofferhq/coffer/internal/manifest"
	"github.com/cofferhq/coffer/internal/pack"
	"github.com/cofferhq/coffer/internal/store"
)

// FormatVersion is the repository format this code reads and writes.
const FormatVersion = 1

// Object name prefixes.
const (
	ConfigName      = "config"
	KeysPrefix      = "keys/"
	DataPrefix      = "data/"
	IndexPrefix     = "index/"
	SnapshotsPrefix = "snapshots/"
)

// Errors the command line maps to exit codes.
var (
	// ErrNoRepository: there is no repository at the location.
	ErrNoRepository = errors.New("no Coffer repository here")
	// ErrExists: init found a repository already.
	ErrExists = errors.New("a Coffer repository already exists here")
)

// ChunkerParams are the content-defined chunking parameters.
type ChunkerParams struct {
	Min     uint `json:"min"`
	AvgBits int  `json:"avg_bits"` // a boundary is found after Min bytes with probability 2^-AvgBits per byte
	Max     uint `json:"max"`
}

// Config is the repository's parameters. It is stored in the clear (so a
// reader learns the format version before it has a key) and authenticated
// with a MAC keyed by the master key.
type Config struct {
	Version    int           `json:"version"`
	ID         string        `json:"id"`
	Created    time.Time     `json:"created"`
	Chunker    ChunkerParams `json:"chunker"`
	BlockSize  int           `json:"block_size"`
	RegionSize int64         `json:"region_size"`
	PackSize   int           `json:"pack_size"`
	Compress   string        `json:"compression"`
}

// DefaultConfig returns the parameters of a new repository: chunks of
// 192 KiB to 1 MiB averaging about 256 KiB, and 16 MiB packs. The average
// is small enough that a scattered 64 KiB write re-stores about a third of
// what restic's 1 MiB chunks do, and large enough to keep the index small
// and to compress well. The minimum is three quarters of the average: the
// chunker does not hash a chunk's first min bytes, so it hashes a quarter
// of the disk instead of half (restic's ratio), which halves its CPU time.
// Disk images rarely shift (blocks are rewritten in place), so the narrower
// spread of chunk sizes costs little dedup; on the benchmark's second night,
// which includes a 32 MiB insertion, it stored as much as 128 KiB minimums
// did, within the spread between random polynomials.
func DefaultConfig() Config {
	return Config{
		Version:    FormatVersion,
		Chunker:    ChunkerParams{Min: 192 << 10, AvgBits: 16, Max: 1 << 20},
		BlockSize:  manifest.BlockSize,
		RegionSize: manifest.RegionSize,
		PackSize:   16 << 20,
		Compress:   "zstd",
	}
}

func (c *Config) validate() error {
	switch {
	case c.Version != FormatVersion:
		return fmt.Errorf("repository format version %d is not supported by this coffer (it reads version %d); use a coffer release that does", c.Version, FormatVersion)
	case len(c.ID) != 32:
		return fmt.Errorf("config: repository ID %q malformed", c.ID)
	case c.Chunker.Min < 4<<10 || c.Chunker.Max > 8<<20 || c.Chunker.Min >= c.Chunker.Max || c.Chunker.AvgBits < 12 || c.Chunker.AvgBits > 23:
		return fmt.Errorf("config: chunker parameters %+v out of range", c.Chunker)
	case c.BlockSize != manifest.BlockSize || c.RegionSize != manifest.RegionSize:
		return fmt.Errorf("config: block size %d / region size %d not supported", c.BlockSize, c.RegionSize)
	case c.PackSize < 1<<20 || c.PackSize > 256<<20:
		return fmt.Errorf("config: pack size %d out of range 1 MiB..256 MiB", c.PackSize)
	case c.Compress != "zstd":
		return fmt.Errorf("config: unknown compression %q", c.Compress)
	}
	return nil
}

type configFile struct {
	Config json.RawMessage `json:"config"`
	MAC    string          `json:"mac"`
}

// Repo is an open repository.
type Repo struct {
	st    store.Store
	cfg   Config
	keys  *crypto.Keys
	pol   chunker.Pol
	Index *index.Index
	dec   *zstd.Decoder
	slot  string // the key slot the repository was opened with
	clock clock.Clock

	// orphansMu guards orphansDone: whether IndexOrphanPacks has run, so
	// that Locate lists the packs at most once per Repo.
	orphansMu   sync.Mutex
	orphansDone bool
	// indexSkipped names the index files LoadIndex skipped (damaged or
	// foreign).
	indexSkipped []string
	// mapPacks, if set, remembers the packs of region maps for receipts.
	mapPacks *MapPackCache
	// receiptSeed, if set, names the seed a new receipt waits on
	// (SetReceiptSeed).
	receiptSeed func(packs []pack.ID) string
}

// SetClock replaces the wall clock the repository reads the time from
// (the time of new key slots), for tests.
func (r *Repo) SetClock(c clock.Clock) { r.clock = clock.Or(c) }

// OpenedSlot names the key slot that opened the repository: the one the
// passphrase or kept key came from, or the one Init made.
func (r *Repo) OpenedSlot() string { return r.slot }

// Store returns the underlying store.
func (r *Repo) Store() store.Store { return r.st }

// Config returns the repository parameters.
func (r *Repo) Config() Config { return r.cfg }

// Keys returns the working keys.
func (r *Repo) Keys() *crypto.Keys { return r.keys }

// Polynomial returns the secret chunker polynomial.
func (r *Repo) Polynomial() chunker.Pol { return r.pol }

// Init creates a repository in an empty store and returns it open.
func Init(ctx context.Context, st store.Store, passphrase []byte, cfg Config) (*Repo, error) {
	if _, err := st.Stat(ctx, ConfigName); err == nil {
		return nil, fmt.Errorf("%s: %w", st.Location(), ErrExists)
	} else if !errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%s: checking for an existing repository: %w", st.Location(), err)
	}
	var rid [16]byte
	if _, err := rand.Read(rid[:]); err != nil {
		return nil, err
	}
	cfg.ID = hex.EncodeToString(rid[:])
	if cfg.Created.IsZero() {
		cfg.Created = clock.Real.Now().UTC()
	}
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	mk, err := crypto.NewMasterKey()
	if err != nil {
		return nil, err
	}
	r, err := newRepo(st, cfg, mk)
	if err != nil {
		return nil, err
	}
	// The key slot goes first: a config without a key would be a repository
	// nobody can open, while a lone key slot is harmless.
	if r.slot, err = r.AddPassphraseSlot(ctx, passphrase); err != nil {
		return nil, err
	}
	body, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cf, err := json.Marshal(configFile{Config: body, MAC: hex.EncodeToString(r.keys.ConfigMAC(body))})
	if err != nil {
		return nil, err
	}
	if err := st.Put(ctx, ConfigName, strings.NewReader(string(cf)), int64(len(cf))); err != nil {
		if errors.Is(err, store.ErrExists) {
			return nil, fmt.Errorf("%s: %w", st.Location(), ErrExists)
		}
		return nil, fmt.Errorf("writing the repository config: %w", err)
	}
	return r, nil
}

func newRepo(st store.Store, cfg Config, mk *crypto.MasterKey) (*Repo, error) {
	keys, err := crypto.Derive(mk)
	if err != nil {
		return nil, err
	}
	pol, err := keys.Polynomial()
	if err != nil {
		return nil, fmt.Errorf("deriving the chunker polynomial: %w", err)
	}
	dec, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(64<<20))
	if err != nil {
		return nil, err
	}
	return &Repo{st: st, cfg: cfg, keys: keys, pol: pol, Index: index.New(), dec: dec, clock: clock.Real}, nil
}

// ReadConfig reads and parses the config without a key; the MAC is checked
// by Open. It returns ErrNoRepository when there is none.
func ReadConfig(ctx context.Context, st store.Store) (Config, []byte, []byte, error) {
	raw, err := store.ReadAll(ctx, st, ConfigName)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) {
			return Config{}, nil, nil, fmt.Errorf("%s: %w (run coffer init first, or check --repo)", st.Location(), ErrNoRepository)
		}
		return Config{}, nil, nil, fmt.Errorf("reading the repository config: %w", err)
	}
	return ParseConfig(raw)
}

// ParseConfig parses the config object; it returns the body and MAC to check.
func ParseConfig(raw []byte) (Config, []byte, []byte, error) {
	var cf configFile
	if err := json.Unmarshal(raw, &cf); err != nil {
		return Config{}, nil, nil, fmt.Errorf("config object is damaged (not valid JSON: %v); restore it from another copy of the repository", err)
	}
	mac, err := hex.DecodeString(cf.MAC)
	if err != nil || len(mac) != 32 {
		return Config{}, nil, nil, fmt.Errorf("config object is damaged: bad MAC field")
	}
	var cfg Config
	if err := json.Unmarshal(cf.Config, &cfg); err != nil {
		return Config{}, nil, nil, fmt.Errorf("config object is damaged (%v)", err)
	}
	if err := cfg.validate(); err != nil {
		return Config{}, nil, nil, err
	}
	return cfg, cf.Config, mac, nil
}

// contentName returns prefix + hex SHA-256 of b.
func contentName(prefix string, b []byte) string {
	sum := sha256.Sum256(b)
	return prefix + hex.EncodeToString(sum[:])
}

func checkContentName(name, prefix string, b []byte) error {
	if want := contentName(prefix, b); want != name {
		return fmt.Errorf("%s: content does not match its name (SHA-256 is %s): the object is damaged", name, strings.TrimPrefix(want, prefix))
	}
	return nil
}

// putContentNamed stores b under prefix + SHA-256(b). An object that already
// exists under that name holds the same bytes, so ErrExists is success.
func (r *Repo) putContentNamed(ctx context.Context, prefix string, b []byte) (string, error) {
	name := contentName(prefix, b)
	err := r.st.Put(ctx, name, store.Bytes(b), int64(len(b)))
	if errors.Is(err, store.ErrExists) {
		err = nil
	}
	return name, err
}

// SaveSealed seals plaintext, stores it content-named under prefix, and
// returns the object name.
func (r *Repo) SaveSealed(ctx context.Context, prefix string, plaintext, ad []byte) (string, error) {
	return r.putContentNamed(ctx, prefix, r.keys.Data().Seal(nil, plaintext, ad))
}

// LoadSealed reads a content-named sealed object, checks its name, and
// opens it. An object whose name Coffer never gives, or whose bytes match
// its name but do not open with the key, is a ForeignError (junk); one
// whose bytes do not match its name is damaged.
func (r *Repo) LoadSealed(ctx context.Context, name, prefix string, ad []byte) ([]byte, error) {
	if !isContentName(name, prefix) {
		return nil, &ForeignError{Name: name, Reason: "Coffer never gives an object that name"}
	}
	raw, err := store.ReadAll(ctx, r.st, name)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", name, err)
	}
	if err := checkContentName(name, prefix, raw); err != nil {
		return nil, err
	}
	plain, err := r.keys.Data().Open(nil, raw, ad, name)
	if err != nil {
		return nil, &ForeignError{Name: name, Reason: reasonKey, Err: err}
	}
	return plain, nil
}

// PackName returns the object name of a pack.
func PackName(id pack.ID) string {
	s := id.String()
	return DataPrefix + s[:2] + "/" + s
}

// ParsePackName returns the ID of a pack object name.
func ParsePackName(name string) (pack.ID, error) {
	rest, ok := strings.CutPrefix(name, DataPrefix)
	if !ok || len(rest) != 67 || rest[2] != '/' || rest[:2] != rest[3:5] {
		return pack.ID{}, fmt.Errorf("%s is not a pack name", name)
	}
	return pack.ParseID(rest[3:])
}

// SavePack stores a finished pack.
func (r *Repo) SavePack(ctx context.Context, id pack.ID, b []byte) error {
	err := r.st.Put(ctx, PackName(id), store.Bytes(b), int64(len(b)))
	if errors.Is(err, store.ErrExists) {
		return nil
	}
	return err
}

// SavePackDeferred stores a finished pack's bytes and returns at once when
// the store can defer durability (a local directory): b may be reused as
// soon as it returns, and the pack is stored, durably, when commit returns
// nil. Index the pack only after that.
func (r *Repo) SavePackDeferred(ctx context.Context, id pack.ID, b []byte) (commit func(context.Context) error, err error) {
	c, err := store.PutDeferred(ctx, r.st, PackName(id), store.Bytes(b), int64(len(b)))
	if errors.Is(err, store.ErrExists) {
		return func(context.Context) error { return nil }, nil
	}
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error {
		if err := c(ctx); err != nil && !errors.Is(err, store.ErrExists) {
			return err
		}
		return nil
	}, nil
}

// ReadPackHeader reads and authenticates the header of a stored pack of the
// given size.
func (r *Repo) ReadPackHeader(ctx context.Context, id pack.ID, size int64) ([]pack.Entry, error) {
	name := PackName(id)
	if size < pack.TrailerSize {
		return nil, fmt.Errorf("%s: %d bytes is too short to be a pack: %w: %w", name, size, errUnauthenticated, pack.ErrFormat)
	}
	// Read the last 64 KiB at once: it usually holds the whole header.
	tailLen := min(size, 64<<10)
	tail, err := store.ReadRange(ctx, r.st, name, size-tailLen, tailLen)
	if err != nil {
		return nil, err
	}
	hl, err := pack.ParseTrailer(tail[len(tail)-pack.TrailerSize:], size)
	if err != nil {
		return nil, fmt.Errorf("%s: %w: %w", name, errUnauthenticated, err)
	}
	var sealed []byte
	if hl+pack.TrailerSize <= tailLen {
		sealed = tail[tailLen-pack.TrailerSize-hl : tailLen-pack.TrailerSize]
	} else if sealed, err = store.ReadRange(ctx, r.st, name, size-pack.TrailerSize-hl, hl); err != nil {
		return nil, err
	}
	return pack.OpenHeader(r.keys.Data(), sealed, size, name)
}

// OpenBlob authenticates and decrypts one sealed blob, decompresses it, and
// checks that its plaintext hashes to its ID. dst is reused when large enough;
// sealed is left as it was.
func (r *Repo) OpenBlob(h *crypto.IDHasher, typ, flags uint8, id crypto.ID, sealed, dst []byte, where string) ([]byte, error) {
	plain, err := r.keys.Data().Open(dst[:0], sealed, pack.BlobAD(typ, id), where)
	if err != nil {
		return nil, err
	}
	return r.finishBlob(h, flags, id, plain, &BlobBuffers{}, where)
}

// BlobBuffers are scratch space that OpenBlobInPlace reuses from call to
// call, so a restore does not allocate per chunk. Not safe for concurrent
// use.
type BlobBuffers struct {
	raw []byte
}

// OpenBlobInPlace is OpenBlob for the restore's hot path: it decrypts in
// place, overwriting sealed, and decompresses into buf. The result is valid
// until the next call with the same buffers or until sealed is reused. A nil
// h skips the keyed-hash check of the plaintext: only for callers that verify
// the plaintext another way (restore compares every written block with its
// recorded hash); the AEAD still authenticates the blob and binds it to its
// type and ID.
func (r *Repo) OpenBlobInPlace(h *crypto.IDHasher, typ, flags uint8, id crypto.ID, sealed []byte, buf *BlobBuffers, where string) ([]byte, error) {
	plain, err := r.keys.Data().OpenInPlace(sealed, pack.BlobAD(typ, id), where)
	if err != nil {
		return nil, err
	}
	return r.finishBlob(h, flags, id, plain, buf, where)
}

// finishBlob decompresses an opened blob's plaintext when its flags say it
// is compressed, and checks it against id when h is given.
func (r *Repo) finishBlob(h *crypto.IDHasher, flags uint8, id crypto.ID, plain []byte, buf *BlobBuffers, where string) ([]byte, error) {
	if flags&pack.FlagZstd != 0 {
		out, err := r.dec.DecodeAll(plain, buf.raw[:0])
		if err != nil {
			return nil, fmt.Errorf("%s: decompressing: %v: %w", where, err, pack.ErrFormat)
		}
		buf.raw = out[:0]
		plain = out
	}
	if h != nil {
		if got := h.Sum(plain); got != id {
			return nil, fmt.Errorf("%s: plaintext hashes to %s, not %s: %w", where, got, id, crypto.ErrAuth)
		}
	}
	return plain, nil
}

// LoadBlob reads one blob by ID through the index.
func (r *Repo) LoadBlob(ctx context.Context, id crypto.ID) ([]byte, error) {
	loc, err := r.Locate(ctx, id)
	if err != nil {
		return nil, err
	}
	sealed, err := store.ReadRange(ctx, r.st, PackName(loc.Pack), int64(loc.Offset), int64(loc.Length))
	if err != nil {
		return nil, fmt.Errorf("reading blob %s: %w", id, err)
	}
	return r.OpenBlob(r.keys.NewIDHasher(), loc.Type, loc.Flags, id, sealed, nil, blobWhere(id, loc))
}

// Locate looks a blob up in the index. A blob that is not there may be in a
// pack that no intact index file lists (a damaged index file was skipped
// when loading, or a backup was killed before writing its index): on the
// first miss, Locate indexes such packs from their headers
// (IndexOrphanPacks, in memory only) and looks again. Readers thus list the
// repository's packs only when an index falls short, not on every run: a
// large tenant has hundreds of thousands of packs. The error says what to
// do when the blob is nowhere.
func (r *Repo) Locate(ctx context.Context, id crypto.ID) (index.Location, error) {
	if loc, ok := r.Index.Lookup(id); ok {
		return loc, nil
	}
	if err := r.indexOrphansOnce(ctx); err != nil {
		return index.Location{}, fmt.Errorf("looking for blob %s outside the index: %w", id, err)
	}
	loc, ok := r.Index.Lookup(id)
	if !ok {
		return loc, fmt.Errorf("blob %s is not in the index: the repository is missing data (run coffer check)", id)
	}
	return loc, nil
}

// indexOrphansOnce runs IndexOrphanPacks (without saving) unless it has
// run on this Repo already.
func (r *Repo) indexOrphansOnce(ctx context.Context) error {
	r.orphansMu.Lock()
	defer r.orphansMu.Unlock()
	if r.orphansDone {
		return nil
	}
	_, err := r.indexOrphans(ctx, false)
	return err
}

// blobWhere names a blob and its pack in errors.
func blobWhere(id crypto.ID, loc index.Location) string {
	return fmt.Sprintf("blob %s in pack %s", id, PackName(loc.Pack))
}
