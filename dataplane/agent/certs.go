package agent

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
	"github.com/fulcrumlb/fulcrum/internal/atomicfile"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// certFile is the PEM bundle (chain and key, mode 0600) of certificate id.
func (a *Agent) certFile(id string) string { return filepath.Join(a.path("certs"), id+".pem") }

func bundleOf(c openapi.SnapshotCertificate) []byte {
	b := c.Certificate
	if len(b) > 0 && b[len(b)-1] != '\n' {
		b += "\n"
	}
	return []byte(b + c.PrivateKey)
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// writeCertificates writes each certificate's bundle whose content differs
// from what is on disk. Certificates without a key (a snapshot restored from
// disk) are left as they are. A pair that does not load (the key does not
// match, say) is not written — the file keeps what HAProxy can load — and is
// returned in bad, so only the load balancers using it are held back.
func (a *Agent) writeCertificates(certs []openapi.SnapshotCertificate) (bad map[string]error, err error) {
	if err := os.MkdirAll(a.path("certs"), 0o700); err != nil {
		return nil, err
	}
	bad = map[string]error{}
	for _, c := range certs {
		if c.PrivateKey == "" {
			continue
		}
		want := bundleOf(c)
		h := hashOf(want)
		if a.certWritten[c.Id] == h {
			continue
		}
		if _, err := tls.X509KeyPair([]byte(c.Certificate), []byte(c.PrivateKey)); err != nil {
			bad[c.Id] = fmt.Errorf("certificate %s: %w", c.Id, err)
			continue
		}
		if have, err := os.ReadFile(a.certFile(c.Id)); err != nil || !bytes.Equal(have, want) {
			if err := atomicfile.Write(a.certFile(c.Id), want, 0o600); err != nil {
				return nil, err
			}
		}
		a.certWritten[c.Id] = h
	}
	return bad, nil
}

// certFilesOf lists the certificate files cfg's listeners use.
func certFilesOf(cfg haproxy.Config) map[string]bool {
	files := map[string]bool{}
	for _, lb := range cfg.LoadBalancers {
		if !lb.Enabled {
			continue
		}
		for _, l := range lb.Listeners {
			for _, f := range l.CertFiles {
				files[f] = true
			}
		}
	}
	return files
}

// markCertificatesLoaded records the content of every certificate file cfg
// uses, as HAProxy has just loaded them.
func (a *Agent) markCertificatesLoaded(cfg haproxy.Config) {
	a.certLoaded = map[string]string{}
	for f := range certFilesOf(cfg) {
		if b, err := os.ReadFile(f); err == nil {
			a.certLoaded[f] = hashOf(b)
		}
	}
}

// rotateCertificates hands HAProxy the certificate files cfg uses whose
// content changed since HAProxy loaded them (`set ssl cert`, `commit ssl
// cert`): new handshakes get the new certificate, no reload.
func (a *Agent) rotateCertificates(ctx context.Context, cfg haproxy.Config) error {
	var errs []error
	for f := range certFilesOf(cfg) {
		b, err := os.ReadFile(f)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		h := hashOf(b)
		if a.certLoaded[f] == h {
			continue
		}
		if err := a.changes.SetSSLCert(ctx, f, string(b)); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", filepath.Base(f), err))
			continue
		}
		a.log.Info("certificate updated without a reload", "file", filepath.Base(f))
		a.certLoaded[f] = h
	}
	return errors.Join(errs...)
}

// removeStaleCertificates deletes the files (and leftovers of interrupted
// writes) of certificates neither in the snapshot nor used by what HAProxy
// serves: no private key stays on the node after its certificate is gone.
func (a *Agent) removeStaleCertificates(snap *openapi.Snapshot, cfg haproxy.Config) {
	keep := certFilesOf(cfg)
	for _, c := range snap.Certificates {
		keep[a.certFile(c.Id)] = true
	}
	entries, err := os.ReadDir(a.path("certs"))
	if err != nil {
		return
	}
	for _, e := range entries {
		p := filepath.Join(a.path("certs"), e.Name())
		if keep[p] || e.IsDir() {
			continue
		}
		if err := os.Remove(p); err != nil {
			a.log.Warn("remove stale certificate file", "file", p, "err", err)
			continue
		}
		delete(a.certLoaded, p)
		delete(a.certWritten, strings.TrimSuffix(e.Name(), ".pem"))
		a.log.Info("removed the file of a certificate no longer in use", "file", e.Name())
	}
}

// keyOf returns the private key blocks of a PEM bundle.
func keyOf(bundle []byte) string {
	var out strings.Builder
	rest := bundle
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if strings.Contains(b.Type, "PRIVATE KEY") {
			out.Write(pem.EncodeToMemory(b))
		}
	}
	return out.String()
}
