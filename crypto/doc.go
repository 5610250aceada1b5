// Package crypto owns every cryptographic decision Coffer makes: the
// repository master key and the subkeys derived from it, the authenticated
// encryption of every stored object (XAES-256-GCM), the keyed chunk IDs
// (keyed BLAKE3), the secret chunker polynomial, and the key slots that wrap
// the master key: argon2id passphrase slots (RFC 9106 parameter ranges, the
// agent's cost limit on hostile slots, NFC passphrases, the strength check
// for new passphrases) and escrow slots sealed to the MSP's age key.
//
// Nothing outside this package chooses a cipher, a nonce, a KDF parameter or a
// hash construction. FORMAT.md describes the bytes these functions produce.
package crypto
