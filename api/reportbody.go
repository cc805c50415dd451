package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"mime"
	"net/http"
	"reflect"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/labstack/echo/v4"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// A cheap, exact check of node reports (issue 10). The generic check of
// requests against the API document (api/reqcheck) decodes a body into
// untyped values, walks the document's schema over them and leaves them for
// the handler to bind again: for a fleet's reports (up to hundreds of KB
// each, hundreds a second) most of a replica's CPU. A report takes this path
// instead: one pass over its bytes checks them against the NodeReport schema
// (reportSchema: the properties of the generated types, the limits of
// openapi/limits.gen.go; TestReportSchemaMatchesDocument ties both to
// openapi.yaml), then one decode into openapi.NodeReport, and the handler
// runs on it. The pass is strict: whatever it is not sure of (a key or
// string with escapes it does not read, a number written with an exponent,
// a date) it does not accept, and the request goes the generic way, which
// names the field of any error as before and accepts what is valid.

// rkind is the kind of JSON value a schema node takes.
type rkind uint8

const (
	rObject rkind = iota
	rArray
	rString
	rInteger
	// rOther is any other value, which the pass leaves to the generic check.
	rOther
)

// rschema is a node of the report's schema, as the fast pass checks it.
type rschema struct {
	kind rkind
	// fields are an object's properties by name (additionalProperties:
	// false); required lists those it must have.
	fields   map[string]*rschema
	required []string
	// elem is an array's items.
	elem *rschema
	// maxItems (arrays), maxLength (strings, in characters): -1 for none.
	maxItems, maxLength int
	// nonNegative: an integer with minimum 0.
	nonNegative bool
	// enum lists a string's values (nil: any).
	enum []string
}

// reportLimit is what the document bounds at a property path of NodeReport
// ("members", "members[].check", "stats[].pools[].members").
type reportLimit struct {
	maxItems, maxLength int
	nonNegative         bool
	enum                []string
}

// reportLimits are the bounds the document states for NodeReport, from the
// generated constants.
var reportLimits = map[string]reportLimit{
	"revision":                         {nonNegative: openapi.NodeReportRevisionMin == 0},
	"status":                           {enum: []string{string(openapi.Ack), string(openapi.Nack)}},
	"message":                          {maxLength: openapi.NodeReportMessageMaxLength},
	"load_balancer_errors":             {maxItems: openapi.NodeReportLoadBalancerErrorsMaxItems},
	"load_balancer_errors[].message":   {maxLength: openapi.LoadBalancerErrorMessageMaxLength},
	"load_balancer_errors[].object_id": {maxLength: openapi.LoadBalancerErrorObjectIdMaxLength},
	"load_balancer_errors[].field":     {maxLength: openapi.LoadBalancerErrorFieldMaxLength},
	"node_errors":                      {maxItems: openapi.NodeReportNodeErrorsMaxItems},
	"node_errors[].message":            {maxLength: openapi.NodeErrorMessageMaxLength},
	"members":                          {maxItems: openapi.NodeReportMembersMaxItems},
	"members[].check":                  {maxLength: openapi.NodeReportMembersItemCheckMaxLength},
	"stats":                            {maxItems: openapi.NodeReportStatsMaxItems},
	"stats[].listeners":                {maxItems: openapi.LoadBalancerStatsListenersMaxItems},
	"stats[].pools":                    {maxItems: openapi.LoadBalancerStatsPoolsMaxItems},
	"stats[].pools[].members":          {maxItems: openapi.PoolStatsMembersMaxItems},
	"vips":                             {maxItems: openapi.NodeReportVipsMaxItems},
	"vips[]":                           {maxLength: openapi.NodeReportVipsItemMaxLength},
	"node_errors[].kind":               {enum: enumOf(openapi.Bind, openapi.Config, openapi.Disk, openapi.HaproxyStart, openapi.Other, openapi.Reload, openapi.SnapshotFormat)},
	"members[].status":                 {enum: enumOf(openapi.NodeReportMembersStatusDraining, openapi.NodeReportMembersStatusMaint, openapi.NodeReportMembersStatusNoMonitor, openapi.NodeReportMembersStatusOffline, openapi.NodeReportMembersStatusOnline)},
}

func enumOf[T ~string](vs ...T) []string {
	out := make([]string, len(vs))
	for i, v := range vs {
		out[i] = string(v)
	}
	return out
}

// reportSchema is NodeReport's schema for the fast pass.
var reportSchema = buildReportSchema(reflect.TypeFor[openapi.NodeReport](), "")

var timeType = reflect.TypeFor[time.Time]()

