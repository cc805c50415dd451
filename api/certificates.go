package api

import (
	"context"
	"time"

	"github.com/fulcrumlb/fulcrum/api/certs"
	"github.com/fulcrumlb/fulcrum/api/problem"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

func certToAPI(c *store.Certificate) openapi.Certificate {
	i := c.Info
	return openapi.Certificate{Id: c.ID, TenantId: c.TenantID, Name: c.Name, Description: c.Description, Labels: labelsOrEmpty(c.Labels),
		Certificate: c.CertificatePEM, FingerprintSha256: i.FingerprintSHA256, Subject: i.Subject, Issuer: i.Issuer,
		DnsNames: nonNil(i.DNSNames), NotBefore: i.NotBefore, NotAfter: i.NotAfter, KeyType: i.KeyType,
		CreatedAt: c.CreatedAt, UpdatedAt: c.UpdatedAt, Version: c.Version}
}

// sealCertificate parses the pair and encrypts the key, bound to the
// certificate's id so a sealed key cannot be moved to another row.
func (h *handlers) sealCertificate(c *store.Certificate, certPEM, keyPEM string) error {
	info, err := certs.Parse(certPEM, keyPEM, time.Now())
	if err != nil {
		return err
	}
	c.CertificatePEM = certPEM
	c.Info = store.CertificateInfo{FingerprintSHA256: info.FingerprintSHA256, Subject: info.Subject, Issuer: info.Issuer,
		DNSNames: info.DNSNames, NotBefore: info.NotBefore, NotAfter: info.NotAfter, KeyType: info.KeyType}
	c.PrivateKeyEnc = h.box.Seal([]byte(keyPEM), []byte(c.ID))
	return nil
}

// PrivateKey decrypts a certificate's key (for snapshots sent to nodes).
func PrivateKey(box interface {
	Open(sealed, aad []byte) ([]byte, error)
}, c *store.Certificate) ([]byte, error) {
	return box.Open(c.PrivateKeyEnc, []byte(c.ID))
}

func certColumns(c *store.Certificate, rev int64) []store.Column {
	return append(metaColumns(&c.Meta, rev), store.Column{Name: "certificate_pem", Value: c.CertificatePEM},
		store.Column{Name: "private_key_enc", Value: c.PrivateKeyEnc}, store.Column{Name: "info", Value: c.Info})
}

func (h *handlers) ListCertificates(ctx context.Context, r openapi.ListCertificatesRequestObject) (openapi.ListCertificatesResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	items, next, err := list[store.Certificate](ctx, h, store.KindCertificate, tenant, listQuery(r.Params.Limit, r.Params.PageToken, r.Params.Name, r.Params.Label))
	if err != nil {
		return nil, err
	}
	return openapi.ListCertificates200JSONResponse{Body: openapi.CertificateList{Items: mapSlice(items, certToAPI), NextPageToken: next}}, nil
}

func (h *handlers) CreateCertificate(ctx context.Context, r openapi.CreateCertificateRequestObject) (openapi.CreateCertificateResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	c := &store.Certificate{Meta: store.Meta{ID: store.NewID(store.KindCertificate.Prefix), TenantID: tenant, Name: deref(b.Name),
		Description: deref(b.Description), Labels: deref(b.Labels)}}
	var e validate.Errors
	validateMeta(&e, &c.Meta)
	if err := e.Err(); err != nil {
		return nil, err
	}
	if err := h.sealCertificate(c, b.Certificate, b.PrivateKey); err != nil {
		return nil, err
	}
	out, _, err := createIn(ctx, h, store.ScopeGroups(), "POST /v1/certificates", r.Params.IdempotencyKey, r.Params.DryRun, b, func(tx *store.Tx) (openapi.Certificate, error) {
		if err := store.CheckQuota(ctx, tx, store.KindCertificate, tenant); err != nil {
			return openapi.Certificate{}, err
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Certificate{}, err
		}
		cols := append(certColumns(c, rev), store.Column{Name: "id", Value: c.ID}, store.Column{Name: "tenant_id", Value: tenant})
		row, err := store.Insert[store.Certificate](ctx, tx, store.KindCertificate, cols)
		if err != nil {
			return openapi.Certificate{}, err
		}
		return certToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	if isTrue(r.Params.DryRun) {
		return openapi.CreateCertificate200JSONResponse{Body: out}, nil
	}
	return openapi.CreateCertificate201JSONResponse{Body: out, Headers: openapi.CreateCertificate201ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) GetCertificate(ctx context.Context, r openapi.GetCertificateRequestObject) (openapi.GetCertificateResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	c, err := get[store.Certificate](ctx, h, store.KindCertificate, tenant, r.Id)
	if err != nil {
		return nil, err
	}
	return openapi.GetCertificate200JSONResponse{Body: certToAPI(&c), Headers: openapi.GetCertificate200ResponseHeaders{ETag: etag(c.Version)}}, nil
}

func (h *handlers) UpdateCertificate(ctx context.Context, r openapi.UpdateCertificateRequestObject) (openapi.UpdateCertificateResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	b := r.Body
	if (b.Certificate == nil) != (b.PrivateKey == nil) {
		field := "private_key"
		if b.Certificate == nil {
			field = "certificate"
		}
		return nil, problem.InvalidField(field, "is required when rotating: give certificate and private_key together")
	}
	out, err := update(ctx, h, store.KindCertificate, tenant, r.Id, r.Params.IfMatch, r.Params.DryRun, func(tx *store.Tx, c *store.Certificate) (openapi.Certificate, error) {
		if b.Name != nil {
			c.Name = *b.Name
		}
		if b.Description != nil {
			c.Description = *b.Description
		}
		if b.Labels != nil {
			c.Labels = *b.Labels
		}
		var e validate.Errors
		validateMeta(&e, &c.Meta)
		if err := e.Err(); err != nil {
			return openapi.Certificate{}, err
		}
		if b.Certificate != nil {
			if err := h.sealCertificate(c, *b.Certificate, *b.PrivateKey); err != nil {
				return openapi.Certificate{}, err
			}
		}
		rev, err := tx.Revision(ctx)
		if err != nil {
			return openapi.Certificate{}, err
		}
		// Listeners using it must be re-applied with the new chain.
		if err := store.ListenerMarkUpdatedByCertificate(ctx, tx, tenant, c.ID, rev); err != nil {
			return openapi.Certificate{}, err
		}
		row, err := store.Update[store.Certificate](ctx, tx, store.KindCertificate, tenant, c.ID, certColumns(c, rev))
		if err != nil {
			return openapi.Certificate{}, err
		}
		return certToAPI(row), nil
	})
	if err != nil {
		return nil, err
	}
	return openapi.UpdateCertificate200JSONResponse{Body: out, Headers: openapi.UpdateCertificate200ResponseHeaders{ETag: etag(out.Version)}}, nil
}

func (h *handlers) DeleteCertificate(ctx context.Context, r openapi.DeleteCertificateRequestObject) (openapi.DeleteCertificateResponseObject, error) {
	tenant, err := tenantOf(ctx)
	if err != nil {
		return nil, err
	}
	if err := remove[store.Certificate](ctx, h, store.KindCertificate, tenant, r.Id, r.Params.IfMatch, false, nil); err != nil {
		return nil, err
	}
	return openapi.DeleteCertificate202Response{}, nil
}
