// Package check owns verifying a repository: that every key slot, index
// file, pack header and snapshot is intact and authentic, that every chunk a
// snapshot needs is indexed and stored, and, with ReadData, that every byte
// of every pack decrypts and hashes to what it claims. Each problem names the
// object it was found in. The agent (coffer check) and the vault (cofferd
// check) both use it.
package check
