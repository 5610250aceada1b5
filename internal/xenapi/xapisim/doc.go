// Package xapisim owns the XenAPI simulator: a server-side implementation
// of what Coffer needs of xapi, written independently of the client in
// internal/xenapi so that each checks the other. cmd/xapisim is its thin
// command line.
//
// State. One folder holds everything: state.json (pool, host, SRs,
// networks, VMs, VBDs, VDIs, sessions, tasks, switches, the NBD connection
// count), guarded by an exclusive flock on DIR/lock that every change
// takes, so the command line and a running serve share the folder and
// switches take effect at once. layers/ holds disk layers: a sparse file of
// the VDI's size and a bitmap of the 64 KiB blocks written in it. A VDI is
// a chain of layers, top first; a block reads from the first layer that
// has it, else as zeros. VM.snapshot freezes each disk's chain into the
// snapshot VDI and gives the live disk a new empty top layer, so snapshots
// of 16 GiB disks are instant. VDI.data_destroy drops the snapshot's chain
// (type cbt_metadata); layers no chain names are deleted.
//
// CBT. Enabling CBT on a VDI starts a chain (a fresh id) at epoch 0; guest
// writes set bits in cbt/<chain>.<epoch>.bits; a snapshot takes the live
// disk's epoch E and moves the disk to E+1. list_changed_blocks(from, to)
// is the OR of epochs from.E+1 .. to.E when both are on one chain (from may
// be cbt_metadata), as a base64 bitmap, one bit per 64 KiB block, most
// significant bit first, ceil(blocks/8) bytes for to's size. Disabling CBT,
// a storage migration (new uuid and ref) or re-enabling starts a new chain,
// so older snapshots are unrelated (SR_BACKEND_FAILURE_460).
//
// Wire. Handler serves POST /jsonrpc (JSON-RPC 2.0 and 1.0, xapi's error
// codes and parameter lists; malformed requests get HTTP 500), GET
// /export_raw_vdi (raw only, Connection: close, no Content-Length), GET
// /export_metadata (a tar holding ova.xml), PUT /import_raw_vdi (raw,
// Content-Length required; sr_id= makes a VDI sized to the body) and PUT
// /import_metadata, and task.create tasks that those handlers finish by
// task_id. VDI.create (refused with SR_BACKEND_FAILURE_44 when the SR's
// physical size cannot hold it: disks are allocated thick), VBD.create and
// VBD.plug make restore targets.
//
// Restores. import_raw_vdi with the chunked flag takes xapi's sparse
// protocol: 12-byte little-endian headers {offset u64, length u32}, each
// followed by its data, ended by {0,0} exactly at the Content-Length. The
// body is staged in a sparse file and checked whole before any block
// reaches the VDI, so a refused upload (a cut header, a chunk past the
// VDI's end or past the Content-Length, a missing end marker, bytes after
// it) leaves the VDI unchanged and fails the task with IMPORT_ERROR.
// import_metadata reads ova.xml (the VM's name, description,
// memory_static_max, VCPUs_max, HVM_boot_policy; its VBDs' userdevice,
// bootable, mode, type, currently_attached and VDI uuid), maps VDIs by the
// query's vdi:<uuid>=<uuid> (else by the archive's uuid) and makes a new
// halted VM with new uuids (restore=true keeps the VM's uuid, refused when
// taken; dry_run=true makes nothing); its task's result is the set of new
// VM refs. A VDI the pool lacks is handled as xapi does: an attached VBD
// fails the import (IMPORT_ERROR_ATTACHED_DISKS_NOT_FOUND) unless it is an
// HVM VM's CD, a CD or floppy is made empty, a disk is left out. NBDExports opens exports for internal/nbd's
// Server by xapi's export name "/<vdi-uuid>?session_id=<ref>", plugging
// the VDI read-only into dom0 for the life of the connection. Serve runs
// both with a self-signed certificate and writes DIR/serve.json.
//
// Switches (field failures): no-cbt-licence, old-version, nbd-disabled,
// nbd-in-use-race, nbd-drop-every=N, snapshot-fail=VM|all,
// leak-attachments, lcb-slow=N, import-fail=N (the Nth chunked
// import_raw_vdi from now stops half-way: VDI_IO_ERROR, the VDI
// unchanged), metadata-fail (import_metadata fails with IMPORT_ERROR after
// its checks); see switches.go. For leak-attachments the
// simulator must know whether a client sent NBD_CMD_DISC, which
// internal/nbd's Server does not tell its export: NBDExports.Serve runs one
// Server per connection over a watched connection and calls it a DISC when
// the client's last bytes (after the server's last write) are at least a
// TLS record holding an NBD request; a close_notify alone or a bare FIN is
// an abrupt close.
//
// vm list --json prints a Listing, stable in this shape:
//
//	{
//	  "vms": [{"uuid", "ref", "name_label", "name_description", "power_state",
//	           "is_a_snapshot", "snapshot_of" (VM uuid or ""),
//	           "snapshot_time" ("20261201T22:00:00Z" or "" for VMs),
//	           "tags": [...], "other_config": {...},
//	           "vbds": [{"uuid", "userdevice", "type", "mode",
//	                     "currently_attached", "vdi" (uuid or ""), "nbd"}]}],
//	  "vdis": [{"uuid", "ref", "name_label", "sr" (uuid), "type",
//	            "virtual_size", "cbt_enabled", "is_a_snapshot",
//	            "snapshot_of" (VDI uuid or ""), "layers"}],
//	  "dom0_attachments": [VBDs of the control domain, shaped as "vbds"],
//	  "nbd_connections": N,
//	  "switches": {"name": "value"}
//	}
//
// VMs sort by snapshot time, then name; the control domain is not listed
// among "vms".
package xapisim
