package tlsedge

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"

	"github.com/caddyserver/certmagic"
	"go.uber.org/zap"
)

// setAsideDamaged moves a stored certificate of name that cannot be used
// (certificate or key cut short, not PEM, not a pair, metadata not JSON)
// to "<file>.damaged" and logs it, so that Manage obtains a new one
// instead of failing to start with "caching certificate: unusable
// certificate" and no file named. A certificate can always be obtained
// again; the damaged files are kept for the operator. The check is made
// again under certmagic's lock for the name, so a peer sharing the storage
// that is writing a renewal is never taken for damage.
func setAsideDamaged(ctx context.Context, c *certmagic.Config, name string, log *zap.Logger) {
	for _, iss := range c.Issuers {
		ik := iss.IssuerKey()
		keys := [3]string{
			certmagic.StorageKeys.SiteCert(ik, name),
			certmagic.StorageKeys.SitePrivateKey(ik, name),
			certmagic.StorageKeys.SiteMeta(ik, name),
		}
		if _, bad := unusable(ctx, c.Storage, keys); bad == nil {
			continue
		}
		lock := "issue_cert_" + name // certmagic's, for obtain and renew
		if err := c.Storage.Lock(ctx, lock); err != nil {
			return // certmagic reports the certificate itself
		}
		setAside(ctx, c.Storage, keys, name, log)
		_ = c.Storage.Unlock(ctx, lock)
	}
}

func setAside(ctx context.Context, st certmagic.Storage, keys [3]string, name string, log *zap.Logger) {
	data, bad := unusable(ctx, st, keys)
	if bad == nil {
		return
	}
	file := keys[0]
	if fsys, ok := st.(*certmagic.FileStorage); ok {
		file = fsys.Filename(keys[0])
	}
	log.Error("stored certificate is unusable: moved aside, obtaining a new one",
		zap.String("name", name), zap.String("file", file), zap.Error(bad))
	for i, k := range keys {
		if err := st.Store(ctx, k+".damaged", data[i]); err != nil {
			log.Error("keeping the damaged certificate failed", zap.String("key", k), zap.Error(err))
			return // leave it: certmagic then fails, and nothing is lost
		}
	}
	for _, k := range keys {
		_ = st.Delete(ctx, k)
	}
}

// unusable loads the certificate, key and metadata and returns why they
// cannot be used; nil when they can, or when one is missing or unreadable
// (certmagic obtains a new certificate over a missing one, and reports an
// unreadable one itself).
func unusable(ctx context.Context, st certmagic.Storage, keys [3]string) (data [3][]byte, bad error) {
	for i, k := range keys {
		b, err := st.Load(ctx, k)
		if err != nil {
			return data, nil
		}
		data[i] = b
	}
	if _, err := tls.X509KeyPair(data[0], data[1]); err != nil {
		return data, err
	}
	if !json.Valid(data[2]) {
		return data, errors.New("metadata is not JSON")
	}
	return data, nil
}
