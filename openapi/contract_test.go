package openapi_test

import (
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// TestContract checks what the document promises about every operation
// beyond what the OpenAPI rules and `make lint` (Redocly) check: the error
// answers each kind of operation has, and the headers they carry.
func TestContract(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document)
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	paths := doc.Paths.InMatchingOrder()
	sort.Strings(paths)
	ops := 0
	for _, path := range paths {
		item := doc.Paths.Find(path)
		for method, op := range item.Operations() {
			ops++
			name := method + " " + path
			check := func(ok bool, format string, args ...any) {
				t.Helper()
				if !ok {
					t.Errorf("%s (%s): "+format, append([]any{name, op.OperationID}, args...)...)
				}
			}
			check(op.Summary != "", "no summary")
			check(op.Description != "", "no description")

			params := map[string]bool{}
			for _, p := range append(item.Parameters, op.Parameters...) {
				params[p.Value.In+":"+p.Value.Name] = true
			}
			authenticated := op.Security == nil || len(*op.Security) > 0
			var want []int
			if authenticated {
				want = append(want, 401, 403, 429, 503)
			}
			if op.RequestBody != nil {
				want = append(want, 400, 413, 415, 422)
			}
			if params["header:If-Match"] {
				want = append(want, 412)
			}
			if params["path:id"] && op.OperationID != "registerNode" { // registering an unknown name creates the node
				want = append(want, 404)
			}
			for _, code := range want {
				check(op.Responses.Status(code) != nil, "no %d response", code)
			}

			for code, ref := range op.Responses.Map() {
				resp := ref.Value
				if code == "default" || code[0] == '4' || code[0] == '5' {
					check(len(resp.Content) == 1 && resp.Content.Get("application/problem+json") != nil,
						"%s is not only application/problem+json", code)
					if mt := resp.Content.Get("application/problem+json"); mt != nil {
						check(mt.Schema.Ref == "#/components/schemas/Problem", "%s is not a Problem", code)
					}
					check(ref.Ref != "", "%s is not a shared components/responses answer", code)
				}
				for _, h := range []string{"X-Request-Id", "Traceparent"} {
					check(resp.Headers[h] != nil, "%s does not document %s", code, h)
				}
				if code == "429" || code == "503" {
					check(resp.Headers["Retry-After"] != nil, "%s does not document Retry-After", code)
				}
				// One object read or written (not a dry run): its version as ETag.
				status, _ := strconv.Atoi(code)
				dryRun := method == http.MethodPost && status == http.StatusOK
				if mt := resp.Content.Get("application/json"); mt != nil && !dryRun && status >= 200 && status < 300 {
					if mt.Schema.Value.Properties["version"] != nil {
						check(resp.Headers["ETag"] != nil, "%s returns one versioned object without ETag", code)
					}
				}
			}
		}
	}
	if ops < 50 {
		t.Errorf("only %d operations: is the document complete?", ops)
	}
	for name, h := range doc.Components.Headers {
		if strings.TrimSpace(h.Value.Description) == "" {
			t.Errorf("components/headers/%s has no description", name)
		}
	}
}
