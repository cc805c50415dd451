package haproxy

import (
	"errors"
	"fmt"
	"strconv"
)

type frontendView struct {
	Name         string
	Mode         string // tcp | http
	Bind         string // "addr:port" plus ssl options
	MaxConn      int
	Timeouts     []string // "client 30000ms", ...
	ForwardFor   bool
	UniqueID     bool
	Compression  bool
	StickTable   string
	ACLs         []aclLine
	TCPRequest   []string // tcp-request connection <...>
	HTTPRequest  []string // http-request <...>
	HTTPResponse []string // http-response <...>
	UseBackends  []string // use_backend <...>
	Default      string
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
		if len(l.CertFiles) == 0 {
			return fail("cert_files", errors.New("an https listener needs at least one certificate"))
		}
		bind += " ssl"
		for i, f := range l.CertFiles {
			w, err := quoteWord(f)
			if err != nil {
				return fail(fmt.Sprintf("cert_files[%d]", i), err)
			}
			bind += " crt " + w
		}
		bind += " alpn h2,http/1.1"
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
		fv.Timeouts = append(fv.Timeouts, "client "+ms(t.ClientMS))
	}
	if isHTTP && t.HTTPRequestMS > 0 {
		fv.Timeouts = append(fv.Timeouts, "http-request "+ms(t.HTTPRequestMS))
	}
	if isHTTP && t.HTTPKeepAliveMS > 0 {
		fv.Timeouts = append(fv.Timeouts, "http-keep-alive "+ms(t.HTTPKeepAliveMS))
	}

	// Source filtering, before anything else.
	if len(l.AllowedCIDRs) > 0 {
		lines, err := cidrACL("allowed_src", l.AllowedCIDRs)
		if err != nil {
			return fail("allowed_cidrs", err)
		}
		fv.ACLs = append(fv.ACLs, lines...)
		fv.TCPRequest = append(fv.TCPRequest, "reject if !allowed_src")
	}
	if len(l.DeniedCIDRs) > 0 {
		lines, err := cidrACL("denied_src", l.DeniedCIDRs)
		if err != nil {
			return fail("denied_cidrs", err)
		}
		fv.ACLs = append(fv.ACLs, lines...)
		fv.TCPRequest = append(fv.TCPRequest, "reject if denied_src")
	}

	// Rate limit per client address.
	if rl := l.RateLimit; rl != nil {
		if rl.PerSecond < 1 {
			return fail("rate_limit.per_second", errors.New("must be at least 1"))
		}
		table := "type " + srcTableType(lb) + " size 100k expire 10s store "
		switch {
		case rl.Type == "connections":
			fv.StickTable = table + "conn_rate(1s)"
			fv.TCPRequest = append(fv.TCPRequest,
				"track-sc0 src",
				fmt.Sprintf("reject if { sc_conn_rate(0) gt %d }", rl.PerSecond))
		case rl.Type == "requests" && isHTTP:
			fv.StickTable = table + "http_req_rate(1s)"
			fv.HTTPRequest = append(fv.HTTPRequest,
				"track-sc0 src",
				fmt.Sprintf("deny deny_status 429 if { sc_http_req_rate(0) gt %d }", rl.PerSecond))
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
			fv.HTTPRequest = append(fv.HTTPRequest, "redirect location https://"+host+"%[pathq] code 301 unless { ssl_fc }")
		}
		ih := l.InsertHeaders
		fv.ForwardFor = ih.XForwardedFor
		if ih.XForwardedProto {
			proto := "http"
			if l.Protocol == "https" {
				proto = "https"
			}
			fv.HTTPRequest = append(fv.HTTPRequest, "set-header X-Forwarded-Proto "+proto)
		}
		if ih.XForwardedPort {
			fv.HTTPRequest = append(fv.HTTPRequest, "set-header X-Forwarded-Port %[dst_port]")
		}
		if ih.XRequestID {
			fv.UniqueID = true
			fv.HTTPRequest = append(fv.HTTPRequest, "set-header X-Request-ID %[unique-id]")
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
			fv.HTTPResponse = append(fv.HTTPResponse, "set-header Strict-Transport-Security "+w)
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
