// Package benchcmp holds the side-by-side benchmarks of hsmclient against the
// raw PKCS#11 limit (miekg/pkcs11 with one pre-opened, logged-in session per
// goroutine) and ThalesGroup/crypto11, on one SoftHSM token, with and without
// latency injected by faultp11. The package has no code of its own: see
// benchcmp_test.go and BENCHMARKS.md at the repository root.
package benchcmp
