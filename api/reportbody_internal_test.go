package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/labstack/echo/v4"

	"github.com/fulcrumlb/fulcrum/api/reqcheck"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// TestReportSchemaMatchesDocument ties the fast check of reports
// (reportbody.go) to the API document: every property of NodeReport, at
// every depth, is one the fast pass knows, with the same type, the same
// required properties, no others allowed, and the same bounds (maxItems,
// maxLength, minimum, enum); a keyword the fast pass does not check fails
// the test, and so does a bound in reportLimits the document does not state.
func TestReportSchemaMatchesDocument(t *testing.T) {
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document)
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	var walk func(path string, d *openapi3.Schema, r *rschema)
	walk = func(path string, d *openapi3.Schema, r *rschema) {
		name := path
		if name == "" {
			name = "NodeReport"
		}
		if _, ok := reportLimits[path]; ok {
			used[path] = true
		}
		if d.Nullable || len(d.OneOf)+len(d.AnyOf)+len(d.AllOf) > 0 || d.Not != nil || d.MultipleOf != nil ||
			d.ExclusiveMin.IsSet() || d.ExclusiveMax.IsSet() || d.UniqueItems || d.MinItems != 0 || d.MinLength != 0 ||
			d.Pattern != "" || d.MinProps != 0 || d.MaxProps != nil {
			t.Errorf("%s: the document uses a keyword the fast check of reports does not check", name)
		}
		switch {
		case d.Type.Is("object"):
			if r.kind != rObject {
				t.Errorf("%s: an object in the document, kind %d in the fast check", name, r.kind)
				return
			}
			if d.AdditionalProperties.Has == nil || *d.AdditionalProperties.Has {
				t.Errorf("%s: the document allows other properties; the fast check does not", name)
			}
			req := slices.Clone(d.Required)
			slices.Sort(req)
			got := slices.Clone(r.required)
			slices.Sort(got)
			if !slices.Equal(req, got) {
				t.Errorf("%s: required %v in the document, %v in the fast check", name, req, got)
			}
			for p := range r.fields {
				if d.Properties[p] == nil {
					t.Errorf("%s.%s: in the fast check, not in the document", name, p)
				}
			}
			for p, ps := range d.Properties {
				f := r.fields[p]
				if f == nil {
					t.Errorf("%s.%s: in the document, not in the fast check", name, p)
					continue
				}
				if ps.Value.ReadOnly {
					t.Errorf("%s.%s: read-only (the fast check would accept it in a request)", name, p)
				}
				sub := p
				if path != "" {
					sub = path + "." + p
				}
				walk(sub, ps.Value, f)
			}
		case d.Type.Is("array"):
			if r.kind != rArray {
				t.Errorf("%s: an array in the document, kind %d in the fast check", name, r.kind)
				return
			}
			want := -1
			if d.MaxItems != nil {
				want = int(*d.MaxItems)
			}
			if r.maxItems != want {
				t.Errorf("%s: maxItems %d in the document, %d in the fast check", name, want, r.maxItems)
			}
			walk(path+"[]", d.Items.Value, r.elem)
		case d.Type.Is("string"):
			if d.Format != "" {
				// A formatted string (a date) is left to the generic check.
				if r.kind != rOther {
					t.Errorf("%s: format %q, which the fast check does not check, yet it takes it", name, d.Format)
				}
				return
			}
			if r.kind != rString {
				t.Errorf("%s: a string in the document, kind %d in the fast check", name, r.kind)
				return
			}
			want := -1
			if d.MaxLength != nil {
				want = int(*d.MaxLength)
			}
			if r.maxLength != want {
				t.Errorf("%s: maxLength %d in the document, %d in the fast check", name, want, r.maxLength)
			}
			var enum []string
			for _, e := range d.Enum {
				enum = append(enum, fmt.Sprint(e))
			}
			slices.Sort(enum)
			got := slices.Clone(r.enum)
			slices.Sort(got)
			if !slices.Equal(enum, got) {
				t.Errorf("%s: enum %v in the document, %v in the fast check", name, enum, got)
			}
		case d.Type.Is("integer"):
			if r.kind != rInteger {
				t.Errorf("%s: an integer in the document, kind %d in the fast check", name, r.kind)
				return
			}
			if d.Max != nil || (d.Min != nil && *d.Min != 0) {
				t.Errorf("%s: bounds the fast check does not check", name)
			}
			if (d.Min != nil) != r.nonNegative {
				t.Errorf("%s: minimum %v in the document, non-negative %v in the fast check", name, d.Min, r.nonNegative)
			}
			if d.Format != "" && d.Format != "int64" && d.Format != "int32" {
				t.Errorf("%s: format %q", name, d.Format)
			}
		default:
			t.Errorf("%s: type %v, which the fast check does not take", name, d.Type)
		}
	}
	walk("", doc.Components.Schemas["NodeReport"].Value, reportSchema)
	for p := range reportLimits {
		if !used[p] {
			t.Errorf("reportLimits[%q]: no such property in the document", p)
		}
	}
}

