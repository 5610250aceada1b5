package vault

// Error codes the server uses beyond those of internal/vaultapi. Clients
// fall back to the HTTP status for them.
const (
	codeURITooLong       = "uri_too_long"
	codeTooManyDownloads = "too_many_downloads"
	codeTooManyAuthFails = "too_many_auth_failures"
)
