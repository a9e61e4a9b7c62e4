// Package archtest holds tests that enforce the repository's conventions:
// every package has a doc comment, and the core packages (dns, cdn, lb,
// gateway) never import one another — they meet only in the node wiring.
package archtest
