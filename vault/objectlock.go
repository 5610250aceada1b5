package vault

import (
	"strings"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// LockedObject is the vault's Object Lock policy (store.LockPolicy.Match,
// cofferd --object-lock): every object of a tenant's repository,
// repos/<tenant id>/<name> for any name the vault API accepts (packs,
// indexes, snapshots, key slots, config, drill evidence), is locked when it
// is stored. All of them are written once and never replaced, and a
// repository is useless without its key slots and config. Nothing under
// vault/ is locked: tenants, credentials and usage are documents the vault
// replaces by compare-and-swap. Nothing is left unlocked for a garbage
// collector to delete at once: it deletes what it may after the lock ends.
// A locked key slot cannot be removed (cofferd tenant remove-key) before
// its lock ends either.
func LockedObject(key string) bool {
	rest, ok := strings.CutPrefix(key, "repos/")
	if !ok {
		return false
	}
	tid, name, ok := strings.Cut(rest, "/")
	if !ok || tid == "" {
		return false
	}
	_, err := vaultapi.ParseRepoName(name)
	return err == nil
}
