package haproxy

import (
	"bytes"
	"strconv"
	"strings"
)

// Kind is the kind of API object a configuration line comes from.
type Kind uint8

// Kinds of the objects lines come from.
const (
	// KindNone marks the renderer's own lines: the global and defaults
	// sections, the Prometheus exporter, blank lines.
	KindNone Kind = iota
	KindLoadBalancer
	KindListener
	KindPool
	KindMember
	KindRule
)

// String is the kind as the API names it ("" for KindNone).
func (k Kind) String() string {
	switch k {
	case KindLoadBalancer:
		return "load_balancer"
	case KindListener:
		return "listener"
	case KindPool:
		return "pool"
	case KindMember:
		return "member"
	case KindRule:
		return "routing_rule"
	}
	return ""
}

// Origin is where one line of a rendered configuration comes from: the API
// object and the field of it the line renders.
type Origin struct {
	Kind Kind
	ID   string // the object's id; "" for KindNone
	// Field is the API field of the object the line renders, as a path
	// ("port", "timeouts.client_ms", "conditions[].values"); "" for the
	// object as a whole (its section header, lines the renderer adds for it).
	// A "[]" in it stands for Index.
	Field string
	Index int
}

// Path is Field with its "[]" replaced by the index: "conditions[2].values".
func (o Origin) Path() string {
	before, after, ok := strings.Cut(o.Field, "[]")
	if !ok {
		return o.Field
	}
	return before + "[" + strconv.Itoa(o.Index) + "]" + after
}

// at is o for one field of the object.
func (o Origin) at(field string) Origin {
	o.Field = field
	return o
}

// atIndex is o for an indexed field ("conditions[].values", i).
func (o Origin) atIndex(field string, i int) Origin {
	o.Field, o.Index = field, i
	return o
}

// Rendered is a rendered configuration with where each of its lines comes
// from.
type Rendered struct {
	Text []byte
	// Origins[n-1] is the origin of line n of Text.
	Origins []Origin
}

// Origin returns the origin of line n (1-based, as HAProxy numbers lines);
// the zero Origin when there is no such line.
func (r *Rendered) Origin(n int) Origin {
	if n < 1 || n > len(r.Origins) {
		return Origin{}
	}
	return r.Origins[n-1]
}

// cfgWriter writes a configuration line by line, recording each line's
// origin when origins is not nil.
type cfgWriter struct {
	b       bytes.Buffer
	origins []Origin
	track   bool
}

// line writes one line, the concatenation of parts.
func (w *cfgWriter) line(o Origin, parts ...string) {
	for _, p := range parts {
		w.b.WriteString(p)
	}
	w.b.WriteByte('\n')
	if w.track {
		w.origins = append(w.origins, o)
	}
}

// blank writes an empty line.
func (w *cfgWriter) blank() { w.line(Origin{}) }

// viewLine is a line of a section (without its keyword, which the section
// writer adds) and where it comes from.
type viewLine struct {
	Text   string
	Origin Origin
}

// ServerOrigin is the origin of the line of the server HAProxy names name
// (servers are named by member ids); the zero Origin when there is none.
func (r *Rendered) ServerOrigin(name string) Origin {
	for _, o := range r.Origins {
		if o.Kind == KindMember && o.ID == name {
			return o
		}
	}
	return Origin{}
}
