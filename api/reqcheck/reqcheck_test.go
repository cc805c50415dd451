package reqcheck_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/oapi-codegen/runtime"

	"github.com/fulcrumlb/fulcrum/api/reqcheck"
	"github.com/fulcrumlb/fulcrum/api/validate"
	"github.com/fulcrumlb/fulcrum/openapi"
)

// handled is what the test handlers answer: the body they read and whether
// it carried a decoded value.
type handled struct {
	Body           string `json:"body"`
	ValidatedValue bool   `json:"validated_value"`
}

// errorsBody is what the test error handler renders for a *validate.Error.
type errorsBody struct {
	Errors []validate.FieldError `json:"errors"`
}

// newServer builds an echo server with the middleware on the real document
// and trivial handlers for a few of its routes and for /healthz.
func newServer(t *testing.T) *echo.Echo {
	t.Helper()
	check, err := reqcheck.New(openapi.Document)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	e := echo.New()
	e.HTTPErrorHandler = func(err error, c echo.Context) {
		var ve *validate.Error
		if errors.As(err, &ve) {
			_ = c.JSON(http.StatusUnprocessableEntity, errorsBody{Errors: ve.Fields})
			return
		}
		e.DefaultHTTPErrorHandler(err, c)
	}
	e.Use(check)
	h := func(c echo.Context) error {
		_, validated := c.Request().Body.(interface{ ValidatedValue() any })
		data, err := io.ReadAll(c.Request().Body)
		if err != nil {
			return err
		}
		return c.JSON(http.StatusOK, handled{Body: string(data), ValidatedValue: validated})
	}
	e.GET("/healthz", h)
	e.POST("/healthz", h)
	e.GET("/v1/load-balancers", h)
	e.POST("/v1/load-balancers", h)
	e.POST("/v1/listeners", h)
	e.PUT("/v1/listeners", h) // not in the document
	e.PATCH("/v1/listeners/:id", h)
	e.DELETE("/v1/listeners/:id", h)
	e.POST("/v1/routing-rules", h)
	e.POST("/v1/certificates", h)
	e.POST("/v1/tokens", h)
	e.POST("/v1/tenants", h)
	return e
}

type request struct {
	method, target, body string
	header               map[string]string // Content-Type defaults to application/json
}

func do(t *testing.T, e *echo.Echo, r request) *httptest.ResponseRecorder {
	t.Helper()
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	req := httptest.NewRequest(r.method, r.target, body)
	if r.body != "" {
		req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	}
	for k, v := range r.header {
		if v == "" {
			req.Header.Del(k)
		} else {
			req.Header.Set(k, v)
		}
	}
	rec := httptest.NewRecorder()
	e.ServeHTTP(rec, req)
	return rec
}

// passes asserts that r reached the handler and that the handler read the
// body unchanged.
func passes(t *testing.T, e *echo.Echo, r request) handled {
	t.Helper()
	rec := do(t, e, r)
	if rec.Code != http.StatusOK {
		t.Fatalf("%s %s: status %d, want 200; body %s", r.method, r.target, rec.Code, rec.Body)
	}
	var got handled
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decoding %s: %v", rec.Body, err)
	}
	if got.Body != r.body {
		t.Errorf("handler read body %q, want %q", got.Body, r.body)
	}
	return got
}

// fails asserts that r was refused with exactly the field errors want, in
// any order.
func fails(t *testing.T, e *echo.Echo, r request, want ...validate.FieldError) {
	t.Helper()
	got := fieldErrors(t, e, r)
	sortFields(got)
	want = slices.Clone(want)
	sortFields(want)
	if !slices.Equal(got, want) {
		t.Errorf("%s %s %s:\n got %v\nwant %v", r.method, r.target, r.body, got, want)
	}
}

func fieldErrors(t *testing.T, e *echo.Echo, r request) []validate.FieldError {
	t.Helper()
	rec := do(t, e, r)
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("%s %s %s: status %d, want 422; body %s", r.method, r.target, r.body, rec.Code, rec.Body)
	}
	var got errorsBody
	if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
		t.Fatalf("decoding %s: %v", rec.Body, err)
	}
	return got.Errors
}

func sortFields(f []validate.FieldError) {
	slices.SortFunc(f, func(a, b validate.FieldError) int {
		if c := strings.Compare(a.Field, b.Field); c != 0 {
			return c
		}
		return strings.Compare(a.Message, b.Message)
	})
}

func fe(field, message string) validate.FieldError {
	return validate.FieldError{Field: field, Message: message}
}