// reportBodies are valid reports (the fast check takes them) and invalid
// ones (the document refuses them).
func reportBodies() (valid, invalid []string) {
	long := func(n int, s string) string { return strings.Repeat(s, n) }
	full := map[string]any{
		"revision": 12, "status": "nack", "message": long(openapi.NodeReportMessageMaxLength, "é"),
		"load_balancer_errors": []any{map[string]any{"load_balancer_id": "lb_1", "message": "bad", "object_id": long(openapi.LoadBalancerErrorObjectIdMaxLength, "x"), "field": "port"}},
		"node_errors":          []any{map[string]any{"kind": "bind", "message": "cannot bind 127.0.0.1:80 <&>"}},
		"members":              []any{map[string]any{"id": "mem_1", "status": "online", "check": long(openapi.NodeReportMembersItemCheckMaxLength, "L")}, map[string]any{"id": "mem_2", "status": "maint"}},
		"stats": []any{map[string]any{"load_balancer_id": "lb_1", "requests_total": 9223372036854775807, "bytes_in": -3, "nodes_reporting": 2,
			"listeners": []any{map[string]any{"id": "lis_1", "connections_current": 1}},
			"pools":     []any{map[string]any{"id": "pool_1", "errors": 0, "members": []any{map[string]any{"id": "mem_1", "responses_2xx": 7}}}}}},
		"vips": []any{"127.0.0.1", long(openapi.NodeReportVipsItemMaxLength, "a")},
	}
	fullJSON, _ := json.Marshal(full) // escapes <, >, & as \u003c…
	valid = []string{
		`{"revision":0,"status":"ack"}`,
		" {\n\t\"status\" : \"ack\" , \"revision\" : 5 }\r\n",
		`{"revision":5,"status":"ack","message":"caf\u00e9 \/ \"q\" \\ \ud83d\ude00 😀"}`,
		`{"revision":5,"status":"ack","load_balancer_errors":[],"node_errors":[],"members":[],"stats":[],"vips":[]}`,
		string(fullJSON),
	}
	invalid = []string{
		``, `null`, `[]`, `"x"`, `{}`,
		`{"status":"ack"}`, `{"revision":1}`,
		`{"revision":1,"status":"ACK"}`, `{"revision":-1,"status":"ack"}`, `{"revision":1.5,"status":"ack"}`,
		`{"revision":"1","status":"ack"}`, `{"revision":null,"status":"ack"}`, `{"revision":1,"status":null}`,
		`{"revision":1,"status":"ack","extra":1}`, `{"Revision":1,"status":"ack"}`, `{"revision":1,"ſtatus":"ack"}`,
		`{"revision":1,"status":"ack","members":[{"id":"m","status":"online","x":1}]}`,
		`{"revision":1,"status":"ack","members":[{"status":"online"}]}`,
		`{"revision":1,"status":"ack","members":[{"id":"m","status":"up"}]}`,
		`{"revision":1,"status":"ack","members":null}`,
		`{"revision":1,"status":"ack","members":{}}`,
		`{"revision":1,"status":"ack","message":"` + long(openapi.NodeReportMessageMaxLength+1, "é") + `"}`,
		`{"revision":1,"status":"ack","members":[{"id":"m","status":"online","check":"` + long(openapi.NodeReportMembersItemCheckMaxLength+1, "x") + `"}]}`,
		`{"revision":1,"status":"ack","vips":["` + long(openapi.NodeReportVipsItemMaxLength+1, "1") + `"]}`,
		`{"revision":1,"status":"ack","message":"a\nb"}`, `{"revision":1,"status":"ack","message":"a\u0000b"}`,
		`{"revision":1,"status":"ack","message":"a` + "\x7f" + `b"}`, `{"revision":1,"status":"ack","message":"a` + "\u0085" + `b"}`,
		`{"revision":1,"status":"ack","message":"a` + "\u2028" + `b"}`, `{"revision":1,"status":"ack","message":"a\u2029b"}`,
		`{"revision":1,"status":"ack","message":"a\u007Fb"}`, `{"revision":1,"status":"ack","vips":["a\tb"]}`,
		`{"revision":1,"status":"ack","node_errors":[{"kind":"x","message":"m"}]}`,
		`{"revision":1,"status":"ack","node_errors":[` + strings.TrimSuffix(long(openapi.NodeReportNodeErrorsMaxItems+1, `{"kind":"disk","message":"m"},`), ",") + `]}`,
		`{"revision":1,"status":"ack","load_balancer_errors":[{"load_balancer_id":"lb"}]}`,
		`{"revision":1,"status":"ack","stats":[{"load_balancer_id":"lb","pools":[{"id":"p","members":[{"id":"m","bogus":1}]}]}]}`,
		`{"revision":1,"status":"ack","stats":[{"load_balancer_id":"lb","listeners":[{}]}]}`,
		`{"revision":1,"status":"ack","stats":[{"load_balancer_id":"lb","bytes_in":1.5}]}`,
		`{"revision":1,"status":"ack"} x`, `{"revision":1,"status":"ack"}{}`, `{"revision":1,"status":"ack"`,
		"{\"revision\":1,\"status\":\"ack\",\"message\":\"\xff\"}",
	}
	return valid, invalid
}

