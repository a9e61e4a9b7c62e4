// Package lb balances requests over the instances of an origin service.
//
// A Pool is a named set of backends with a selection policy (round_robin,
// least_connections, ip_hash, consistent_hash, p2c), active health checks
// with rise/fall thresholds and slow start, passive outlier ejection,
// retries under a retry budget, optional sticky sessions and draining. A
// *Pool is an http.RoundTripper: the node's reverse proxy builds the
// outbound request and the pool chooses where it goes.
//
// Pools are long-lived: the node creates one per configured pool and calls
// Update on config reload, so health state, connection pools and metrics
// survive reloads. Policies are small types behind the Policy interface, one
// file each; policies() lists them.
package lb