const validListener = `{"load_balancer_id":"lb_1","protocol":"http","port":80,"name":"web","labels":{"env":"prod"},` +
	`"timeouts":{"client_ms":1000},"rate_limit":null,"hsts":null,"default_pool_id":null,"allowed_cidrs":["10.0.0.0/8"]}`

func TestValidRequestReachesHandler(t *testing.T) {
	e := newServer(t)
	got := passes(t, e, request{method: http.MethodPost, target: "/v1/listeners?dry_run=true", body: validListener})
	if !got.ValidatedValue {
		t.Error("the restored body has no ValidatedValue method")
	}
	passes(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: validListener,
		header: map[string]string{echo.HeaderContentType: "application/json; charset=utf-8"}})
	passes(t, e, request{method: http.MethodPatch, target: "/v1/listeners/lsn_1", body: `{"port":443}`,
		header: map[string]string{"If-Match": `"3"`}})
	passes(t, e, request{method: http.MethodGet, target: "/v1/load-balancers?limit=200&label=env%3Dprod&label=team"})
	passes(t, e, request{method: http.MethodDelete, target: "/v1/listeners/lsn_1?cascade=true"})
}

func TestUnknownRoutesPassThrough(t *testing.T) {
	e := newServer(t)
	// Neither the query nor the body are looked at.
	passes(t, e, request{method: http.MethodGet, target: "/healthz?x=%00"})
	passes(t, e, request{method: http.MethodPost, target: "/healthz", body: "not json \x01",
		header: map[string]string{echo.HeaderContentType: "text/plain"}})
	// A method the document does not have for a path it has.
	passes(t, e, request{method: http.MethodPut, target: "/v1/listeners", body: `{"bogus":`})
}

func TestListenerCreateErrors(t *testing.T) {
	e := newServer(t)
	fails(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: `{"port":0,"protocol":"udp","bogus":1}`},
		fe("load_balancer_id", "is required"),
		fe("port", "must be between 1 and 65535"),
		fe("protocol", "must be one of: tcp, http, https"),
		fe("bogus", "is not a known field"),
	)
}

func TestErrorIsValidateError(t *testing.T) {
	check, err := reqcheck.New(openapi.Document)
	if err != nil {
		t.Fatal(err)
	}
	called := false
	h := check(func(echo.Context) error { called = true; return nil })
	req := httptest.NewRequest(http.MethodPost, "/v1/listeners", strings.NewReader(`{"port":70000}`))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	err = h(echo.New().NewContext(req, httptest.NewRecorder()))
	if called {
		t.Error("the handler ran")
	}
	var ve *validate.Error
	if !errors.As(err, &ve) {
		t.Fatalf("error %T %v, want *validate.Error", err, err)
	}
	want := []validate.FieldError{fe("port", "must be between 1 and 65535"), fe("load_balancer_id", "is required"), fe("protocol", "is required")}
	sortFields(ve.Fields)
	sortFields(want)
	if !slices.Equal(ve.Fields, want) {
		t.Errorf("got %v, want %v", ve.Fields, want)
	}
}

func TestNestedErrors(t *testing.T) {
	e := newServer(t)
	fails(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: `{"load_balancer_id":"lb","protocol":"tcp","port":1,` +
		`"timeouts":{"client_ms":0,"server_ms":86400001,"x":1},` +
		`"rate_limit":{"per_second":0,"type":"bytes","extra":true},` + // allOf + nullable
		`"hsts":{"max_age_seconds":-1},` +
		`"insert_headers":{"x_forwarded_for":"yes"},` +
		`"connection_limit":1.5,"name":5,"labels":[],` +
		`"allowed_cidrs":["10.0.0.0/8",7],"certificate_ids":"cert_1"}`},
		fe("timeouts.client_ms", "must be between 1 and 86400000"),
		fe("timeouts.server_ms", "must be between 1 and 86400000"),
		fe("timeouts.x", "is not a known field"),
		fe("rate_limit.per_second", "must be between 1 and 1000000"),
		fe("rate_limit.type", "must be one of: requests, connections"),
		fe("rate_limit.extra", "is not a known field"),
		fe("hsts.max_age_seconds", "must be between 0 and 63072000"),
		fe("insert_headers.x_forwarded_for", "must be a boolean (true or false)"),
		fe("connection_limit", "must be an integer"),
		fe("name", "must be a string"),
		fe("labels", "must be an object"),
		fe("allowed_cidrs[1]", "must be a string"),
		fe("certificate_ids", "must be an array"),
	)
	fails(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: `{"load_balancer_id":"lb","protocol":"tcp","port":1,"rate_limit":{}}`},
		fe("rate_limit.per_second", "is required"))
	fails(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: `{"load_balancer_id":null,"protocol":"tcp","port":1,"name":"` + strings.Repeat("é", 256) + `"}`},
		fe("load_balancer_id", "must not be null"),
		fe("name", "must be at most 255 characters"))
	fails(t, e, request{method: http.MethodPost, target: "/v1/tenants", body: `{"name":""}`},
		fe("name", "must not be empty"))
	fails(t, e, request{method: http.MethodPost, target: "/v1/tokens", body: `{"kind":"tenant","expires_at":"tomorrow"}`},
		fe("expires_at", "must be an RFC 3339 date and time, such as 2025-01-31T12:00:00Z"))
}

