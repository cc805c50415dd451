package haproxy

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// A backend section per pool, a server line per member. Its lines come from
// the pool, but for the server lines, which come from the members.

type backendView struct {
	Name         string
	Origin       Origin // the pool
	Mode         string
	Balance      string
	BalanceField string // the pool field the balance line stands for
	Retries      int
	Redispatch   bool
	Timeouts     []viewLine
	Cookie       string
	StickTable   string
	Stick        []string // stick <...>
	HTTPCheck    bool
	CheckSend    string
	CheckExpect  string
	Servers      []serverView
}

type serverView struct {
	Name, Addr, Options string
}

func (b *backendView) write(w *cfgWriter) {
	o := b.Origin
	w.blank()
	w.line(o, "backend ", b.Name)
	w.line(o.at("protocol"), "    mode ", b.Mode)
	w.line(o.at(b.BalanceField), "    balance ", b.Balance)
	w.line(o.at("retries"), "    retries ", strconv.Itoa(b.Retries))
	if b.Redispatch {
		w.line(o.at("redispatch"), "    option redispatch")
	}
	for _, l := range b.Timeouts {
		w.line(l.Origin, "    timeout ", l.Text)
	}
	sp := o.at("session_persistence")
	if b.Cookie != "" {
		w.line(sp, "    cookie ", b.Cookie)
	}
	if b.StickTable != "" {
		w.line(sp, "    stick-table ", b.StickTable)
	}
	for _, s := range b.Stick {
		w.line(sp, "    stick ", s)
	}
	if b.HTTPCheck {
		w.line(o.at("health_monitor"), "    option httpchk")
		w.line(o.at("health_monitor"), "    http-check send ", b.CheckSend)
		w.line(o.at("health_monitor.expected_codes"), "    http-check expect ", b.CheckExpect)
	}
	for _, s := range b.Servers {
		// The one member value HAProxy resolves or parses on its own.
		w.line(Origin{Kind: KindMember, ID: s.Name, Field: "address"}, "    server ", s.Name, " ", s.Addr, " ", s.Options)
	}
}

// balance maps pool algorithms to HAProxy balance arguments.
var balance = map[string]string{
	"round_robin":        "roundrobin",
	"static_round_robin": "static-rr",
	"least_connections":  "leastconn",
	"source_ip":          "source",
	"uri":                "uri",
	"random":             "random",
	"first":              "first",
}

// statusCodes checks an expected status list such as "200-399" or
// "200,204,301-302": comma-separated codes or lo-hi ranges of three-digit
// codes from 100 to 599.
func statusCodes(s string) error {
	if s == "" {
		return errEmpty
	}
	if len(s) > 256 {
		return errors.New("must be at most 256 characters")
	}
	for entry := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(entry, "-")
		if !isRange {
			hi = lo
		}
		var n [2]int
		for i, code := range [2]string{lo, hi} {
			v, err := strconv.Atoi(code)
			if len(code) != 3 || err != nil || code[0] == '+' || v < 100 || v > 599 {
				return fmt.Errorf("%s is not a status code from 100 to 599 or a range of them", strconv.QuoteToASCII(entry))
			}
			n[i] = v
		}
		if n[0] > n[1] {
			return fmt.Errorf("range %s starts above its end", entry)
		}
	}
	return nil
}

