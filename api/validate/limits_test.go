package validate

import (
	"fmt"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// docProperty is one property of the API document, anywhere in a component
// schema (inline objects and array items followed, references not).
type docProperty struct {
	where string // e.g. "ListenerCreate.port", "NodeGroupCreate.reserved_ports[]"
	name  string // the property's own name ("port"); an array item's is its array's
	s     *openapi3.Schema
}

func docProperties(t *testing.T) []docProperty {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromData(openapi.Document)
	if err != nil {
		t.Fatal(err)
	}
	var out []docProperty
	var walk func(where, name string, s *openapi3.Schema)
	walk = func(where, name string, s *openapi3.Schema) {
		for pname, p := range s.Properties {
			if p.Ref == "" && p.Value != nil {
				out = append(out, docProperty{where + "." + pname, pname, p.Value})
				walk(where+"."+pname, pname, p.Value)
			}
		}
		if it := s.Items; it != nil && it.Ref == "" && it.Value != nil {
			out = append(out, docProperty{where + "[]", name, it.Value})
			walk(where+"[]", name, it.Value)
		}
	}
	for name, s := range doc.Components.Schemas {
		if s.Ref == "" && s.Value != nil {
			walk(name, "", s.Value)
		}
	}
	if len(out) < 100 {
		t.Fatalf("found only %d properties in the document", len(out))
	}
	return out
}

// checkBound runs validate on a value at the document's bound (valid) and one
// past it (invalid, an error naming the field).
func checkBound[V any](t *testing.T, where string, validate func(e *Errors, field string, v V) bool, at, past V) {
	t.Helper()
	var e Errors
	if !validate(&e, "f", at) || e.Len() != 0 {
		t.Errorf("%s: %v (the document's bound) refused: %v", where, short(at), e.List())
	}
	e = Errors{}
	if validate(&e, "f", past) || e.Len() != 1 || e.List()[0].Field != "f" {
		t.Errorf("%s: %v (past the document's bound) got %v, want one error on the field", where, short(past), e.List())
	}
}

// isNode says whether where is in a node's schema, whose name is a hostname
// (validate.Hostname), not an object name.
func isNode(where string) bool {
	schema, _, _ := strings.Cut(where, ".")
	return schema == "Node" || schema == "NodeCreate" || schema == "NodeUpdate"
}

func short(v any) string {
	s := fmt.Sprint(v)
	if len(s) > 20 {
		return fmt.Sprintf("%d characters", len(s))
	}
	return s
}

// TestLimitsMatchDocument: the validators whose limits are not passed by the
// caller (names, descriptions, ports, hostnames) use the bounds openapi.yaml
// states for every field they check: a value at the bound passes, one past
// it is refused on the field.
func TestLimitsMatchDocument(t *testing.T) {
	var names, descriptions, ports, addresses int
	for _, p := range docProperties(t) {
		s := p.s
		switch {
		case p.name == "name" && s.MaxLength != nil && !isNode(p.where):
			names++
			n := int(*s.MaxLength)
			if n != MaxNameLength {
				t.Errorf("%s: maxLength %d, validate.MaxNameLength %d", p.where, n, MaxNameLength)
			}
			checkBound(t, p.where, Name, strings.Repeat("n", n), strings.Repeat("n", n+1))
		case p.name == "description" && s.MaxLength != nil:
			descriptions++
			n := int(*s.MaxLength)
			if n != MaxDescriptionLength {
				t.Errorf("%s: maxLength %d, validate.MaxDescriptionLength %d", p.where, n, MaxDescriptionLength)
			}
			checkBound(t, p.where, Description, strings.Repeat("d", n), strings.Repeat("d", n+1))
		case s.Type.Is("integer") && (p.name == "port" || p.name == "reserved_ports") && (s.Min != nil || s.Max != nil):
			ports++
			if s.Min == nil || s.Max == nil {
				t.Errorf("%s: a port with only one bound", p.where)
				continue
			}
			lo, hi := int(*s.Min), int(*s.Max)
			checkBound(t, p.where+" minimum", Port, lo, lo-1)
			checkBound(t, p.where+" maximum", Port, hi, hi+1)
		case p.name == "address" && s.MaxLength != nil:
			addresses++
			n := int(*s.MaxLength)
			host := func(n int) string { // labels of 63 characters and a shorter last one
				var b strings.Builder
				for b.Len() < n {
					if b.Len() > 0 {
						b.WriteByte('.')
					}
					b.WriteString(strings.Repeat("a", min(63, n-b.Len())))
				}
				return b.String()
			}
			hostname := func(e *Errors, field, v string) bool { return Hostname(e, field, v, false) }
			checkBound(t, p.where, hostname, host(n), host(n+1))
		}
	}
	// The document names them all: a renamed property must not slip past.
	if names < 16 || descriptions < 16 || ports < 5 || addresses < 2 {
		t.Errorf("checked %d names, %d descriptions, %d ports, %d addresses: fewer than the document has", names, descriptions, ports, addresses)
	}
	t.Logf("checked %d names, %d descriptions, %d ports, %d addresses", names, descriptions, ports, addresses)
}