func TestArrayElementPaths(t *testing.T) {
	e := newServer(t)
	fails(t, e, request{method: http.MethodPost, target: "/v1/routing-rules", body: `{"listener_id":"lsn","priority":0,` +
		`"conditions":[{"field":"path","values":["/api/"]},{"field":"cookie","match":"glob","values":[1,"ok"],"nope":true},{"field":"host","values":[]}],` +
		`"action":{"type":"forward","forward":{"pools":[{"pool_id":"p1"},{"weight":300}]},"redirect":{"code":304,"port":0}}}`},
		fe("priority", "must be between 1 and 50000"),
		fe("conditions[1].match", "must be one of: exact, prefix, suffix, contains, regex"),
		fe("conditions[1].values[0]", "must be a string"),
		fe("conditions[1].nope", "is not a known field"),
		fe("conditions[2].values", "must not be empty"),
		fe("action.forward.pools[1].pool_id", "is required"),
		fe("action.forward.pools[1].weight", "must be between 0 and 256"),
		fe("action.redirect.code", "must be one of: 301, 302, 303, 307, 308"),
		fe("action.redirect.port", "must be between 1 and 65535"),
	)
	// A label key that looks like an index is an object key, not an index.
	fails(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: `{"load_balancer_id":"lb","protocol":"tcp","port":1,"labels":{"0":5}}`},
		fe("labels.0", "must be a string"))
}

func TestControlCharacters(t *testing.T) {
	e := newServer(t)
	const base = `"load_balancer_id":"lb","protocol":"tcp","port":1`
	for _, c := range []string{`\u0000`, `\u0007`, `\t`, `\n`, `\r`, `\u001f`, `\u007f`, `\u0085`, `\u009f`, `\u2028`, `\u2029`} {
		fails(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: `{` + base + `,"name":"a` + c + `b","labels":{"env":"` + c + `"}}`},
			fe("name", "contains a control character"),
			fe("labels.env", "contains a control character"))
	}
	// Printable non-ASCII is fine.
	passes(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: `{` + base + `,"name":"café ☕ \u00a0","labels":{"env":"prød"}}`})
	// Keys and array elements are walked too; a key with a control
	// character is quoted.
	fails(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: `{` + base + `,"labels":{"a\u0000":"x"},"allowed_cidrs":["ok","\u0001"]}`},
		fe(`labels."a\x00"`, "contains a control character"),
		fe("allowed_cidrs[1]", "contains a control character"))
	// Schema errors and control characters are reported together.
	fails(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: `{"protocol":"tcp","port":0,"description":"line\nbreak"}`},
		fe("load_balancer_id", "is required"),
		fe("port", "must be between 1 and 65535"),
		fe("description", "contains a control character"))
}

