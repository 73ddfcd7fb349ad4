// Package hsmclient signs, encrypts and manages keys on hardware security
// modules through PKCS#11: AWS CloudHSM in production, SoftHSM in
// development and tests. It serves the PersonaPass wallet's DID and
// verifiable-credential signing.
//
// # Clusters, failover and recovery
//
// A Client talks to one or more clusters (a PKCS#11 module plus a token), in
// the priority order of the configuration. Every operation goes to the first
// cluster that is not down. Device errors, lost sessions, timeouts and
// throttling that outlasts its retries count against a cluster's circuit
// breaker; at Failover.FailureThreshold failures in a row (or at once, when the
// connection is gone) the cluster is down and the operation moves on to the
// next cluster when that is safe: signing, verification, encryption,
// decryption, random bytes and key reads. Key generation and deletion never
// move: clusters share new keys only through backups, so they fail with an
// error that names the primary. A background prober brings a down cluster
// back (re-initializing the module and logging in again when the connection
// was lost) after Failover.RecoveryProbes healthy probes, and traffic returns
// to it. A refused PIN takes a cluster out for good and is never retried.
//
// # Concurrency model
//
// A Client, its Signers and Decrypters are safe for concurrent use by any
// number of goroutines. Each cluster has a bounded pool of PKCS#11 sessions;
// an operation holds one session for its duration, so at most
// Pool.MaxSessions-1 operations run on a cluster at once (one more session
// holds the login) and further callers wait for a session until their
// context ends. Each PKCS#11 call runs on its own goroutine so that a hung HSM
// never holds a caller past its context deadline or OperationTimeout; the
// abandoned call keeps its session until the HSM answers.
//
// Keys are addressed by label. Object handles are cached per module
// generation and found again when the token says they went stale; public
// keys are read once and cached.
//
// # Errors
//
// Errors wrap the sentinels of this package (test with errors.Is) and the
// PKCS#11 return code when the token answered (errors.As into a
// pkcs11.Error). They never contain PINs or key material.
package hsmclient
