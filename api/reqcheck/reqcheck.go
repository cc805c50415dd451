package reqcheck

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/legacy"
	"github.com/labstack/echo/v4"

	"github.com/fulcrumlb/fulcrum/api/validate"
)

// bodyField names the request body as a whole in a FieldError.
const bodyField = "body"

// checker holds what New builds once: the parsed document, the router that
// maps a request to its operation and the validation options.
type checker struct {
	router routers.Router
	// paramOptions validate parameters only: the body is checked by
	// checkBody, and security requirements are left to the authentication
	// middleware.
	paramOptions *openapi3filter.Options
	// schemaOptions validate a decoded body.
	schemaOptions []openapi3.SchemaValidationOption
}

// New loads the document once and returns an echo middleware that validates every request whose route is in the
// document against it (path/query/header parameters and JSON bodies) before the handler runs.
//
// A request that fails gets a *validate.Error listing every problem; the middleware returns it and does not call
// the next handler. Requests whose method and path the document does not declare pass through untouched. New
// fails if the document cannot be parsed or is not a valid OpenAPI document; unknown keys (which JSON Schema
// ignores, such as the stray key a YAML flow mapping makes of text after a comma) are tolerated.
func New(doc []byte) (echo.MiddlewareFunc, error) {
	ch, err := newChecker(doc)
	if err != nil {
		return nil, err
	}
	return ch.middleware, nil
}

func newChecker(doc []byte) (*checker, error) {
	t, err := openapi3.NewLoader().LoadFromData(doc)
	if err != nil {
		return nil, fmt.Errorf("reqcheck: parsing the API document: %w", err)
	}
	// Match operations on the request path alone, whatever host the API is
	// reached at: the document's servers name the development address.
	t.Servers = nil
	// Unknown keys are tolerated: JSON Schema ignores them, so they cannot
	// change what is accepted. Any other problem of the document is an
	// error.
	var extra []string
	if err := t.Validate(context.Background(), openapi3.EnableMultiError()); err != nil {
		var other []error
		extra, other = splitExtraSiblings(err)
		if len(other) > 0 {
			return nil, fmt.Errorf("reqcheck: invalid API document: %w", errors.Join(other...))
		}
		slices.Sort(extra)
		extra = slices.Compact(extra)
	}
	router, err := legacy.NewRouter(t, openapi3.AllowExtraSiblingFields(extra...)) // validates the document again
	if err != nil {
		return nil, fmt.Errorf("reqcheck: %w", err)
	}
	schemaOptions := []openapi3.SchemaValidationOption{
		openapi3.MultiErrors(),
		openapi3.VisitAsRequest(),
		// Messages are built from the errors' fields, never from Error(),
		// which would otherwise render the schema and the value.
		openapi3.DisableSchemaErrorDetails(),
	}
	if t.IsOpenAPI31OrLater() {
		schemaOptions = append(schemaOptions, openapi3.EnableJSONSchema2020())
	}
	return &checker{
		router: router,
		paramOptions: &openapi3filter.Options{
			ExcludeRequestBody:      true,
			MultiError:              true,
			AuthenticationFunc:      openapi3filter.NoopAuthenticationFunc,
			SkipSettingDefaults:     true,
			SchemaValidationOptions: []openapi3.SchemaValidationOption{openapi3.DisableSchemaErrorDetails()},
		},
		schemaOptions: schemaOptions,
	}, nil
}

// splitExtraSiblings splits err, an error of openapi3.T.Validate with
// openapi3.EnableMultiError, into the unknown keys it complains about and
// its other errors.
func splitExtraSiblings(err error) (extra []string, other []error) {
	if me, ok := err.(openapi3.MultiError); ok {
		for _, err := range me {
			x, o := splitExtraSiblings(err)
			extra, other = append(extra, x...), append(other, o...)
		}
		return extra, other
	}
	if fields, ok := onlyExtraSiblings(err); ok {
		return fields, nil
	}
	return nil, []error{err}
}

// onlyExtraSiblings returns the unknown keys err complains about, and
// whether it complains about nothing else.
func onlyExtraSiblings(err error) ([]string, bool) {
	var errs []error
	switch e := err.(type) {
	case *openapi3.ExtraSiblingFieldsError:
		return e.Fields, true
	case openapi3.MultiError:
		errs = e
	case interface{ Unwrap() []error }:
		errs = e.Unwrap()
	case interface{ Unwrap() error }:
		if inner := e.Unwrap(); inner != nil {
			return onlyExtraSiblings(inner)
		}
	}
	if len(errs) == 0 {
		return nil, false
	}
	var fields []string
	for _, err := range errs {
		f, ok := onlyExtraSiblings(err)
		if !ok {
			return nil, false
		}
		fields = append(fields, f...)
	}
	return fields, true
}

func (ch *checker) middleware(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		req := c.Request()
		route, pathParams, err := ch.router.FindRoute(req)
		if err != nil {
			// Not an operation of the document: /healthz, /metrics, or a
			// method the path does not have (echo answers 404 or 405).
			return next(c)
		}
		if err := ch.check(req, route, pathParams); err != nil {
			return err
		}
		return next(c)
	}
}

