package certificate

import (
	"context"
	"testing"
	"time"

	"github.com/hashicorp/terraform-plugin-framework/attr"
	"github.com/hashicorp/terraform-plugin-framework/types"

	"github.com/fulcrumlb/fulcrum/openapi"
)

func apiCertificate() *openapi.Certificate {
	return &openapi.Certificate{
		Id: "cert_1", TenantId: "tnt_1", Name: "www", Description: "d", Labels: openapi.Labels{"env": "prod"},
		Certificate: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n", FingerprintSha256: "ab:cd",
		Subject: "CN=www.example.com", Issuer: "CN=www.example.com", DnsNames: []string{"www.example.com"},
		NotBefore: time.Date(2025, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600)),
		NotAfter:  time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), KeyType: "ecdsa-p256", Version: 3,
	}
}

func TestFromAPIKeepsPrivateKey(t *testing.T) {
	ctx := context.Background()
	m := model{PrivateKey: types.StringValue("KEY")}
	if d := m.fromAPI(ctx, apiCertificate()); d.HasError() {
		t.Fatal(d)
	}
	if m.PrivateKey.ValueString() != "KEY" {
		t.Errorf("private_key = %v, want the configured value kept", m.PrivateKey)
	}
	if m.ID.ValueString() != "cert_1" || m.Name.ValueString() != "www" || m.KeyType.ValueString() != "ecdsa-p256" {
		t.Errorf("unexpected model %+v", m)
	}
	if got := m.NotBefore.ValueString(); got != "2024-12-31T23:00:00Z" {
		t.Errorf("not_before = %s, want UTC RFC 3339", got)
	}
	want := types.MapValueMust(types.StringType, map[string]attr.Value{"env": types.StringValue("prod")})
	if !m.Labels.Equal(want) {
		t.Errorf("labels = %v", m.Labels)
	}
	if dns := m.DNSNames.Elements(); len(dns) != 1 || dns[0].(types.String).ValueString() != "www.example.com" {
		t.Errorf("dns_names = %v", m.DNSNames)
	}
}

func TestFromAPIEmptyCollections(t *testing.T) {
	c := apiCertificate()
	c.Labels, c.DnsNames = nil, nil
	var m model
	if d := m.fromAPI(context.Background(), c); d.HasError() {
		t.Fatal(d)
	}
	if m.Labels.IsNull() || len(m.Labels.Elements()) != 0 {
		t.Errorf("labels = %v, want an empty map", m.Labels)
	}
	if m.DNSNames.IsNull() || len(m.DNSNames.Elements()) != 0 {
		t.Errorf("dns_names = %v, want an empty list", m.DNSNames)
	}
}

func planned() model {
	return model{
		Name: types.StringValue("www"), Description: types.StringValue(""),
		Labels:      types.MapValueMust(types.StringType, map[string]attr.Value{"a": types.StringValue("b")}),
		Certificate: types.StringValue("CERT"), PrivateKey: types.StringValue("KEY"),
	}
}

func TestToCreate(t *testing.T) {
	m := planned()
	body, d := m.toCreate(context.Background())
	if d.HasError() {
		t.Fatal(d)
	}
	if body.Certificate != "CERT" || body.PrivateKey != "KEY" || *body.Name != "www" || *body.Description != "" || (*body.Labels)["a"] != "b" {
		t.Errorf("unexpected body %+v", body)
	}
}

func TestToUpdate(t *testing.T) {
	ctx := context.Background()
	state := planned()

	plan := planned()
	plan.Description = types.StringValue("new")
	body, d := plan.toUpdate(ctx, &state)
	if d.HasError() {
		t.Fatal(d)
	}
	if body.Certificate != nil || body.PrivateKey != nil {
		t.Errorf("metadata-only change sent the key pair: %+v", body)
	}
	if *body.Description != "new" || *body.Name != "www" || body.Labels == nil {
		t.Errorf("unexpected body %+v", body)
	}

	for _, change := range []func(*model){
		func(m *model) { m.Certificate = types.StringValue("CERT2") },
		func(m *model) { m.PrivateKey = types.StringValue("KEY2") },
	} {
		plan := planned()
		change(&plan)
		body, _ := plan.toUpdate(ctx, &state)
		if body.Certificate == nil || body.PrivateKey == nil || *body.Certificate != plan.Certificate.ValueString() || *body.PrivateKey != plan.PrivateKey.ValueString() {
			t.Errorf("rotation must send certificate and key together: %+v", body)
		}
	}

	// After an import the key is unknown to state: the next apply sends the pair.
	state.PrivateKey = types.StringNull()
	plan = planned()
	body, _ = plan.toUpdate(ctx, &state)
	if body.PrivateKey == nil || body.Certificate == nil {
		t.Errorf("imported state without key must send the pair: %+v", body)
	}
}
