// Package imgfmt owns the on-disk layouts of the image formats a restore
// writes into: a dynamic VHD laid out as xapi writes one (for XenServer and
// Hyper-V), and a conservative qcow2 version 3. It parses no image files
// (ReadAt reads back only what it wrote; qemu-img is the judge of the
// result: `check`, which has nothing to say of VHDs, `info`, which refuses a
// bad VHD footer checksum, `map` and `compare`) and it knows nothing of
// repositories.
//
// A format is a layout computed up front from the disk's size and its data
// extents (the ranges that hold data; everything else reads as zeros). All
// metadata is written when the image is created; afterwards every guest byte
// of an allocated block or cluster has a fixed file offset, so many workers
// can WriteAt at guest offsets in any order, as the restore pipeline does
// for a raw file. Blocks and clusters are allocated in guest order, so the
// mapping is piecewise linear (one run per stretch of allocated units).
// A write outside the extents given at creation is an error: the image has
// no room for it. The file itself stays sparse: nothing is written where the
// disk holds zeros.
//
// Sizes. Both formats count the disk in 512-byte sectors. A disk whose size
// is not a multiple of 512 is rounded up to the next sector: the image's
// virtual size (Image.Size) is then up to 511 bytes larger than the disk and
// the tail reads as zeros; the caller reports that difference.
//
// VHD (Microsoft's VHD specification, as xapi writes it; every integer
// big-endian):
//
//	0          footer copy (512 bytes)
//	512        dynamic header (1024 bytes)
//	1536       one blank sector
//	2048       BAT: one u32 per 2 MiB block, the sector of the block's
//	           bitmap or 0xFFFFFFFF, padded to whole sectors
//	after BAT  allocated blocks in guest order, each a 512-byte sector
//	           bitmap (all bits set: every sector of an allocated block is
//	           present, holes in it read zeros from the sparse file) and
//	           2 MiB of data
//	end        footer (512 bytes), written by Close
//
// Footer: cookie "conectix", features 2, version 0x00010000, data offset 512,
// timestamp in seconds since 2000-01-01 UTC from the injected clock, creator
// application "tap\0" (so qemu takes the size from the footer, not the
// geometry), creator version 0x00010000, creator host OS 0, original and
// current size the virtual size, CHS geometry by the specification's
// algorithm, disk type 3 (dynamic), checksum, a random unique id. Dynamic
// header: "cxsparse", data offset all ones, BAT offset 2048, version
// 0x00010000, max table entries ceil(size / 2 MiB) (at least 1: libvhdi
// refuses an empty table), block size 2 MiB,
// checksum, no parent. A checksum is the bitwise NOT of the byte sum of the
// structure with its checksum field zero. Disks over 2040 GiB (XenServer's
// limit) are refused before anything is written.
//
// qcow2 (version 3, the conservative profile: 64 KiB clusters, refcount
// order 4, no compression, no extended L2 entries, no external data file,
// no backing file, no snapshots, every feature bit zero, header length 112
// with compression type 0 and an empty header-extension list):
//
//	cluster 0        header
//	then             refcount table, refcount blocks, L1 table, the L2
//	                 tables that cover data, then data clusters in guest order
//
// Every cluster the image uses (header, tables, data) has refcount 1 and
// every other refcount is 0, L1 and L2 entries carry the COPIED flag, and
// the file is exactly as long as the clusters it uses, so `qemu-img check`
// finds no leaks or errors.
package imgfmt
