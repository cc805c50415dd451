// Package reqcheck validates API requests against the OpenAPI document before
// the handlers run.
//
// New parses the document once and returns an echo middleware. For every
// request whose method and path are an operation of the document, the
// middleware checks the path, query and header parameters and the JSON body
// against the document's schemas (required properties, unknown properties,
// enums, bounds, lengths and JSON types) and returns a *validate.Error listing
// every problem, each named by a JSON-path-like field relative to the body
// root ("port", "timeouts.client_ms", "conditions[1].values[0]") or by the
// parameter's name ("limit", "If-Match"). The error is returned, never
// written: the echo HTTPErrorHandler renders it.
//
// Beyond the schemas, every string of the body (object keys included) and
// every query, path and declared header parameter value is rejected if it
// holds a control character: C0 (U+0000–U+001F), DEL, C1 (U+0080–U+009F),
// U+2028 or U+2029. The PEM fields `certificate` and `private_key` at the top
// level and `action.fixed_response.body` may hold tabs, CR and LF, but no
// other control character.
//
// Requests to paths or methods the document does not declare (/healthz,
// /metrics) pass through untouched. Security requirements are not checked
// here: authentication is another middleware's job. Nothing is enforced
// about the body's size either; a body-limit middleware should run first,
// and an error reading the body (such as its 413) is returned as is.
//
// The body is read once and put back: the next handler reads the same bytes
// from c.Request().Body. The restored body also has a ValidatedValue() any
// method returning the decoded JSON value (json.Number for numbers), the
// convention of kin-openapi's openapi3filter.Options.KeepValidatedValue that
// the code oapi-codegen generates binds from, matching member names exactly
// instead of decoding the body a second time. Defaults of the document are
// not filled in, neither in the body nor in the query.
package reqcheck
