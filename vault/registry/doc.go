// Package registry owns the vault's tenant state in the vault store:
//
//	vault/format                {"format":"cofferd-vault","version":1}   create-only
//	vault/names/<tenant-name>   {"tenant":"<tid>"}                       create-only: names are unique
//	vault/tenants/<tid>.json    Tenant                                   compare-and-swap
//	vault/tokens/<tokid>.json   enrollment token (SHA-256 of the secret)  compare-and-swap
//	vault/creds/<credid>.json   Credential (SHA-256 of the secret)        create, then compare-and-swap
//
// Every change goes through Update, a read-modify-write loop over
// store.Swapper, so several cofferd replicas sharing one store never lose an
// update. Secrets are never stored: only their SHA-256, compared in constant
// time. Errors meant for an agent or an operator are *vaultapi.Error values
// that carry the wire code.
package registry
