package haproxy

// Routing rules: http-request and use_backend lines of an http(s) listener's
// frontend (their conditions are ACLs, acl.go). Their lines come from the
// rules.

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// buildRules renders the routing rules of an http(s) listener.
//
// HAProxy runs every http-request rule before it picks a backend, so a rule's
// priority could not be honoured if forward rules became plain use_backend
// lines while deny, redirect and fixed responses were http-request rules. All
// rules are therefore evaluated in priority order as http-request rules: a
// matching forward rule only records its id in txn.fulcrum_rule, and every
// rule is guarded by !fulcrum_routed, so once a forward rule matched no later
// rule applies. The use_backend lines then map the recorded rule id to its
// pool; for weighted pools, a forward rule also draws txn.fulcrum_rnd =
// rand(sum of weights) once, and each pool takes its own range of that draw.
func buildRules(fv *frontendView, l Listener, pools map[string]*Pool) error {
	rules := slices.Clone(l.Rules)
	slices.SortStableFunc(rules, func(a, b Rule) int { return cmp.Compare(a.Priority, b.Priority) })
	hasForward := slices.ContainsFunc(rules, func(r Rule) bool { return r.Action.Type == "forward" })
	seen := map[string]bool{}
	var acls []aclLine
	for _, r := range rules {
		if err := checkID(r.ID); err != nil {
			return fieldError("listener "+l.ID+": rule", err)
		}
		if seen[r.ID] {
			return fieldError("rule "+r.ID, errors.New("is listed twice"))
		}
		seen[r.ID] = true
		fail := func(field string, err error) error { return fieldError("rule "+r.ID+": "+field, err) }
		ro := Origin{Kind: KindRule, ID: r.ID}

		var cond []string
		if hasForward {
			cond = append(cond, "!fulcrum_routed")
		}
		for i, c := range r.Conditions {
			name := fmt.Sprintf("%s_c%d", r.ID, i)
			lines, err := conditionACL(name, c)
			if err != nil {
				return fail(fmt.Sprintf("conditions[%d]", i), err)
			}
			acls = appendACLs(acls, lines, ro.atIndex("conditions[].values", i))
			if c.Invert {
				name = "!" + name
			}
			cond = append(cond, name)
		}
		ifCond := ""
		if len(cond) > 0 {
			ifCond = " if " + strings.Join(cond, " ")
		}

		a := r.Action
		switch a.Type {
		case "forward":
			var targets []WeightedPool
			var index []int // of each target in a.Pools
			sum := 0
			for i, wp := range a.Pools {
				if err := poolRef(wp.PoolID, pools, true); err != nil {
					return fail(fmt.Sprintf("action.pools[%d]", i), err)
				}
				if wp.Weight < 0 || wp.Weight > 256 {
					return fail(fmt.Sprintf("action.pools[%d].weight", i), errors.New("must be between 0 and 256"))
				}
				if wp.Weight > 0 {
					targets = append(targets, wp)
					index = append(index, i)
					sum += wp.Weight
				}
			}
			if len(targets) == 0 {
				return fail("action.pools", errors.New("needs a pool with a weight above 0"))
			}
			fv.HTTPRequest = append(fv.HTTPRequest, viewLine{"set-var(txn.fulcrum_rule) str(" + r.ID + ")" + ifCond, ro.at("action")})
			routed := "{ var(txn.fulcrum_rule) -m str " + r.ID + " }"
			const poolField = "action.forward.pools[].pool_id"
			if len(targets) == 1 {
				fv.UseBackends = append(fv.UseBackends, viewLine{targets[0].PoolID + " if " + routed, ro.atIndex(poolField, index[0])})
				break
			}
			fv.HTTPRequest = append(fv.HTTPRequest, viewLine{fmt.Sprintf("set-var(txn.fulcrum_rnd) rand(%d) if %s", sum, routed),
				ro.at("action.forward.pools")})
			lo := 0
			for i, t := range targets {
				fv.UseBackends = append(fv.UseBackends, viewLine{fmt.Sprintf("%s if %s { var(txn.fulcrum_rnd) -m int %d:%d }",
					t.PoolID, routed, lo, lo+t.Weight-1), ro.atIndex(poolField, index[i])})
				lo += t.Weight
			}
		case "redirect":
			rd, err := redirectRule(a)
			if err != nil {
				return fail("action", err)
			}
			fv.HTTPRequest = append(fv.HTTPRequest, viewLine{rd + ifCond, ro.at("action.redirect")})
		case "fixed_response":
			ret, err := returnRule(a)
			if err != nil {
				return fail("action", err)
			}
			fv.HTTPRequest = append(fv.HTTPRequest, viewLine{ret + ifCond, ro.at("action.fixed_response")})
		case "deny":
			fv.HTTPRequest = append(fv.HTTPRequest, viewLine{"deny deny_status 403" + ifCond, ro.at("action")})
		default:
			return fail("action.type", fmt.Errorf("unknown action %s", strconv.QuoteToASCII(a.Type)))
		}
		if ifCond == "" && a.Type != "forward" {
			// An unconditional deny, redirect or response ends every
			// request: later rules could never apply (and HAProxy warns
			// about them).
			break
		}
	}
	if hasForward {
		// The renderer's own, for the listener's rules.
		acls = append(acls, aclLine{Name: "fulcrum_routed", Criterion: "var(txn.fulcrum_rule) -m found", Origin: fv.Origin})
	}
	fv.ACLs = append(fv.ACLs, acls...)
	return nil
}

