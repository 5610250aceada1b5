// Package xenapi owns Coffer's typed client for the XenAPI (xapi, the
// management API of XenServer and XCP-ng): JSON-RPC over HTTPS to a pool
// member, login with the redirect to the pool master, asynchronous calls
// through xapi tasks, the records Coffer reads (VM, VBD, VDI, SR, host, pool,
// network, task) and the calls a CBT backup and a restore make, and the
// host's HTTP transfer handlers (export_metadata, export_raw_vdi,
// import_raw_vdi with xapi's sparse chunked protocol, import_metadata).
//
// Its names follow the official SDK (github.com/xenserver/go-xenapi): records
// are structs with xapi's field names, references are Ref values, one method
// per call, so the SDK could replace it later.
//
// Everything the server sends is outside input: responses are size-capped,
// decoded with exact 64-bit integers, checked for shape and named in errors;
// references and UUIDs are validated. The password and the session reference
// never appear in an error, a log line or a URL printed by this package.
//
// The simulator used by tests elsewhere lives in xenapi/xapisim.
package xenapi
