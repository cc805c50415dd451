// Package fulcrum is what the provider's resource packages share: the API
// client, turning problem+json answers into diagnostics on attribute paths,
// waiting for objects to become active or gone, converting between
// attribute values and the API's fields, and the attributes, validators and
// plan modifiers that mirror the API's common rules.
package fulcrum

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"github.com/hashicorp/terraform-plugin-framework/diag"
	"github.com/hashicorp/terraform-plugin-framework/path"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// Client is what Configure hands to every resource and data source.
type Client struct {
	API      *openapi.ClientWithResponses
	Endpoint string
}

// Option configures NewClient.
type Option func(*clientOptions)

type clientOptions struct {
	maxRetries int
}

// WithMaxRetries sets how often a failed request is retried (see
// retryingTransport); 0 never retries. Defaults to DefaultMaxRetries.
func WithMaxRetries(n int) Option {
	return func(o *clientOptions) { o.maxRetries = max(n, 0) }
}

// NewClient builds an API client sending token, with W3C trace context on
// every request (so `terraform apply` → API → agent is one trace), retrying
// what is safe to retry.
func NewClient(endpoint, token, userAgent string, opts ...Option) (*Client, error) {
	o := clientOptions{maxRetries: DefaultMaxRetries}
	for _, opt := range opts {
		opt(&o)
	}
	transport := otelhttp.NewTransport(http.DefaultTransport)
	hc := &http.Client{Transport: retryingTransport(transport, o.maxRetries)}
	api, err := openapi.NewClientWithResponses(strings.TrimRight(endpoint, "/"), openapi.WithHTTPClient(hc),
		openapi.WithRequestEditorFn(func(ctx context.Context, req *http.Request) error {
			req.Header.Set("Authorization", "Bearer "+token)
			req.Header.Set("User-Agent", userAgent)
			return nil
		}))
	if err != nil {
		return nil, err
	}
	return &Client{API: api, Endpoint: endpoint}, nil
}

// ClientFrom extracts the client from ProviderData, adding a diagnostic when
// the provider was not configured as expected.
func ClientFrom(data any, diags *diag.Diagnostics) *Client {
	if data == nil {
		return nil // not configured yet (validate/plan without provider config)
	}
	c, ok := data.(*Client)
	if !ok {
		diags.AddError("Unexpected provider data", fmt.Sprintf("expected *fulcrum.Client, got %T", data))
		return nil
	}
	return c
}

var indexRE = regexp.MustCompile(`^([^\[]+)\[(\d+)\]$`)

// FieldPath turns an API field name ("timeouts.client_ms", "allowed_cidrs[1]",
// "action.forward.pools[0].pool_id") into an attribute path. rename maps API
// names to schema names where they differ (nil: same).
func FieldPath(field string, rename map[string]string) path.Path {
	if r, ok := rename[field]; ok {
		field = r
	}
	var p path.Path
	for i, part := range strings.Split(field, ".") {
		name, idx := part, -1
		if m := indexRE.FindStringSubmatch(part); m != nil {
			name = m[1]
			idx, _ = strconv.Atoi(m[2])
		}
		if i == 0 {
			p = path.Root(name)
		} else {
			p = p.AtName(name)
		}
		if idx >= 0 {
			p = p.AtListIndex(idx)
		}
	}
	return p
}

// AddProblem reports a failed API call: each field error on its attribute (when
// the schema has it), otherwise one error with the problem's detail.
func AddProblem(diags *diag.Diagnostics, summary string, status int, body []byte, rename map[string]string) {
	var p openapi.Problem
	if err := json.Unmarshal(body, &p); err != nil || p.Title == "" {
		diags.AddError(summary, fmt.Sprintf("The Fulcrum API answered %d: %s", status, strings.TrimSpace(string(body))))
		return
	}
	detail := p.Title
	if p.Detail != nil && *p.Detail != "" {
		detail += ": " + *p.Detail
	}
	if p.Errors == nil || len(*p.Errors) == 0 {
		diags.AddError(summary, detail)
		return
	}
	for _, fe := range *p.Errors {
		if !isAttributeField(fe.Field) {
			diags.AddError(summary, fmt.Sprintf("%s (%s: %s)", detail, fe.Field, fe.Message))
			continue
		}
		diags.AddAttributeError(FieldPath(fe.Field, rename), summary, fmt.Sprintf("%s %s. %s", fe.Field, fe.Message, detail))
	}
}

// AddRequestError reports a transport failure.
func AddRequestError(diags *diag.Diagnostics, summary string, err error) {
	diags.AddError(summary, fmt.Sprintf("Could not reach the Fulcrum API: %v", err))
}
