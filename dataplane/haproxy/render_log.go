package haproxy

import (
	"strconv"
	"strings"
)

// Access logs: a listener with AccessLog sends one record per HTTP request
// (per connection in tcp mode) to Global.AccessLogSocket, a unix datagram
// socket the agent reads (dataplane/agent/accesslog.go). Listeners without it
// render no log line, and the defaults section has none, so they log nothing.
//
// A record is one JSON object (HAProxy 2.6 has no JSON log encoding, so the
// log-format is a JSON template): its constant parts are the renderer's text
// and validated ids; numbers come from HAProxy's timers and counters; every
// value a client controls (request id, host, path, user agent) is bounded in
// length and passed through the json converter, so no request can break the
// record or add a field. Bodies, query strings, Authorization headers and
// cookies are never captured.

// AccessLogVersion is the "v" field of the records rendered here; the agent
// refuses records of another version.
const AccessLogVersion = 1

// Bounds of the client-controlled values of a record, in bytes.
const (
	accessLogRequestIDLen = 128
	accessLogHostLen      = 256
	accessLogPathLen      = 1024
	accessLogUserAgentLen = 256
	// accessLogMaxLen is the longest record HAProxy sends (its "len"); the
	// bounded values above plus the fixed fields stay well below it.
	accessLogMaxLen = 8192
)

// addAccessLogs adds the log lines of lb's listeners that have AccessLog to
// their frontends in lv.
func addAccessLogs(lv *lbView, g Global, lb LoadBalancer) error {
	if g.AccessLogSocket == "" {
		return nil
	}
	enabled := map[string]Listener{}
	for _, l := range lb.Listeners {
		if l.AccessLog {
			enabled[l.ID] = l
		}
	}
	if len(enabled) == 0 {
		return nil
	}
	target, err := quoteWord(g.AccessLogSocket)
	if err != nil {
		return fieldError("global.access_log_socket", err)
	}
	if lb.TenantID != "" {
		if err := checkID(lb.TenantID); err != nil {
			return fieldError("load balancer "+lb.ID+": tenant_id", err)
		}
	}
	for i := range lv.Frontends {
		fv := &lv.Frontends[i]
		l, ok := enabled[fv.Name]
		if !ok {
			continue
		}
		o := fv.Origin.at("access_log.enabled")
		fv.Log = []viewLine{
			{Origin: o, Text: "log " + target + " len " + strconv.Itoa(accessLogMaxLen) + " format raw local0 info"},
			{Origin: o, Text: "log-format '" + accessLogFormat(lb, fv.Mode) + "'"},
			// Connections that fail before a request or a stream (a TLS
			// handshake that fails) are logged with this format instead.
			{Origin: o, Text: "error-log-format '" + accessLogFormat(lb, "error") + "'"},
		}
		if fv.Mode == "http" {
			fv.UniqueID = true
			// First, so that requests denied, redirected or answered by a
			// later rule are logged with them.
			var vars []viewLine
			for _, r := range accessLogVars(l) {
				vars = append(vars, viewLine{Origin: o, Text: r})
			}
			fv.HTTPRequest = append(vars, fv.HTTPRequest...)
		}
	}
	return nil
}

// accessLogVars are the http-request rules that keep a request's
// client-controlled log values in transaction variables (the request is gone
// when the record is written).
func accessLogVars(l Listener) []string {
	rules := []string{}
	if l.InsertHeaders.XRequestID {
		// Members receive the generated id in X-Request-ID: log that one.
		rules = append(rules, "set-var(txn.fulcrum_rid) unique-id")
	} else {
		// The client's X-Request-ID (what members receive), else an id the
		// load balancer generates for the record.
		rules = append(rules,
			"set-var(txn.fulcrum_rid) req.fhdr(x-request-id),bytes(0,"+strconv.Itoa(accessLogRequestIDLen)+")",
			"set-var(txn.fulcrum_rid) unique-id unless { var(txn.fulcrum_rid) -m found }")
	}
	return append(rules,
		"set-var(txn.fulcrum_host) req.fhdr(host),bytes(0,"+strconv.Itoa(accessLogHostLen)+")",
		"set-var(txn.fulcrum_path) path,bytes(0,"+strconv.Itoa(accessLogPathLen)+")",
		"set-var(txn.fulcrum_ua) req.fhdr(user-agent),bytes(0,"+strconv.Itoa(accessLogUserAgentLen)+")")
}

// accessLogFormat is the log-format of lb's frontends in mode ("http" or
// "tcp"), or their error-log-format (mode "error"). It never holds a single
// quote: it is rendered in single quotes.
func accessLogFormat(lb LoadBalancer, mode string) string {
	var b strings.Builder
	b.WriteString(`{"v":` + strconv.Itoa(AccessLogVersion) + `,"type":"` + mode + `","ts":%Ts%ms`)
	b.WriteString(`,"lb":"` + lb.ID + `","tenant":"` + lb.TenantID + `","listener":"%f"`)
	b.WriteString(`,"client":"%ci","client_port":%cp,"vip":"%fi","port":%fp`)
	if mode == "error" {
		b.WriteString(`,"term":"%ts","error":"%[fc_err_str,json(utf8s)]"}`)
		return b.String()
	}
	b.WriteString(`,"pool":"%b","member":"%s","bytes_in":%U,"bytes_out":%B,"term":"%ts"`)
	if mode != "http" {
		b.WriteString(`,"tw":%Tw,"tc":%Tc,"tt":%Tt}`)
		return b.String()
	}
	b.WriteString(`,"status":%ST,"tq":%Tq,"tw":%Tw,"tc":%Tc,"tr":%Tr,"ta":%Ta,"method":"%HM"`)
	for _, f := range []struct{ field, v string }{
		{"request_id", "rid"}, {"host", "host"}, {"path", "path"}, {"user_agent", "ua"},
	} {
		b.WriteString(`,"` + f.field + `":"%[var(txn.fulcrum_` + f.v + `),json(utf8s)]"`)
	}
	b.WriteString(`}`)
	return b.String()
}