const pem = "-----BEGIN CERTIFICATE-----\r\nMIIB\tIjANBgkqhkiG9w0BAQEFAAOCAQ8A\nMIIBCgKCAQEA\n-----END CERTIFICATE-----\n"

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func TestMultilineFields(t *testing.T) {
	e := newServer(t)
	passes(t, e, request{method: http.MethodPost, target: "/v1/certificates",
		body: `{"name":"web","certificate":` + jsonString(pem) + `,"private_key":` + jsonString(strings.ReplaceAll(pem, "CERTIFICATE", "PRIVATE KEY")) + `}`})
	// Other control characters are still refused there.
	fails(t, e, request{method: http.MethodPost, target: "/v1/certificates",
		body: `{"certificate":` + jsonString(pem+"\x00") + `,"private_key":` + jsonString("\u2028") + `}`},
		fe("certificate", "contains a control character"),
		fe("private_key", "contains a control character"))
	// Only at the top level: not in a label, not in the name.
	fails(t, e, request{method: http.MethodPost, target: "/v1/certificates",
		body: `{"name":"a\nb","labels":{"certificate":"a\nb"},"certificate":"x","private_key":"y"}`},
		fe("name", "contains a control character"),
		fe("labels.certificate", "contains a control character"))

	rule := func(body string) string {
		return `{"listener_id":"lsn","priority":1,"action":{"type":"fixed_response","fixed_response":{"status_code":200,"content_type":"text/plain","body":` + body + `}}}`
	}
	passes(t, e, request{method: http.MethodPost, target: "/v1/routing-rules", body: rule(jsonString("line 1\r\nline 2\n\tindented\n"))})
	fails(t, e, request{method: http.MethodPost, target: "/v1/routing-rules", body: rule(jsonString("bell\a"))},
		fe("action.fixed_response.body", "contains a control character"))
	fails(t, e, request{method: http.MethodPost, target: "/v1/routing-rules",
		body: `{"listener_id":"lsn","priority":1,"action":{"type":"fixed_response","fixed_response":{"status_code":200,"content_type":"text/plain\n","body":"x"}}}`},
		fe("action.fixed_response.content_type", "contains a control character"))
}

func TestParameters(t *testing.T) {
	e := newServer(t)
	fails(t, e, request{method: http.MethodGet, target: "/v1/load-balancers?limit=0"}, fe("limit", "must be between 1 and 200"))
	fails(t, e, request{method: http.MethodGet, target: "/v1/load-balancers?limit=201"}, fe("limit", "must be between 1 and 200"))
	fails(t, e, request{method: http.MethodGet, target: "/v1/load-balancers?limit=ten"}, fe("limit", "must be an integer"))
	fails(t, e, request{method: http.MethodGet, target: "/v1/load-balancers?name=a%00b&label=ok&label=a%1Fb&unknown=%E2%80%A8&page_token=%ff"},
		fe("name", "contains a control character"),
		fe("label", "contains a control character"),
		fe("unknown", "contains a control character"),
		fe("page_token", "must be valid UTF-8"))
	fails(t, e, request{method: http.MethodPost, target: "/v1/listeners?dry_run=maybe", body: validListener},
		fe("dry_run", "must be a boolean (true or false)"))
	fails(t, e, request{method: http.MethodPatch, target: "/v1/listeners/" + strings.Repeat("x", 65), body: `{}`},
		fe("id", "must be at most 64 characters"))
	fails(t, e, request{method: http.MethodPatch, target: "/v1/listeners/lsn%01", body: `{}`},
		fe("id", "contains a control character"))
	fails(t, e, request{method: http.MethodPatch, target: "/v1/listeners/lsn_1", body: `{"port":0}`,
		header: map[string]string{"If-Match": "\"3\"\x01"}},
		fe("If-Match", "contains a control character"),
		fe("port", "must be between 1 and 65535"))
	fails(t, e, request{method: http.MethodPost, target: "/v1/load-balancers", body: `{}`,
		header: map[string]string{"Idempotency-Key": "key\u0085"}},
		fe("Idempotency-Key", "contains a control character"))
}

func TestBodyNotJSON(t *testing.T) {
	e := newServer(t)
	for _, tc := range []struct {
		name        string
		contentType string
		body        string
		message     string
	}{
		{"syntax", "application/json", `{"port":`, "is not valid JSON: it ends unexpectedly"},
		{"garbage", "application/json", `port=80`, "is not valid JSON: invalid character 'p' looking for beginning of value (at byte 1)"},
		{"trailing", "application/json", `{} {}`, "is not valid JSON: it must hold a single value, without anything after it"},
		{"utf8", "application/json", "{\"name\":\"\xff\"}", "is not valid JSON: it must be UTF-8 encoded"},
		{"form", "application/x-www-form-urlencoded", `port=80`, "must be sent with Content-Type application/json"},
		{"text", "text/plain", validListener, "must be sent with Content-Type application/json"},
		{"missing", "", validListener, "must be sent with Content-Type application/json"},
		{"merge-patch", "application/merge-patch+json", validListener, "must be sent with Content-Type application/json"},
		{"top-level type", "application/json", `[]`, "must be an object"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fails(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: tc.body,
				header: map[string]string{echo.HeaderContentType: tc.contentType}},
				fe("body", tc.message))
		})
	}
	// A required body that is missing.
	fails(t, e, request{method: http.MethodPost, target: "/v1/listeners"}, fe("body", "is required"))
	// Parameter errors are still listed next to a body that is not JSON.
	fails(t, e, request{method: http.MethodPost, target: "/v1/listeners?dry_run=x", body: `nope`},
		fe("dry_run", "must be a boolean (true or false)"),
		fe("body", "is not valid JSON: invalid character 'o' in literal null (expecting 'u') (at byte 2)"))
}

