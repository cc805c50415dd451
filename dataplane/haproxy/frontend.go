package haproxy

import (
	"errors"
	"fmt"
	"strconv"
)

// A frontend section per listener. Its lines come from the listener, but for
// those of its routing rules (rules.go).

type frontendView struct {
	Name         string
	Origin       Origin // the listener
	Mode         string // tcp | http
	Bind         string // "addr:port" plus ssl options
	BindField    string // the listener field the bind line stands for
	MaxConn      int
	Timeouts     []viewLine // "client 30000ms", ...
	ForwardFor   bool
	UniqueID     bool
	Log          []viewLine // log and log-format lines (render_log.go)
	Compression  bool
	StickTable   string
	ACLs         []aclLine
	TCPRequest   []viewLine // tcp-request connection <...>
	HTTPRequest  []viewLine // http-request <...>
	HTTPResponse []viewLine // http-response <...>
	UseBackends  []viewLine // use_backend <...>
	Default      string
}

func (f *frontendView) write(w *cfgWriter) {
	o := f.Origin
	w.blank()
	w.line(o, "frontend ", f.Name)
	w.line(o.at("protocol"), "    mode ", f.Mode)
	w.line(o.at(f.BindField), "    bind ", f.Bind)
	if f.Mode == "http" {
		// On a reload the old process answers the next request on each idle
		// keep-alive connection with "Connection: close" rather than closing
		// it under a client that may be sending: a reload costs no request.
		// (HAProxy ignores the option, with a warning, outside HTTP mode.)
		w.line(o, "    option idle-close-on-response")
	}
	if f.MaxConn != 0 {
		w.line(o.at("connection_limit"), "    maxconn ", strconv.Itoa(f.MaxConn))
	}
	for _, l := range f.Timeouts {
		w.line(l.Origin, "    timeout ", l.Text)
	}
	if f.ForwardFor {
		w.line(o.at("insert_headers.x_forwarded_for"), "    option forwardfor")
	}
	if f.UniqueID {
		w.line(o.at("insert_headers.x_request_id"), "    unique-id-format %{+X}o%ci:%cp_%fi:%fp_%Ts_%rt:%pid")
	}
	for _, l := range f.Log {
		w.line(l.Origin, "    ", l.Text)
	}
	if f.Compression {
		w.line(o.at("compression"), "    compression algo gzip deflate")
		w.line(o.at("compression"), "    compression type text/html text/plain text/css application/javascript application/json")
	}
	if f.StickTable != "" {
		w.line(o.at("rate_limit"), "    stick-table ", f.StickTable)
	}
	for _, a := range f.ACLs {
		if a.Values == "" {
			w.line(a.Origin, "    acl ", a.Name, " ", a.Criterion)
		} else {
			w.line(a.Origin, "    acl ", a.Name, " ", a.Criterion, " -- ", a.Values)
		}
	}
	for _, l := range f.TCPRequest {
		w.line(l.Origin, "    tcp-request connection ", l.Text)
	}
	for _, l := range f.HTTPRequest {
		w.line(l.Origin, "    http-request ", l.Text)
	}
	for _, l := range f.HTTPResponse {
		w.line(l.Origin, "    http-response ", l.Text)
	}
	for _, l := range f.UseBackends {
		w.line(l.Origin, "    use_backend ", l.Text)
	}
	if f.Default != "" {
		w.line(o.at("default_pool_id"), "    default_backend ", f.Default)
	}
}

