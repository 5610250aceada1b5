package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"

	"github.com/cofferhq/coffer/crypto"
	"github.com/cofferhq/coffer/internal/clock"
	"github.com/cofferhq/coffer/internal/keycache"
	"github.com/cofferhq/coffer/internal/repo"
	"github.com/cofferhq/coffer/internal/store"
)

// keyDir is where the agent keeps its per-repository key files: beside
// its config file, where its vault credential is.
func (g *globals) keyDir() string { return filepath.Join(filepath.Dir(g.configPath), "repos") }

// keyPolicy says whether this command keeps per-repository state (only an
// agent with a config file does) and whether the state may hold the
// unlocked key (on unless --no-key-cache or key_cache: false).
func (g *globals) keyPolicy() (state, keepKey bool) {
	if _, err := os.Stat(g.configPath); err != nil {
		return false, false
	}
	c, err := g.loadConfig()
	if err != nil {
		return false, false
	}
	return true, !g.noKeyCache && (c.KeyCache == nil || *c.KeyCache)
}

// warn prints a warning on stderr.
func (g *globals) warn(msg string) { fmt.Fprintln(g.stderr, "coffer: warning:", msg) }

// unlockRepo opens the repository in st: with the key this agent kept for
// it when that key still authenticates the repository (no KDF, no
// passphrase), else with the passphrase, trying first the slot this agent
// last opened. useKept false always asks for the passphrase (key passwd).
func (g *globals) unlockRepo(ctx context.Context, st store.Store, cfg repo.Config, useKept bool) (*repo.Repo, error) {
	state, keepKey := g.keyPolicy()
	var kept *keycache.Entry
	if state {
		kept = g.loadKept(cfg.ID)
	}
	if kept != nil && useKept && keepKey {
		if r := g.openKept(ctx, st, kept); r != nil {
			return r, nil
		}
	}
	pw, err := g.passphrase("Passphrase: ", false)
	if err != nil {
		return nil, err
	}
	o := repo.OpenOptions{Passphrase: pw, Warn: g.warn}
	if kept != nil {
		o.Prefer = kept.Slot
	}
	r, err := repo.OpenWith(ctx, st, o)
	// argon2id just used memory that nothing needs any more; give it back
	// before the pipeline allocates its buffers, so the peak stays low.
	debug.FreeOSMemory()
	if err != nil {
		return nil, err
	}
	if state && (kept == nil || kept.Slot != r.OpenedSlot() || (len(kept.Key) > 0) != keepKey) {
		g.keepUnlocked(r)
	}
	return r, nil
}

// loadKept reads this agent's file for a repository; one that cannot be
// trusted is removed with a warning.
func (g *globals) loadKept(repoID string) *keycache.Entry {
	e, err := keycache.Load(g.keyDir(), repoID)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		g.warn(err.Error() + "; it was removed")
		_, _ = keycache.Forget(g.keyDir(), repoID)
		return nil
	}
	return e
}

// openKept opens the repository with a kept key, or returns nil. A key
// that does not authenticate the repository, or whose slot is gone, is
// removed with a warning.
func (g *globals) openKept(ctx context.Context, st store.Store, e *keycache.Entry) *repo.Repo {
	mk, err := e.MasterKey()
	if mk == nil || err != nil {
		return nil
	}
	r, err := repo.OpenWithKey(ctx, st, mk, e.Slot)
	switch {
	case err == nil:
		return r
	case errors.Is(err, repo.ErrKeyMismatch) || errors.Is(err, store.ErrNotFound):
		g.warn(fmt.Sprintf("the key kept for repository %s in %s was not used: %v; it was removed, the passphrase opens the repository", e.Repository, g.keyDir(), err))
		e.Key = nil
		_, _ = keycache.Forget(g.keyDir(), e.Repository)
	default:
		g.warn(fmt.Sprintf("the key kept for repository %s could not be checked (%v); trying the passphrase", e.Repository, err))
	}
	return nil
}

// keepUnlocked records, when this agent keeps state, the slot that opened
// r and, unless turned off, r's master key. A failure is only a warning:
// the next command asks for the passphrase again.
func (g *globals) keepUnlocked(r *repo.Repo) {
	state, keepKey := g.keyPolicy()
	if !state || r.OpenedSlot() == "" {
		return
	}
	e := keycache.Entry{Repository: r.Config().ID, Slot: r.OpenedSlot(), Saved: clock.Real.Now().UTC()}
	if keepKey {
		e.Key = crypto.RevealMasterKey(r.Keys().Master())
	}
	if err := keycache.Save(g.keyDir(), e); err != nil {
		g.warn(fmt.Sprintf("could not keep the unlocked key: %v", err))
	}
}

// checkNewPassphrase refuses a new passphrase that is weak, unless the
// user insists (--insecure-passphrase), or that holds a line break
// (--password-file strips trailing ones, so it could not be given back).
// With COFFER_INSECURE_TEST_KDF=1 the slot falls to any guesser whatever
// the passphrase, and strength is not checked.
func (g *globals) checkNewPassphrase(pw []byte, insist bool) error {
	if bytes.ContainsAny(pw, "\r\n") {
		return errors.New("the new passphrase contains a line break; choose one without (--password-file removes trailing line breaks)")
	}
	host, _ := os.Hostname()
	err := crypto.CheckPassphraseStrength(pw, host, "coffer")
	switch {
	case err == nil || crypto.InsecureTestKDF():
		return nil
	case insist:
		g.warn(err.Error() + "; used anyway (--insecure-passphrase)")
		return nil
	}
	return fmt.Errorf("%w. Choose a longer one (four or more random words work well), or pass --insecure-passphrase to use it anyway", err)
}
