// Package nbdexport serves a snapshot's disks as read-only NBD exports
// (instant access): each disk is an internal/diskread reader, shared by
// every connection, that fetches chunks on demand; its holes are reported
// to clients through NBD block status. cofferd nbd runs it.
package nbdexport