// redirectRule returns the http-request redirect action of a.
func redirectRule(a Action) (string, error) {
	code := a.RedirectCode
	switch code {
	case 0:
		code = 302
	case 301, 302, 303, 307, 308:
	default:
		return "", fmt.Errorf("redirect code %d is not one of 301, 302, 303, 307, 308", code)
	}
	var kind, target string
	var err error
	switch {
	case a.RedirectURL != "":
		kind = "location"
		target, err = quoteLogFormat(a.RedirectURL)
	case a.RedirectPrefix != "":
		kind = "prefix"
		target, err = quoteLogFormat(a.RedirectPrefix)
	case a.RedirectHost == "" && a.RedirectPort == 0 && a.RedirectScheme != "":
		kind = "scheme"
		if err := checkScheme(a.RedirectScheme); err != nil {
			return "", fmt.Errorf("redirect_scheme: %w", err)
		}
		target = a.RedirectScheme
	case a.RedirectHost != "" || a.RedirectPort != 0:
		// Location: <scheme>://<host>[:<port>]<path and query>, keeping
		// the parts of the request that the rule does not set.
		kind = "location"
		scheme := "%[ssl_fc,iif(https,http)]"
		if a.RedirectScheme != "" {
			if err := checkScheme(a.RedirectScheme); err != nil {
				return "", fmt.Errorf("redirect_scheme: %w", err)
			}
			scheme = a.RedirectScheme
		}
		host := "%[req.hdr(host),field(1,:)]"
		if a.RedirectHost != "" {
			if err := checkHostname(a.RedirectHost); err != nil {
				return "", fmt.Errorf("redirect_host: %w", err)
			}
			host = a.RedirectHost
		}
		port := ""
		switch {
		case a.RedirectPort < 0 || a.RedirectPort > 65535:
			return "", fmt.Errorf("redirect_port %d is not between 1 and 65535", a.RedirectPort)
		case a.RedirectPort > 0:
			port = ":" + strconv.Itoa(a.RedirectPort)
		case a.RedirectHost == "":
			// Keep the request's port with its host.
			host = "%[req.hdr(host)]"
		}
		target, err = quoteWord(scheme + "://" + host + port + "%[pathq]")
	default:
		return "", errors.New("a redirect needs a url, a prefix, or a scheme, host or port")
	}
	if err != nil {
		return "", fmt.Errorf("redirect %s: %w", kind, err)
	}
	return fmt.Sprintf("redirect %s %s code %d", kind, target, code), nil
}

// checkScheme returns an error unless s is a URI scheme (RFC 3986:
// a letter, then letters, digits, '+', '-' or '.').
func checkScheme(s string) error {
	if s == "" {
		return errEmpty
	}
	if len(s) > 32 {
		return errors.New("scheme must be at most 32 characters")
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z':
		case i > 0 && ('0' <= c && c <= '9' || c == '+' || c == '-' || c == '.'):
		default:
			return fmt.Errorf("%s is not a URI scheme", strconv.QuoteToASCII(s))
		}
	}
	return nil
}

// returnRule returns the http-request return action of a fixed response.
func returnRule(a Action) (string, error) {
	if a.StatusCode < 200 || a.StatusCode > 599 {
		return "", fmt.Errorf("status_code %d is not between 200 and 599", a.StatusCode)
	}
	ret := "return status " + strconv.Itoa(a.StatusCode)
	if a.Body == "" {
		// No payload: HAProxy sends an empty body and ignores any
		// content-type.
		return ret, nil
	}
	if len(a.Body) > MaxFixedResponseBody {
		return "", fmt.Errorf("body is %d bytes; HAProxy can return at most %d", len(a.Body), MaxFixedResponseBody)
	}
	ct := a.ContentType
	if ct == "" {
		ct = "text/plain"
	}
	ctWord, err := quoteWord(ct)
	if err != nil {
		return "", fmt.Errorf("content_type: %w", err)
	}
	body, err := quoteBody(a.Body)
	if err != nil {
		return "", fmt.Errorf("body: %w", err)
	}
	return ret + " content-type " + ctWord + " string " + body, nil
}