func buildFrontend(lb LoadBalancer, l Listener, pools map[string]*Pool) (frontendView, error) {
	var fv frontendView
	if err := checkID(l.ID); err != nil {
		return fv, fieldError("load balancer "+lb.ID+": listener", err)
	}
	fail := func(field string, err error) (frontendView, error) {
		return frontendView{}, fieldError("listener "+l.ID+": "+field, err)
	}
	fv.Name = l.ID
	lo := Origin{Kind: KindListener, ID: l.ID}
	fv.Origin = lo
	fv.BindField = "port"
	bind, err := addrPort(lb.VIP, l.Port)
	if err != nil {
		return fail("vip/port", err)
	}
	isHTTP := false
	switch l.Protocol {
	case "tcp":
		fv.Mode = "tcp"
	case "http":
		fv.Mode, isHTTP = "http", true
	case "https":
		fv.Mode, isHTTP = "http", true
		opts, field, err := sslBind(l.CertFiles)
		if err != nil {
			return fail(field, err)
		}
		bind += opts
		// What HAProxy loads for this line beyond the address: the
		// certificates.
		fv.BindField = "certificate_ids"
	default:
		return fail("protocol", fmt.Errorf("unknown protocol %s", strconv.QuoteToASCII(l.Protocol)))
	}
	fv.Bind = bind
	if l.ConnectionLimit < 0 {
		return fail("connection_limit", errors.New("must not be negative"))
	}
	fv.MaxConn = l.ConnectionLimit

	t := l.Timeouts
	if t.ClientMS > 0 {
		fv.Timeouts = append(fv.Timeouts, viewLine{"client " + ms(t.ClientMS), lo.at("timeouts.client_ms")})
	}
	if isHTTP && t.HTTPRequestMS > 0 {
		fv.Timeouts = append(fv.Timeouts, viewLine{"http-request " + ms(t.HTTPRequestMS), lo.at("timeouts.http_request_ms")})
	}
	if isHTTP && t.HTTPKeepAliveMS > 0 {
		fv.Timeouts = append(fv.Timeouts, viewLine{"http-keep-alive " + ms(t.HTTPKeepAliveMS), lo.at("timeouts.http_keep_alive_ms")})
	}

	// Source filtering, before anything else.
	if len(l.AllowedCIDRs) > 0 {
		lines, err := cidrACL("allowed_src", l.AllowedCIDRs)
		if err != nil {
			return fail("allowed_cidrs", err)
		}
		fv.ACLs = appendACLs(fv.ACLs, lines, lo.at("allowed_cidrs"))
		fv.TCPRequest = append(fv.TCPRequest, viewLine{"reject if !allowed_src", lo.at("allowed_cidrs")})
	}
	if len(l.DeniedCIDRs) > 0 {
		lines, err := cidrACL("denied_src", l.DeniedCIDRs)
		if err != nil {
			return fail("denied_cidrs", err)
		}
		fv.ACLs = appendACLs(fv.ACLs, lines, lo.at("denied_cidrs"))
		fv.TCPRequest = append(fv.TCPRequest, viewLine{"reject if denied_src", lo.at("denied_cidrs")})
	}

	// Rate limit per client address.
	if rl := l.RateLimit; rl != nil {
		if rl.PerSecond < 1 {
			return fail("rate_limit.per_second", errors.New("must be at least 1"))
		}
		rlo := lo.at("rate_limit")
		table := "type " + srcTableType(lb) + " size 100k expire 10s store "
		switch {
		case rl.Type == "connections":
			fv.StickTable = table + "conn_rate(1s)"
			fv.TCPRequest = append(fv.TCPRequest,
				viewLine{"track-sc0 src", rlo},
				viewLine{fmt.Sprintf("reject if { sc_conn_rate(0) gt %d }", rl.PerSecond), rlo})
		case rl.Type == "requests" && isHTTP:
			fv.StickTable = table + "http_req_rate(1s)"
			fv.HTTPRequest = append(fv.HTTPRequest,
				viewLine{"track-sc0 src", rlo},
				viewLine{fmt.Sprintf("deny deny_status 429 if { sc_http_req_rate(0) gt %d }", rl.PerSecond), rlo})
		case rl.Type == "requests":
			return fail("rate_limit.type", errors.New("a tcp listener can only limit connections"))
		default:
			return fail("rate_limit.type", fmt.Errorf("unknown type %s", strconv.QuoteToASCII(rl.Type)))
		}
	}

	if isHTTP {
		if l.RedirectHTTPToHTTPS && l.Protocol == "http" {
			// To the load balancer's (lowest) https listener, else 443: keeping
			// the request's port would send clients back to this listener.
			port := 443
			for _, o := range lb.Listeners {
				if o.Protocol == "https" {
					port = o.Port
					break
				}
			}
			host := "%[req.hdr(host),regsub(:[0-9]+$,)]"
			if port != 443 {
				host += ":" + strconv.Itoa(port)
			}
			fv.HTTPRequest = append(fv.HTTPRequest, viewLine{"redirect location https://" + host + "%[pathq] code 301 unless { ssl_fc }",
				lo.at("redirect_http_to_https")})
		}
		ih := l.InsertHeaders
		fv.ForwardFor = ih.XForwardedFor
		if ih.XForwardedProto {
			proto := "http"
			if l.Protocol == "https" {
				proto = "https"
			}
			fv.HTTPRequest = append(fv.HTTPRequest, viewLine{"set-header X-Forwarded-Proto " + proto, lo.at("insert_headers.x_forwarded_proto")})
		}
		if ih.XForwardedPort {
			fv.HTTPRequest = append(fv.HTTPRequest, viewLine{"set-header X-Forwarded-Port %[dst_port]", lo.at("insert_headers.x_forwarded_port")})
		}
		if ih.XRequestID {
			fv.UniqueID = true
			fv.HTTPRequest = append(fv.HTTPRequest, viewLine{"set-header X-Request-ID %[unique-id]", lo.at("insert_headers.x_request_id")})
		}
		if h := l.HSTS; h != nil && l.Protocol == "https" {
			if h.MaxAgeSeconds < 0 {
				return fail("hsts.max_age_seconds", errors.New("must not be negative"))
			}
			val := "max-age=" + strconv.Itoa(h.MaxAgeSeconds)
			if h.IncludeSubdomains {
				val += "; includeSubDomains"
			}
			if h.Preload {
				val += "; preload"
			}
			w, _ := quoteWord(val) // constant text and digits
			fv.HTTPResponse = append(fv.HTTPResponse, viewLine{"set-header Strict-Transport-Security " + w, lo.at("hsts")})
		}
		fv.Compression = l.Compression
		if err := buildRules(&fv, l, pools); err != nil {
			return frontendView{}, err
		}
	}

	if l.DefaultPoolID != "" {
		if err := poolRef(l.DefaultPoolID, pools, isHTTP); err != nil {
			return fail("default_pool_id", err)
		}
		fv.Default = l.DefaultPoolID
	}
	return fv, nil
}
