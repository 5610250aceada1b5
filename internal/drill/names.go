package drill

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"

	"github.com/cofferhq/coffer/internal/vaultapi"
)

// VaultPrefix is where cofferd keeps the evidence of the drills it runs,
// in the vault's store: VaultPrefix + "<tenant id>/<started>-<snapshot>.json".
const VaultPrefix = "vault/drills/"

// stampLayout is the start time in an object name: sortable, lower case.
const stampLayout = "20060102-150405.000"

// VaultName is the name of e's evidence in the vault's store. Evidence is
// stored create-only and never rewritten.
func VaultName(e *Evidence) (string, error) {
	if !vaultapi.ValidTenantID(e.TenantID) {
		return "", fmt.Errorf("drill evidence of %s has no valid tenant id", e.VM)
	}
	return fmt.Sprintf("%s%s/%s-%.12s.json", VaultPrefix, e.TenantID, e.Started.UTC().Format(stampLayout), e.SnapshotID), nil
}

// VaultTenantPrefix is the prefix of one tenant's evidence.
func VaultTenantPrefix(tenantID string) string { return VaultPrefix + tenantID + "/" }

// AgentPrefix is where an agent keeps the evidence of the drills it runs,
// in its repository: AgentPrefix + the SHA-256 (hex) of the evidence's
// bytes (a vaultapi.KindDrill object: plain JSON the vault reads without
// keys).
const AgentPrefix = "drills/"

// AgentName is the name of evidence b in a repository.
func AgentName(b []byte) string {
	sum := sha256.Sum256(b)
	return AgentPrefix + hex.EncodeToString(sum[:])
}