// check validates req, the request of route. It returns a *validate.Error
// listing every problem, the error reading the body failed with, or nil.
func (ch *checker) check(req *http.Request, route *routers.Route, pathParams map[string]string) error {
	var fields []validate.FieldError

	// Parameters. kin-openapi sees a copy of the request without its body,
	// so that nothing (its security checks included) reads the body.
	preq := req.WithContext(req.Context())
	preq.Body, preq.GetBody, preq.ContentLength = http.NoBody, nil, 0
	query := req.URL.Query()
	input := &openapi3filter.RequestValidationInput{
		Request:     preq,
		PathParams:  pathParams,
		QueryParams: query,
		Route:       route,
		Options:     ch.paramOptions,
	}
	if err := openapi3filter.ValidateRequest(req.Context(), input); err != nil {
		fields = requestErrorFields(fields, err)
	}
	fields = paramControlFields(fields, req, query, route, pathParams)

	// Body.
	if rb := route.Operation.RequestBody; rb != nil && rb.Value != nil {
		var err error
		if fields, err = ch.checkBody(fields, req, rb.Value); err != nil {
			return err
		}
	}

	if len(fields) > 0 {
		return &validate.Error{Fields: fields}
	}
	return nil
}

// checkBody reads, restores and validates the body of req against rb,
// appending the problems it finds to fields. The error is that of reading
// the body.
func (ch *checker) checkBody(fields []validate.FieldError, req *http.Request, rb *openapi3.RequestBody) ([]validate.FieldError, error) {
	var data []byte
	if req.Body != nil && req.Body != http.NoBody {
		var err error
		data, err = io.ReadAll(req.Body)
		if err != nil {
			// For example the 413 of a body-limit middleware: keep it.
			return fields, err
		}
		_ = req.Body.Close()
	}
	restoreBody(req, data, nil, false)

	if len(data) == 0 {
		if rb.Required {
			fields = append(fields, validate.FieldError{Field: bodyField, Message: "is required"})
		}
		return fields, nil
	}
	if len(rb.Content) == 0 {
		return fields, nil // any body goes
	}

	mt, known := bodyMediaType(req.Header.Get(echo.HeaderContentType), rb.Content)
	if !known {
		return append(fields, validate.FieldError{
			Field:   bodyField,
			Message: "must be sent with Content-Type " + strings.Join(declaredMediaTypes(rb.Content), " or "),
		}), nil
	}
	if mt == nil || mt.Schema == nil || mt.Schema.Value == nil {
		return fields, nil // a declared media type that is not JSON, or has no schema
	}

	if !utf8.Valid(data) {
		return append(fields, validate.FieldError{Field: bodyField, Message: "is not valid JSON: it must be UTF-8 encoded"}), nil
	}
	value, msg := decodeJSON(data)
	if msg != "" {
		return append(fields, validate.FieldError{Field: bodyField, Message: msg}), nil
	}
	restoreBody(req, data, value, true)

	if err := mt.Schema.Value.VisitJSON(value, ch.schemaOptions...); err != nil {
		fields = schemaErrorFields(fields, err, bodyPrefix{root: value})
	}
	fields = bodyControlFields(fields, value)
	return fields, nil
}

// restoreBody makes data the body of req again. When decoded, the body also
// carries value, the JSON data decodes to.
func restoreBody(req *http.Request, data []byte, value any, decoded bool) {
	newBody := func() io.ReadCloser {
		if decoded {
			return &validatedBody{Reader: bytes.NewReader(data), value: value}
		}
		return io.NopCloser(bytes.NewReader(data))
	}
	req.Body = newBody()
	req.ContentLength = int64(len(data))
	req.GetBody = func() (io.ReadCloser, error) { return newBody(), nil }
}

// bodyMediaType returns the JSON media type of content that contentType (a
// Content-Type header, parameters such as charset ignored) selects. It
// returns nil and true for a declared media type that is not JSON, which is
// not checked, and false when contentType is not declared by content.
func bodyMediaType(contentType string, content openapi3.Content) (mt *openapi3.MediaType, known bool) {
	name, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return nil, false
	}
	if isJSON(name) {
		mt = content[name]
		return mt, mt != nil
	}
	return nil, content[name] != nil
}

func isJSON(mediaType string) bool {
	return mediaType == "application/json" || strings.HasSuffix(mediaType, "+json")
}

func declaredMediaTypes(content openapi3.Content) []string {
	names := make([]string, 0, len(content))
	for name := range content {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// decodeJSON decodes data, which must hold exactly one JSON value, keeping
// numbers as json.Number. The message says what is wrong when it does not.
func decodeJSON(data []byte) (any, string) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var value any
	if err := dec.Decode(&value); err != nil {
		var se *json.SyntaxError
		switch {
		case errors.As(err, &se):
			return nil, fmt.Sprintf("is not valid JSON: %s (at byte %d)", se.Error(), se.Offset)
		case errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
			return nil, "is not valid JSON: it ends unexpectedly"
		default:
			return nil, "is not valid JSON"
		}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, "is not valid JSON: it must hold a single value, without anything after it"
	}
	return value, ""
}

// validatedBody is the request body left for the handler when it was
// decoded: the bytes that were read, and the value they decoded to, as
// kin-openapi's openapi3filter.Options.KeepValidatedValue leaves it.
type validatedBody struct {
	*bytes.Reader
	value any
}

// Close does nothing: the original body was closed once read.
func (*validatedBody) Close() error { return nil }

// ValidatedValue returns the decoded JSON body: map[string]any, []any,
// string, json.Number, bool or nil.
func (b *validatedBody) ValidatedValue() any { return b.value }
