package repo

import (
	"cmp"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/store"
	"github.com/cofferhq/coffer/internal/termtext"
)

// ErrKeyMismatch is returned (wrapped) by OpenWithKey when the key does not
// authenticate the repository's config: it belongs to another repository,
// or the config was changed.
var ErrKeyMismatch = errors.New("the key does not authenticate this repository's config")

// OpenOptions say how OpenWith unlocks a repository with a passphrase.
type OpenOptions struct {
	Passphrase []byte
	// Prefer names the key slot to try first: the one this agent made or
	// last opened. The others follow, cheapest KDF first.
	Prefer string
	// Limit bounds the argon2id cost of a slot that is tried; a slot over
	// it is skipped with a warning. The zero value is
	// crypto.DefaultKDFLimit.
	Limit crypto.KDFLimit
	// Warn receives warnings (a slot skipped); nil drops them.
	Warn func(string)
}

func (o *OpenOptions) warn(format string, a ...any) {
	if o.Warn != nil {
		o.Warn(fmt.Sprintf(format, a...))
	}
}

// SlotClaim is what a new key slot says about who wrote it. Nobody checks
// it: key list shows it as claimed.
type SlotClaim struct {
	Note       string
	Credential string // the vault credential id (never its secret)
}

// Open opens a repository with a passphrase.
func Open(ctx context.Context, st store.Store, passphrase []byte) (*Repo, error) {
	return OpenWith(ctx, st, OpenOptions{Passphrase: passphrase})
}

// OpenWith opens a repository with a passphrase: it tries the passphrase
// slots in order (Prefer first, then cheapest first), skips those over the
// KDF limit, and accepts a slot's key only if it authenticates the config
// (a slot that opens to another key belongs to another repository). A
// repository this process opened before with the same passphrase is opened
// again without the KDF, while the slot that opened it exists.
func OpenWith(ctx context.Context, st store.Store, o OpenOptions) (*Repo, error) {
	cfg, body, mac, err := ReadConfig(ctx, st)
	if err != nil {
		return nil, err
	}
	if r := reopen(ctx, st, cfg, body, mac, o.Passphrase); r != nil {
		return r, nil
	}
	r, err := openUnlocked(ctx, st, cfg, body, mac, o)
	if err != nil {
		return nil, err
	}
	remember(cfg.ID, o.Passphrase, r)
	return r, nil
}

// OpenWithKey opens a repository with a master key kept outside the
// repository (the agent's key cache), without any KDF. The key must
// authenticate the config, else the error wraps ErrKeyMismatch; slot names
// the slot the key came from, which must still exist (removing a slot thus
// also retires the keys cached from it).
func OpenWithKey(ctx context.Context, st store.Store, mk *crypto.MasterKey, slot string) (*Repo, error) {
	cfg, body, mac, err := ReadConfig(ctx, st)
	if err != nil {
		return nil, err
	}
	if !authenticates(mk, body, mac) {
		return nil, fmt.Errorf("repository %s: %w", cfg.ID, ErrKeyMismatch)
	}
	if _, err := st.Stat(ctx, slot); err != nil {
		return nil, fmt.Errorf("key slot %s the key came from: %w", slot, err)
	}
	r, err := newRepo(st, cfg, mk)
	if err != nil {
		return nil, err
	}
	r.slot = slot
	return r, nil
}

// authenticates reports whether mk is the key of the config whose body
// and MAC are given.
func authenticates(mk *crypto.MasterKey, body, mac []byte) bool {
	k, err := crypto.Derive(mk)
	return err == nil && k.CheckConfigMAC(body, mac)
}

// Unlock tries the passphrase on the passphrase slots in order: OpenOptions
// is the passphrase Unlocker.
func (o OpenOptions) Unlock(slots []SlotInfo, ours func(*crypto.MasterKey) bool) (*crypto.MasterKey, string, error) {
	limit := o.Limit
	if limit == (crypto.KDFLimit{}) {
		limit = crypto.DefaultKDFLimit
	}
	try, damaged := orderSlots(slots, o.Prefer)
	var foreign []string
	skipped := 0
	for _, s := range try {
		if err := limit.Check(*s.Slot.KDF); err != nil {
			skipped++
			o.warn("key slot %s (%s) was skipped: %v. If nobody here made it, remove it; through a vault, ask your provider: cofferd tenant remove-key <tenant> %s",
				s.Name, s.Claimed(), err, strings.TrimPrefix(s.Name, KeysPrefix))
			continue
		}
		mk, err := s.Slot.OpenWithPassphraseLimit(o.Passphrase, limit)
		if err != nil {
			continue
		}
		if !ours(mk) {
			foreign = append(foreign, s.Name)
			o.warn("key slot %s (%s) opens with this passphrase, but its key does not authenticate the repository's config: "+
				"it was passed over (it belongs to another repository, or the config was changed)", s.Name, s.Claimed())
			continue
		}
		return mk, s.Name, nil
	}
	return nil, "", unlockError(foreign, damaged, skipped)
}