func buildBackend(lb LoadBalancer, p Pool) (backendView, error) {
	fail := func(field string, err error) (backendView, error) {
		return backendView{}, fieldError("pool "+p.ID+": "+field, err)
	}
	po := Origin{Kind: KindPool, ID: p.ID}
	bv := backendView{Name: p.ID, Origin: po, BalanceField: "algorithm", Redispatch: p.Redispatch}
	switch p.Protocol {
	case "tcp", "http":
		bv.Mode = p.Protocol
	default:
		return fail("protocol", fmt.Errorf("unknown protocol %s", strconv.QuoteToASCII(p.Protocol)))
	}
	switch p.Algorithm {
	case "url_param":
		w, err := quoteWord(p.HashKey)
		if err == nil {
			err = checkToken(p.HashKey)
		}
		if err != nil {
			return fail("hash_key", err)
		}
		bv.Balance, bv.BalanceField = "url_param "+w, "hash_key"
	case "header":
		// "balance hdr(<name>)" takes the name up to the first ')' as is.
		if err := checkToken(p.HashKey); err != nil {
			return fail("hash_key", err)
		}
		bv.Balance, _ = quoteWord("hdr(" + p.HashKey + ")")
		bv.BalanceField = "hash_key"
	default:
		b, ok := balance[p.Algorithm]
		if !ok {
			return fail("algorithm", fmt.Errorf("unknown algorithm %s", strconv.QuoteToASCII(p.Algorithm)))
		}
		bv.Balance = b
	}
	if p.Retries < 0 {
		return fail("retries", errors.New("must not be negative"))
	}
	bv.Retries = p.Retries
	// The backend timeouts are a listener's (the model does not say which):
	// their lines stand for the pool as a whole.
	if p.ConnectTimeoutMS > 0 {
		bv.Timeouts = append(bv.Timeouts, viewLine{"connect " + ms(p.ConnectTimeoutMS), po})
	}
	if p.ServerTimeoutMS > 0 {
		bv.Timeouts = append(bv.Timeouts, viewLine{"server " + ms(p.ServerTimeoutMS), po})
	}
	if p.TunnelTimeoutMS > 0 {
		bv.Timeouts = append(bv.Timeouts, viewLine{"tunnel " + ms(p.TunnelTimeoutMS), po})
	}

	// Session persistence.
	per := p.Persistence
	expire := "30m"
	if per.CookieTTLSeconds < 0 {
		return fail("persistence.cookie_ttl_seconds", errors.New("must not be negative"))
	}
	if per.CookieTTLSeconds > 0 {
		expire = strconv.Itoa(per.CookieTTLSeconds) + "s"
	}
	cookieServers := false
	cookieName := func() (string, error) {
		if err := checkToken(per.CookieName); err != nil {
			return "", fieldError("pool "+p.ID+": persistence.cookie_name", err)
		}
		return quoteWord(per.CookieName)
	}
	switch per.Type {
	case "", "none":
	case "source_ip":
		bv.StickTable = "type " + srcTableType(lb) + " size 1m expire " + expire
		bv.Stick = []string{"on src"}
	case "cookie_insert", "cookie_rewrite", "cookie_prefix":
		name, err := cookieName()
		if err != nil {
			return backendView{}, err
		}
		switch per.Type {
		case "cookie_insert":
			bv.Cookie = name + " insert indirect nocache"
			if per.CookieTTLSeconds > 0 {
				// maxlife makes HAProxy ignore older cookies; Max-Age makes
				// the browser drop them (API: "Max-Age of the cookie").
				ttl := strconv.Itoa(per.CookieTTLSeconds)
				bv.Cookie += " maxlife " + ttl + "s attr \"Max-Age=" + ttl + "\""
			}
		case "cookie_rewrite":
			bv.Cookie = name + " rewrite"
		case "cookie_prefix":
			bv.Cookie = name + " prefix"
		}
		cookieServers = true
	case "app_cookie":
		if _, err := cookieName(); err != nil {
			return backendView{}, err
		}
		req, _ := fetchWithArg("req.cook", per.CookieName)
		res, _ := fetchWithArg("res.cook", per.CookieName)
		bv.StickTable = "type string len 64 size 1m expire " + expire
		bv.Stick = []string{"on " + req, "store-response " + res}
	default:
		return fail("persistence.type", fmt.Errorf("unknown type %s", strconv.QuoteToASCII(per.Type)))
	}

	// Health monitor.
	var check string
	if m := p.Monitor; m != nil {
		if m.IntervalMS < 0 || m.TimeoutMS < 0 || m.Rise < 0 || m.Fall < 0 {
			return fail("monitor", errors.New("interval, timeout, rise and fall must not be negative"))
		}
		check = "check"
		if m.IntervalMS > 0 {
			check += " inter " + ms(m.IntervalMS)
		}
		if m.Fall > 0 {
			check += " fall " + strconv.Itoa(m.Fall)
		}
		if m.Rise > 0 {
			check += " rise " + strconv.Itoa(m.Rise)
		}
		if m.TimeoutMS > 0 {
			bv.Timeouts = append(bv.Timeouts, viewLine{"check " + ms(m.TimeoutMS), po.at("health_monitor.timeout_ms")})
		}
		switch m.Type {
		case "tcp":
		case "http", "https":
			send, expect, err := httpCheck(m)
			if err != nil {
				return fail("monitor", err)
			}
			bv.HTTPCheck, bv.CheckSend, bv.CheckExpect = true, send, expect
			if m.Type == "https" {
				check += " check-ssl verify none"
			}
		default:
			return fail("monitor.type", fmt.Errorf("unknown type %s", strconv.QuoteToASCII(m.Type)))
		}
	}

	var proxy string
	switch p.ProxyProtocol {
	case "", "none":
	case "v1":
		proxy = "send-proxy"
	case "v2":
		proxy = "send-proxy-v2"
	default:
		return fail("proxy_protocol", fmt.Errorf("unknown version %s", strconv.QuoteToASCII(p.ProxyProtocol)))
	}

	members := slices.Clone(p.Members)
	slices.SortStableFunc(members, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	seen := map[string]bool{}
	for _, m := range members {
		if err := checkID(m.ID); err != nil {
			return fail("member", err)
		}
		if seen[m.ID] {
			return fail("member "+m.ID, errors.New("is listed twice"))
		}
		seen[m.ID] = true
		sv, err := buildServer(m, check, cookieServers, proxy, p.TLSToMembers)
		if err != nil {
			return fail("member "+m.ID, err)
		}
		bv.Servers = append(bv.Servers, sv)
	}
	return bv, nil
}

// httpCheck returns the arguments of "http-check send" and "http-check
// expect" for an http or https monitor.
func httpCheck(m *Monitor) (send, expect string, err error) {
	method := cmp.Or(m.Method, "GET")
	if err := checkToken(method); err != nil {
		return "", "", fmt.Errorf("method: %w", err)
	}
	methodWord, _ := quoteWord(method)
	path := cmp.Or(m.Path, "/")
	if strings.ContainsAny(path, " ") {
		return "", "", errors.New("path: must not contain spaces")
	}
	pathWord, err := quoteWord(path)
	if err != nil {
		return "", "", fmt.Errorf("path: %w", err)
	}
	send = "meth " + methodWord + " uri " + pathWord
	if m.Host != "" {
		host := m.Host
		if a, err := netip.ParseAddr(host); err == nil && a.Is6() {
			host = "[" + host + "]" // an IPv6 literal in a Host header
		}
		// The value of "hdr" is a log-format string.
		hostWord, err := quoteLogFormat(host)
		if err != nil {
			return "", "", fmt.Errorf("host: %w", err)
		}
		send += " ver HTTP/1.1 hdr Host " + hostWord
	}
	codes := cmp.Or(m.Expect, "200-399")
	if err := statusCodes(codes); err != nil {
		return "", "", fmt.Errorf("expect: %w", err)
	}
	// HAProxy 2.6 "http-check expect status" takes a comma-separated list
	// of codes and lo-hi ranges.
	return send, "status " + codes, nil
}

func buildServer(m Member, check string, cookie bool, proxy string, tls bool) (serverView, error) {
	sv := serverView{Name: m.ID}
	var addr string
	var err error
	if a, perr := netip.ParseAddr(m.Address); perr == nil {
		addr, err = addrPort(a, m.Port)
	} else if err = checkHostname(m.Address); err == nil {
		if m.Port < 1 || m.Port > 65535 {
			err = fmt.Errorf("port %d is not between 1 and 65535", m.Port)
		}
		addr = m.Address + ":" + strconv.Itoa(m.Port)
	}
	if err != nil {
		return sv, fmt.Errorf("address: %w", err)
	}
	sv.Addr = addr
	if m.Weight < 0 || m.Weight > 256 {
		return sv, fmt.Errorf("weight %d is not between 0 and 256", m.Weight)
	}
	if m.MaxConnections < 0 {
		return sv, errors.New("max_connections must not be negative")
	}
	opts := []string{"weight " + strconv.Itoa(m.Weight)}
	if m.Backup {
		opts = append(opts, "backup")
	}
	if m.MaxConnections > 0 {
		opts = append(opts, "maxconn "+strconv.Itoa(m.MaxConnections))
	}
	if check != "" {
		opts = append(opts, check)
	}
	if cookie {
		opts = append(opts, "cookie "+m.ID)
	}
	if proxy != "" {
		opts = append(opts, proxy)
	}
	if tls {
		opts = append(opts, "ssl verify none")
	}
	if !m.Enabled {
		opts = append(opts, "disabled")
	}
	sv.Options = strings.Join(opts, " ")
	return sv, nil
}