// buildReportSchema makes the schema of t, a generated type, at path: an
// object's properties are its fields' JSON names, required unless
// omitempty; the bounds come from reportLimits.
func buildReportSchema(t reflect.Type, path string) *rschema {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	lim := reportLimits[path]
	s := &rschema{kind: rOther, maxItems: -1, maxLength: -1, nonNegative: lim.nonNegative, enum: lim.enum}
	switch {
	case t == timeType:
	case t.Kind() == reflect.Struct:
		s.kind = rObject
		s.fields = map[string]*rschema{}
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" || name == "-" {
				continue
			}
			p := name
			if path != "" {
				p = path + "." + name
			}
			s.fields[name] = buildReportSchema(f.Type, p)
			if !strings.Contains(opts, "omitempty") && f.Type.Kind() != reflect.Pointer {
				s.required = append(s.required, name)
			}
		}
	case t.Kind() == reflect.Slice:
		s.kind = rArray
		if lim.maxItems > 0 {
			s.maxItems = lim.maxItems
		}
		s.elem = buildReportSchema(t.Elem(), path+"[]")
	case t.Kind() == reflect.String:
		s.kind = rString
		if lim.maxLength > 0 {
			s.maxLength = lim.maxLength
		}
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Int64:
		s.kind = rInteger
	}
	return s
}

// decodeReport checks a report's body (data, sent with Content-Type
// contentType) in one pass and decodes it. ok is false when the pass does
// not accept it: the generic check then says why, or accepts it.
func decodeReport(contentType string, data []byte) (body *openapi.NodeReport, ok bool) {
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil || mt != echo.MIMEApplicationJSON || len(data) == 0 || !utf8.Valid(data) {
		return nil, false
	}
	sc := reportScanner{data: data}
	if !sc.value(reportSchema) {
		return nil, false
	}
	sc.space()
	if sc.i != len(data) {
		return nil, false
	}
	body = new(openapi.NodeReport)
	if err := json.Unmarshal(data, body); err != nil {
		return nil, false
	}
	return body, true
}

// reportScanner checks JSON bytes against an rschema.
type reportScanner struct {
	data []byte
	i    int
}