// unlockError says why no slot opened the repository.
func unlockError(foreign []string, damaged []error, skipped int) error {
	if len(foreign) > 0 {
		return fmt.Errorf("config object failed authentication: the passphrase opens key slot %s, but its key does not authenticate the config, "+
			"so the config was changed or damaged since init, or the slot belongs to another repository; restore the config from another copy of the repository",
			strings.Join(foreign, ", "))
	}
	err := crypto.ErrWrongPassphrase
	if skipped > 0 {
		err = fmt.Errorf("%w (%d key slot(s) over this agent's KDF limit were skipped)", err, skipped)
	}
	if len(damaged) > 0 {
		err = fmt.Errorf("%w (and %d key slot(s) are damaged: %v)", err, len(damaged), errors.Join(damaged...))
	}
	return err
}

// orderSlots returns the passphrase slots in the order to try them: the
// preferred one, then by KDF work, then newest first. Damaged slots are
// returned apart.
func orderSlots(slots []SlotInfo, prefer string) (try []SlotInfo, damaged []error) {
	for _, s := range slots {
		switch {
		case s.Err != nil:
			damaged = append(damaged, s.Err)
		case s.Slot.Type == crypto.SlotPassphrase:
			try = append(try, s)
		}
	}
	slices.SortStableFunc(try, func(a, b SlotInfo) int {
		if pa, pb := a.Name == prefer, b.Name == prefer; pa != pb {
			if pa {
				return -1
			}
			return 1
		}
		if c := cmp.Compare(a.Slot.KDF.Work(), b.Slot.KDF.Work()); c != 0 {
			return c
		}
		return b.Slot.Created.Compare(a.Slot.Created)
	})
	return try, damaged
}

// The keys this process unlocked, so that it pays the KDF at most once per
// repository and passphrase. The passphrase is kept only as an HMAC under
// a key drawn for this process.
var unlocked struct {
	sync.Mutex
	key  []byte
	keys map[unlockedKey]unlockedEntry
}

type unlockedKey struct {
	repo string
	pass [sha256.Size]byte
}

type unlockedEntry struct {
	mk   *crypto.MasterKey
	slot string
}

func unlockedKeyOf(repoID string, passphrase []byte) unlockedKey {
	if unlocked.key == nil {
		unlocked.key = make([]byte, 32)
		_, _ = rand.Read(unlocked.key)
		unlocked.keys = map[unlockedKey]unlockedEntry{}
	}
	h := hmac.New(sha256.New, unlocked.key)
	h.Write(passphrase)
	k := unlockedKey{repo: repoID}
	h.Sum(k.pass[:0])
	return k
}

func remember(repoID string, passphrase []byte, r *Repo) {
	unlocked.Lock()
	defer unlocked.Unlock()
	unlocked.keys[unlockedKeyOf(repoID, passphrase)] = unlockedEntry{mk: r.keys.Master(), slot: r.slot}
}

// reopen returns the repository opened with a key this process unlocked
// before, or nil.
func reopen(ctx context.Context, st store.Store, cfg Config, body, mac, passphrase []byte) *Repo {
	unlocked.Lock()
	e, ok := unlocked.keys[unlockedKeyOf(cfg.ID, passphrase)]
	unlocked.Unlock()
	if !ok {
		return nil
	}
	if !authenticates(e.mk, body, mac) {
		return nil
	}
	if _, err := st.Stat(ctx, e.slot); err != nil {
		return nil
	}
	r, err := newRepo(st, cfg, e.mk)
	if err != nil {
		return nil
	}
	r.slot = e.slot
	return r
}

// ForgetUnlocked drops the keys this process unlocked, so the next Open
// runs the KDF again.
func ForgetUnlocked() {
	unlocked.Lock()
	defer unlocked.Unlock()
	unlocked.keys = map[unlockedKey]unlockedEntry{}
}

