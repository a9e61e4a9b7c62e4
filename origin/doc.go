// Package origin is the origin-side kit for services that sit behind an
// Outpost edge: it verifies the gateway's signed identity headers
// (Verifier), sets Cache-Control by TTL class and emits surrogate keys so
// the edge cache can purge by tag (SetCache, SetSurrogateKeys), calls the
// admin API to purge when data changes (PurgeClient), keeps sessions in
// bbolt or Redis (SessionStore) and reads through a TTL cache in memory or
// Redis that degrades to the database when the cache is down (ReadThrough).
//
// The example services built on it live in origin/services; the data they
// share between instances lives behind origin/store.
package origin