func (s *reportScanner) space() {
	for s.i < len(s.data) {
		switch s.data[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

// next skips white space and says whether the next byte is c (and takes it).
func (s *reportScanner) next(c byte) bool {
	s.space()
	if s.i < len(s.data) && s.data[s.i] == c {
		s.i++
		return true
	}
	return false
}

// value checks the value at the scanner against sc.
func (s *reportScanner) value(sc *rschema) bool {
	s.space()
	switch sc.kind {
	case rObject:
		return s.object(sc)
	case rArray:
		if !s.next('[') {
			return false
		}
		if s.next(']') {
			return true
		}
		for n := 1; ; n++ {
			if sc.maxItems >= 0 && n > sc.maxItems {
				return false
			}
			if !s.value(sc.elem) {
				return false
			}
			if s.next(']') {
				return true
			}
			if !s.next(',') {
				return false
			}
		}
	case rString:
		return s.str(sc)
	case rInteger:
		return s.integer(sc)
	}
	return false
}

func (s *reportScanner) object(sc *rschema) bool {
	if !s.next('{') {
		return false
	}
	var seen uint64 // required properties seen, by index in sc.required
	if !s.next('}') {
		for {
			s.space()
			key, ok := s.key()
			if !ok {
				return false
			}
			f := sc.fields[key]
			if f == nil || !s.next(':') || !s.value(f) {
				return false
			}
			for i, r := range sc.required {
				if r == key {
					seen |= 1 << i
				}
			}
			if s.next('}') {
				break
			}
			if !s.next(',') {
				return false
			}
		}
	}
	return seen == 1<<len(sc.required)-1
}

// key reads an object's key without escapes.
func (s *reportScanner) key() (string, bool) {
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return "", false
	}
	start := s.i + 1
	for j := start; j < len(s.data); j++ {
		switch c := s.data[j]; {
		case c == '"':
			s.i = j + 1
			return string(s.data[start:j]), true
		case c == '\\' || c < 0x20 || c >= 0x7f:
			return "", false
		}
	}
	return "", false
}

// str checks a string: no control character (reqcheck's rule for every
// string of a body: C0, DEL, C1, U+2028, U+2029, escaped or not), at most
// maxLength characters (an escape counts as one, a surrogate pair as two:
// never fewer than JSON Schema counts), one of enum.
func (s *reportScanner) str(sc *rschema) bool {
	if s.i >= len(s.data) || s.data[s.i] != '"' {
		return false
	}
	start := s.i + 1
	n, escaped := 0, false
	j := start
	for {
		if j >= len(s.data) {
			return false
		}
		c := s.data[j]
		if c == '"' {
			break
		}
		n++
		switch {
		case c == '\\':
			escaped = true
			if j+1 >= len(s.data) {
				return false
			}
			switch s.data[j+1] {
			case '"', '\\', '/':
				j += 2
			case 'u':
				if j+6 > len(s.data) {
					return false
				}
				var r rune
				for _, h := range s.data[j+2 : j+6] {
					switch {
					case h >= '0' && h <= '9':
						r = r<<4 | rune(h-'0')
					case h >= 'a' && h <= 'f':
						r = r<<4 | rune(h-'a'+10)
					case h >= 'A' && h <= 'F':
						r = r<<4 | rune(h-'A'+10)
					default:
						return false
					}
				}
				if isControlRune(r) {
					return false
				}
				j += 6
			default: // \b \f \n \r \t: control characters
				return false
			}
		case c < 0x20 || c == 0x7f:
			return false
		case c < 0x80:
			j++
		default:
			r, size := utf8.DecodeRune(s.data[j:])
			if r == utf8.RuneError && size <= 1 || isControlRune(r) {
				return false
			}
			j += size
		}
	}
	s.i = j + 1
	if sc.maxLength >= 0 && n > sc.maxLength {
		return false
	}
	if sc.enum != nil {
		if escaped {
			return false
		}
		v := s.data[start:j]
		for _, e := range sc.enum {
			if string(v) == e {
				return true
			}
		}
		return false
	}
	return true
}

// isControlRune is reqcheck's control character: C0, DEL, C1, U+2028, U+2029.
func isControlRune(r rune) bool {
	return r < 0x20 || (r >= 0x7f && r <= 0x9f) || r == '\u2028' || r == '\u2029'
}

// integer checks an integer written without fraction or exponent.
func (s *reportScanner) integer(sc *rschema) bool {
	if s.i < len(s.data) && s.data[s.i] == '-' {
		if sc.nonNegative {
			return false
		}
		s.i++
	}
	start := s.i
	for s.i < len(s.data) && s.data[s.i] >= '0' && s.data[s.i] <= '9' {
		s.i++
	}
	digits := s.i - start
	if digits == 0 || digits > 1 && s.data[start] == '0' {
		return false
	}
	if s.i < len(s.data) {
		switch s.data[s.i] {
		case '.', 'e', 'E':
			return false
		}
	}
	return true
}

// checkRequests is the document's check of requests (check) for every
// request but node reports, which take the fast pass (decodeReport) and
// then the handler directly; a report the pass does not accept takes the
// generic check and the generated route as any request.
func (s *Server) checkRequests(check echo.MiddlewareFunc, h *handlers) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		generic := check(next)
		return func(c echo.Context) error {
			req := c.Request()
			if isStreamRequest(req) {
				// A stream's body is the agent's messages, read while it
				// lasts (node_stream.go): the generated binding checks
				// its parameters, nothing reads its body up front.
				ctx := context.WithValue(req.Context(), streamAuthKey{}, req.Header.Get(echo.HeaderAuthorization))
				c.SetRequest(req.WithContext(context.WithValue(ctx, streamConnectionKey{}, connectionUpgrade(req.Header))))
				return next(c)
			}
			if req.Method == http.MethodPut && strings.HasPrefix(req.URL.Path, "/v1/nodes/") {
				// A registering agent learns the newest node protocol
				// this API serves (3: it may open a stream at once).
				c.Response().Header().Set(agentProtocolHeader, protocolMax)
			}
			if isPollRequest(req) { // pollcheck.go
				if done, err := pollFast(c, h); done {
					return err
				}
				return generic(c)
			}
			if req.Method != http.MethodPost || !isReportPath(req.URL.Path) {
				return generic(c)
			}
			id := c.Param("id")
			if req.URL.RawQuery != "" || req.URL.RawPath != "" || id == "" || utf8.RuneCountInString(id) > openapi.ParamIDMaxLength ||
				strings.ContainsFunc(id, isControlRune) || strings.ContainsRune(id, '%') || !utf8.ValidString(id) {
				return generic(c)
			}
			var data []byte
			if req.Body != nil && req.Body != http.NoBody {
				var err error
				if data, err = io.ReadAll(req.Body); err != nil {
					return err // the body limit's 413, say
				}
				_ = req.Body.Close()
			}
			body, ok := decodeReport(req.Header.Get(echo.HeaderContentType), data)
			if !ok {
				req.Body = io.NopCloser(bytes.NewReader(data))
				req.ContentLength = int64(len(data))
				return generic(c)
			}
			res, err := h.ReportNode(req.Context(), openapi.ReportNodeRequestObject{Id: id, Body: body})
			if err != nil {
				return err
			}
			return res.VisitReportNodeResponse(c.Response())
		}
	}
}
