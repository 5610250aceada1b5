// Package agent is Coffer's scheduled agent (coffer agent): it owns the
// agent's part of the config file (schedule, sources, bandwidth windows,
// retries, history size), the loop that starts runs on the schedule on the
// injected clock (a missed run once on wake, never two at once, retries
// with backoff and jitter, a clean stop when its context ends), the
// choice of a pool's VMs by name glob and tag, and the run history: a
// small plain-JSON record per run, kept on this machine and put in the
// repository under runs/ for the vault to read without keys.
//
// What a run does is not here: the caller (cmd/coffer) injects a RunFunc
// made of the backup code, since product parts never import each other.
package agent