// SlotInfo is one key slot as listed.
type SlotInfo struct {
	Name string
	Slot *crypto.Slot
	Err  error // the slot object is damaged
}

// Claimed describes who the slot says wrote it (host, note, vault
// credential): unchecked claims.
func (s SlotInfo) Claimed() string {
	if s.Slot == nil {
		return "damaged"
	}
	parts := []string{"created " + s.Slot.Created.UTC().Format("2006-01-02 15:04 UTC")}
	if s.Slot.Host != "" {
		parts = append(parts, "host "+termtext.Clip(s.Slot.Host, maxClaim))
	}
	if s.Slot.Credential != "" {
		parts = append(parts, "credential "+termtext.Clip(s.Slot.Credential, maxClaim))
	}
	if s.Slot.Note != "" {
		parts = append(parts, "note "+termtext.Clip(s.Slot.Note, maxClaim))
	}
	return "claims " + strings.Join(parts, ", ")
}

// maxClaim bounds each claim of a slot shown to a user.
const maxClaim = 80

// ListSlots reads every key slot, checking each against its name.
func ListSlots(ctx context.Context, st store.Store) ([]SlotInfo, error) {
	var names []string
	if err := st.List(ctx, KeysPrefix, func(i store.Info) error {
		names = append(names, i.Name)
		return nil
	}); err != nil {
		return nil, fmt.Errorf("listing key slots: %w", err)
	}
	var out []SlotInfo
	for _, n := range names {
		raw, err := store.ReadAll(ctx, st, n)
		if err != nil {
			return nil, fmt.Errorf("reading key slot %s: %w", n, err)
		}
		si := SlotInfo{Name: n}
		if err := checkContentName(n, KeysPrefix, raw); err != nil {
			si.Err = err
		} else if s, err := crypto.ParseSlot(raw, n); err != nil {
			si.Err = err
		} else {
			si.Slot = s
		}
		out = append(out, si)
	}
	return out, nil
}

// AddPassphraseSlot stores a new passphrase slot for the open repository's
// master key and returns its name.
func (r *Repo) AddPassphraseSlot(ctx context.Context, passphrase []byte) (string, error) {
	return r.AddPassphraseSlotClaimed(ctx, passphrase, SlotClaim{})
}

// AddPassphraseSlotClaimed is AddPassphraseSlot with a note and the vault
// credential id recorded in the slot.
func (r *Repo) AddPassphraseSlotClaimed(ctx context.Context, passphrase []byte, c SlotClaim) (string, error) {
	host, _ := os.Hostname()
	slot, err := crypto.NewPassphraseSlot(r.keys.Master(), passphrase, crypto.DefaultKDF(), r.clock.Now(), host)
	if err != nil {
		return "", err
	}
	slot.Note, slot.Credential = c.Note, c.Credential
	b, err := slot.Marshal()
	if err != nil {
		return "", err
	}
	name, err := r.putContentNamed(ctx, KeysPrefix, b)
	if err != nil {
		return "", fmt.Errorf("storing the key slot: %w", err)
	}
	return name, nil
}

// AddEscrowSlot stores a key slot that seals the master key to the
// provider's escrow recipient (an age recipient) and returns its name.
func (r *Repo) AddEscrowSlot(ctx context.Context, recipient string) (string, error) {
	host, _ := os.Hostname()
	slot, err := crypto.NewEscrowSlot(r.keys.Master(), recipient, r.clock.Now(), host)
	if err != nil {
		return "", err
	}
	b, err := slot.Marshal()
	if err != nil {
		return "", err
	}
	name, err := r.putContentNamed(ctx, KeysPrefix, b)
	if err != nil {
		return "", fmt.Errorf("storing the escrow key slot: %w", err)
	}
	return name, nil
}

// RemoveSlot deletes a key slot. It refuses to delete the last one.
func (r *Repo) RemoveSlot(ctx context.Context, name string) error {
	slots, err := ListSlots(ctx, r.st)
	if err != nil {
		return err
	}
	found, usable := false, 0
	for _, s := range slots {
		if s.Name == name {
			found = true
		} else if s.Err == nil {
			usable++
		}
	}
	if !found {
		return fmt.Errorf("key slot %s: %w", name, store.ErrNotFound)
	}
	if usable == 0 {
		return errors.New("refusing to remove the last usable key slot: the repository would be lost")
	}
	return r.st.Delete(ctx, name)
}
