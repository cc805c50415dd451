package haproxy

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// ACLs: the source address filters of listeners and the conditions of
// routing rules.

type aclLine struct {
	Name, Criterion, Values string
	Origin                  Origin
}

// appendACLs appends lines to acls, all of origin o.
func appendACLs(acls, lines []aclLine, o Origin) []aclLine {
	for _, l := range lines {
		l.Origin = o
		acls = append(acls, l)
	}
	return acls
}

// cidrACL returns the lines of an acl matching the source address against
// prefixes, several lines of the same name when there are many (lines of an
// acl are ORed).
func cidrACL(name string, prefixes []netip.Prefix) ([]aclLine, error) {
	words := make([]string, 0, len(prefixes))
	for i, p := range prefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("[%d] is not a valid prefix", i)
		}
		if p.Addr().Zone() != "" {
			return nil, fmt.Errorf("[%d] must not have an IPv6 zone", i)
		}
		words = append(words, p.Masked().String())
	}
	return chunkACL(name, "src", words), nil
}

// chunkACL splits values (already words) over lines of at most
// aclValuesPerLine values.
func chunkACL(name, criterion string, values []string) []aclLine {
	var out []aclLine
	for c := range slices.Chunk(values, aclValuesPerLine) {
		out = append(out, aclLine{Name: name, Criterion: criterion, Values: strings.Join(c, " ")})
	}
	return out
}

// matchFlag maps a condition match type to an ACL matching method.
var matchFlag = map[string]string{
	"exact":    "str",
	"prefix":   "beg",
	"suffix":   "end",
	"contains": "sub",
	"regex":    "reg",
}

// conditionACL returns the acl lines testing one condition (without its
// inversion, which the caller applies with "!").
func conditionACL(name string, c Condition) ([]aclLine, error) {
	flag, ok := matchFlag[c.Match]
	if !ok {
		return nil, fmt.Errorf("unknown match %s", strconv.QuoteToASCII(c.Match))
	}
	if len(c.Values) == 0 {
		return nil, errors.New("needs at least one value")
	}
	quoteAll := func() ([]string, error) {
		out := make([]string, len(c.Values))
		for i, v := range c.Values {
			w, err := quoteWord(v)
			if err != nil {
				return nil, fmt.Errorf("values[%d]: %w", i, err)
			}
			out[i] = w
		}
		return out, nil
	}
	var fetch string
	switch c.Field {
	case "host":
		// The Host header without its port, so that "example.com" also
		// matches "example.com:8080".
		const host = "req.hdr(host),field(1,:) -i"
		if c.Match != "exact" {
			fetch = host
			break
		}
		// Exact host names may be wildcards: "*.example.com" matches any
		// name ending in ".example.com".
		var exact, suffix []string
		for i, v := range c.Values {
			target := &exact
			if rest, ok := strings.CutPrefix(v, "*."); ok {
				v, target = "."+rest, &suffix
			}
			w, err := quoteWord(v)
			if err != nil {
				return nil, fmt.Errorf("values[%d]: %w", i, err)
			}
			*target = append(*target, w)
		}
		lines := chunkACL(name, host+" -m str", exact)
		return append(lines, chunkACL(name, host+" -m end", suffix)...), nil
	case "path":
		fetch = "path"
	case "header":
		f, err := fetchWithArg("req.hdr", c.Key)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		fetch = f
	case "query":
		f, err := fetchWithArg("url_param", c.Key)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		fetch = f
	case "cookie":
		f, err := fetchWithArg("req.cook", c.Key)
		if err != nil {
			return nil, fmt.Errorf("key: %w", err)
		}
		fetch = f
	case "method":
		if c.Match != "exact" {
			return nil, errors.New("method conditions only match exactly")
		}
		for i, v := range c.Values {
			if err := checkToken(v); err != nil {
				return nil, fmt.Errorf("values[%d]: %w", i, err)
			}
		}
		words, err := quoteAll()
		if err != nil {
			return nil, err
		}
		return chunkACL(name, "method", words), nil
	case "source_ip":
		if c.Match != "exact" {
			return nil, errors.New("source_ip conditions only match exactly")
		}
		prefixes := make([]netip.Prefix, len(c.Values))
		for i, v := range c.Values {
			p, err := parsePrefix(v)
			if err != nil {
				return nil, fmt.Errorf("values[%d]: %w", i, err)
			}
			prefixes[i] = p
		}
		return cidrACL(name, prefixes)
	default:
		return nil, fmt.Errorf("unknown field %s", strconv.QuoteToASCII(c.Field))
	}
	words, err := quoteAll()
	if err != nil {
		return nil, err
	}
	return chunkACL(name, fetch+" -m "+flag, words), nil
}

// parsePrefix parses a CIDR or a bare address (a /32 or /128).
func parsePrefix(s string) (netip.Prefix, error) {
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return p, fmt.Errorf("%s is not a CIDR", strconv.QuoteToASCII(s))
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return p, fmt.Errorf("%s is not an IP address or CIDR", strconv.QuoteToASCII(s))
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return p.Masked(), nil
}
