// Package nbd owns Coffer's side of the Network Block Device protocol as
// XenServer's xapi-nbd speaks it: fixed newstyle, NBD_OPT_EXPORT_NAME (no
// NBD_OPT_GO), NBD_OPT_STARTTLS and NBD_OPT_ABORT, read-only exports, READ
// and DISC with offsets and lengths in whole 512-byte sectors.
//
// The client (Dial, Conn) reads one VDI export; TLS trusts exactly the
// certificate VDI.get_nbd_info reported, for its subject. Reader is an
// io.ReaderAt over one export with a bounded pool of connections, dialed one
// at a time, reconnecting and retrying reads whose connection dropped;
// HostLimit shares xapi's per-host connection budget between Readers.
//
// The server (Server, ServerExport) behaves as xapi-nbd: it is what the
// XenAPI simulator serves VDIs with, and later instant access.
//
// Export names carry the xapi session after '?': RedactName is how they
// appear in errors and logs.
package nbd