// genericCheck says whether the document's generic check (api/reqcheck)
// accepts body as a report.
func genericCheck(t testing.TB, check echo.MiddlewareFunc, contentType, body string) error {
	t.Helper()
	req := httptest.NewRequest(http.MethodPost, "/v1/nodes/n1/reports", strings.NewReader(body))
	req.Header.Set(echo.HeaderContentType, contentType)
	c := echo.New().NewContext(req, httptest.NewRecorder())
	return check(func(echo.Context) error { return nil })(c)
}

// TestReportFastCheckIsExact: the fast check of reports never accepts what
// the document's generic check refuses (listed bodies and random mutations
// of valid ones), takes the valid reports agents send, and decodes them as
// the generic path does.
func TestReportFastCheckIsExact(t *testing.T) {
	check, err := reqcheck.New(openapi.Document)
	if err != nil {
		t.Fatal(err)
	}
	const ct = "application/json"
	valid, invalid := reportBodies()
	for _, b := range valid {
		if err := genericCheck(t, check, ct, b); err != nil {
			t.Fatalf("valid body %.80q: the generic check refuses it: %v", b, err)
		}
		got, ok := decodeReport(ct+"; charset=utf-8", []byte(b))
		if !ok {
			t.Errorf("valid body %.80q: the fast check does not take it", b)
			continue
		}
		var want openapi.NodeReport
		if err := json.Unmarshal([]byte(b), &want); err != nil {
			t.Fatal(err)
		}
		gj, _ := json.Marshal(got)
		wj, _ := json.Marshal(want)
		if !bytes.Equal(gj, wj) {
			t.Errorf("valid body %.80q: decoded as %s, want %s", b, gj, wj)
		}
	}
	for _, b := range invalid {
		if genericCheck(t, check, ct, b) == nil {
			t.Fatalf("invalid body %.80q: the generic check takes it (fix the test's list)", b)
		}
		if _, ok := decodeReport(ct, []byte(b)); ok {
			t.Errorf("invalid body %.200q: the fast check takes it", b)
		}
	}
	for _, ct := range []string{"", "text/plain", "application/problem+json", "application/jsonx"} {
		if _, ok := decodeReport(ct, []byte(valid[0])); ok {
			t.Errorf("Content-Type %q: the fast check takes it", ct)
		}
	}

	// Random mutations of the valid bodies: whatever the fast check takes,
	// the generic check takes too.
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("{}[]\",:\\/ \t\n0123456789-.eEabcdefnrtuxyz\x7f\xc2\x85\xe2\x80\xa8")
	taken, tried := 0, 0
	for range 4000 {
		b := []byte(valid[rng.IntN(len(valid)-1)]) // not the long one
		for range 1 + rng.IntN(3) {
			i := rng.IntN(len(b) + 1)
			switch rng.IntN(3) {
			case 0: // insert
				b = slices.Insert(b, i, alphabet[rng.IntN(len(alphabet))])
			case 1: // delete
				if i < len(b) {
					b = slices.Delete(b, i, i+1)
				}
			default: // replace
				if i < len(b) {
					b[i] = alphabet[rng.IntN(len(alphabet))]
				}
			}
		}
		tried++
		if _, ok := decodeReport(ct, b); !ok {
			continue
		}
		taken++
		if err := genericCheck(t, check, ct, string(b)); err != nil {
			t.Errorf("mutated body %q: the fast check takes it, the generic check refuses it: %v", b, err)
		}
	}
	t.Logf("%d of %d mutated bodies taken by the fast check, all taken by the generic check", taken, tried)
}