func TestRenderedJSON(t *testing.T) {
	e := newServer(t)
	rec := do(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: `{"load_balancer_id":"lb","protocol":"tcp","port":0}`})
	if rec.Code != http.StatusUnprocessableEntity {
		t.Fatalf("status %d", rec.Code)
	}
	want := `{"errors":[{"field":"port","message":"must be between 1 and 65535"}]}`
	if got := strings.TrimSpace(rec.Body.String()); got != want {
		t.Errorf("got %s, want %s", got, want)
	}
}

func TestBodyReadErrorIsReturned(t *testing.T) {
	check, err := reqcheck.New(openapi.Document)
	if err != nil {
		t.Fatal(err)
	}
	h := check(func(echo.Context) error { t.Error("the handler ran"); return nil })
	req := httptest.NewRequest(http.MethodPost, "/v1/listeners", io.MultiReader(strings.NewReader(`{"port":`), errReader{}))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	if err := h(echo.New().NewContext(req, httptest.NewRecorder())); !errors.Is(err, echo.ErrStatusRequestEntityTooLarge) {
		t.Errorf("got %v, want the reader's error", err)
	}
}

type errReader struct{}

func (errReader) Read([]byte) (int, error) { return 0, echo.ErrStatusRequestEntityTooLarge }

// The restored body binds as the code oapi-codegen generates binds it.
func TestRestoredBodyBinds(t *testing.T) {
	check, err := reqcheck.New(openapi.Document)
	if err != nil {
		t.Fatal(err)
	}
	var got openapi.ListenerCreate
	h := check(func(c echo.Context) error {
		if err := runtime.BindJSONBody(c.Request(), &got); err != nil {
			return err
		}
		// GetBody gives the bytes again.
		body, err := c.Request().GetBody()
		if err != nil {
			return err
		}
		data, _ := io.ReadAll(body)
		if string(data) != validListener {
			t.Errorf("GetBody gave %q", data)
		}
		return nil
	})
	req := httptest.NewRequest(http.MethodPost, "/v1/listeners", strings.NewReader(validListener))
	req.Header.Set(echo.HeaderContentType, echo.MIMEApplicationJSON)
	if err := h(echo.New().NewContext(req, httptest.NewRecorder())); err != nil {
		t.Fatal(err)
	}
	if got.LoadBalancerId != "lb_1" || got.Port != 80 || got.Protocol != openapi.ListenerProtocolHttp || got.Name == nil || *got.Name != "web" {
		t.Errorf("bound %+v", got)
	}
}

func TestConcurrentRequests(t *testing.T) {
	e := newServer(t)
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			for range 20 {
				if i%2 == 0 {
					rec := do(t, e, request{method: http.MethodPost, target: "/v1/listeners", body: validListener})
					if rec.Code != http.StatusOK {
						t.Errorf("valid request: status %d", rec.Code)
					}
				} else {
					rec := do(t, e, request{method: http.MethodPost, target: "/v1/routing-rules", body: `{"priority":0,"conditions":[{"values":[]}]}`})
					if rec.Code != http.StatusUnprocessableEntity {
						t.Errorf("invalid request: status %d", rec.Code)
					}
				}
			}
		})
	}
	wg.Wait()
}

func TestNewRejectsBadDocuments(t *testing.T) {
	for name, doc := range map[string]string{
		"not yaml":     "openapi: [",
		"not openapi":  "openapi: 3.0.3\ninfo: {title: x}\npaths: {}\n",
		"bad schema":   "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths: {}\ncomponents: {schemas: {A: {type: strnig}}}\n",
		"unknown path": "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths: {v1: {}}\n",
	} {
		if _, err := reqcheck.New([]byte(doc)); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	// Unknown keys are tolerated.
	doc := "openapi: 3.0.3\ninfo: {title: x, version: '1'}\npaths: {}\ncomponents: {schemas: {A: {type: string, description: one, two.}}}\n"
	if _, err := reqcheck.New([]byte(doc)); err != nil {
		t.Errorf("unknown key: %v", err)
	}
}
