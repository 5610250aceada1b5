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
// The server (Server, ServerExport) behaves as xapi-nbd by default: it is
// what the XenAPI simulator serves VDIs with, and it stays as strict as
// xapi. Server.Full turns on the full read-only protocol for instant access
// (server_options.go negotiates, server_full.go and structured.go
// transmit): NBD_OPT_LIST (Server.List), NBD_OPT_INFO and NBD_OPT_GO with
// export and block-size info, NBD_FLAG_C_NO_ZEROES, structured replies, the
// "base:allocation" meta context with NBD_CMD_BLOCK_STATUS, FLUSH and CACHE
// as no-ops, WRITE, TRIM and WRITE_ZEROES refused with EPERM, and
// pipelined requests. An export that is also an ExtentsExport tells the
// server where its holes are; reads then skip them (OFFSET_HOLE chunks) and
// block status reports them. Full mode reads are byte-granular (minimum
// block size 1): nothing below the ReaderAt needs alignment, so refusing
// unaligned reads would only break clients.
//
// Export names carry the xapi session after '?': RedactName is how they
// appear in errors and logs.
package nbd
