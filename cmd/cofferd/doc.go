// Command cofferd is the Coffer vault: the multi-tenant server agents back
// up into (cofferd serve), and the operator's tools for its tenants
// (cofferd tenant …). Its state lives in the same store as the tenants'
// repositories (--store, env COFFER_STORE); see vault/registry and
// vault/ledger.
package main
