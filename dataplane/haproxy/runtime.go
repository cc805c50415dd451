package haproxy

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
)

// Runtime talks to HAProxy's runtime API (a worker's stats socket, level
// admin), one command per connection. Changes made through it are lost on
// reload unless the configuration file says the same.
type Runtime struct {
	Socket string
	// Worker, when non-zero, makes Socket a master CLI socket and sends
	// every command to the worker with this pid (`@!<pid> <command>`): the
	// way to reach workers that still finish connections after a reload,
	// whose stats sockets belong to the new worker.
	Worker int
	// Exchanges, when set, counts the CLI exchanges made through this
	// Runtime and its copies (see Exchanges).
	Exchanges *Exchanges
}

// Exchanges counts CLI exchanges: those in flight, those answered (the
// connection was accepted and read to its end) and those failed. Every
// exchange is a connection HAProxy's worker counts in `show info`'s
// CumConns, like a client's: knowing its own, a caller can tell whether
// any other connection reached the worker between two `show info`.
type Exchanges struct {
	mu                         sync.Mutex
	inFlight, answered, failed int64
}

// Counts returns the exchanges in flight, answered and failed so far.
func (e *Exchanges) Counts() (inFlight, answered, failed int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.inFlight, e.answered, e.failed
}

// exchange is cliExchange on r.Socket, counted in r.Exchanges.
func (r Runtime) exchange(ctx context.Context, cmd string) (string, error) {
	e := r.Exchanges
	if e == nil {
		return cliExchange(ctx, r.Socket, cmd)
	}
	e.mu.Lock()
	e.inFlight++
	e.mu.Unlock()
	out, err := cliExchange(ctx, r.Socket, cmd)
	e.mu.Lock()
	e.inFlight--
	if err != nil {
		e.failed++
	} else {
		e.answered++
	}
	e.mu.Unlock()
	return out, err
}

// CommandError is an error message HAProxy answered a command with.
type CommandError struct {
	Command string
	Message string
}

func (e *CommandError) Error() string {
	return fmt.Sprintf("haproxy: %q: %s", e.Command, e.Message)
}

// ErrInvalidArgument is returned (wrapped) for names, addresses, states or
// options refused before anything is sent to HAProxy.
var ErrInvalidArgument = errors.New("invalid argument")

// cliTimeout bounds one CLI exchange when ctx has no deadline.
const cliTimeout = 10 * time.Second

// maxCLIResponse bounds what one command may return.
const maxCLIResponse = 64 << 20

// Command sends one command and returns HAProxy's answer. It returns a
// *CommandError when the answer is an error message. HAProxy 2.6 has no
// status codes on its CLI: errors are recognised by their wording ("No such
// server.", "Unknown command…", "… expects …", "Invalid …", …), so the typed
// methods below check answers more strictly. Control characters are refused;
// ';' separates commands as in HAProxy's CLI, so callers pass only trusted
// text here.
func (r Runtime) Command(ctx context.Context, cmd string) (string, error) {
	if err := checkCLICommand(cmd); err != nil {
		return "", err
	}
	if r.Worker != 0 {
		cmd = "@!" + strconv.Itoa(r.Worker) + " " + cmd
	}
	out, err := r.exchange(ctx, cmd)
	if err != nil {
		return out, fmt.Errorf("haproxy runtime API %q: %w", cmd, err)
	}
	if msg, bad := cliErrorMessage(out); bad {
		return out, &CommandError{Command: cmd, Message: msg}
	}
	return out, nil
}

// expect sends cmd and requires ok(answer) (the answer trimmed).
func (r Runtime) expect(ctx context.Context, cmd string, ok func(string) bool) (string, error) {
	out, err := r.Command(ctx, cmd)
	if err != nil {
		return out, err
	}
	t := strings.TrimSpace(out)
	if !ok(t) {
		return out, &CommandError{Command: cmd, Message: firstLine(t)}
	}
	return t, nil
}

func answerEmpty(s string) bool { return s == "" }

// SetWeight sets a server's weight (0–256; 0 stops new traffic to it).
func (r Runtime) SetWeight(ctx context.Context, backend, server string, weight int) error {
	if err := checkServerRef(backend, server); err != nil {
		return err
	}
	if weight < 0 || weight > 256 {
		return fmt.Errorf("haproxy: weight %d: %w (0..256)", weight, ErrInvalidArgument)
	}
	_, err := r.expect(ctx, fmt.Sprintf("set server %s/%s weight %d", backend, server, weight), answerEmpty)
	return err
}

// SetState sets a server's administrative state: "ready", "drain" (no new
// connections, existing ones finish) or "maint" (out of service).
func (r Runtime) SetState(ctx context.Context, backend, server, state string) error {
	if err := checkServerRef(backend, server); err != nil {
		return err
	}
	switch state {
	case "ready", "drain", "maint":
	default:
		return fmt.Errorf("haproxy: state %q: %w (ready, drain or maint)", state, ErrInvalidArgument)
	}
	_, err := r.expect(ctx, fmt.Sprintf("set server %s/%s state %s", backend, server, state), answerEmpty)
	return err
}

// SetAddr changes a server's address and, when port > 0, its port. HAProxy
// 2.6 takes only IP addresses here (a DNS name needs resolvers), so addr must
// be an IP literal.
func (r Runtime) SetAddr(ctx context.Context, backend, server, addr string, port int) error {
	if err := checkServerRef(backend, server); err != nil {
		return err
	}
	ip, err := parseRuntimeIP(addr)
	if err != nil {
		return err
	}
	if port < 0 || port > 65535 {
		return fmt.Errorf("haproxy: port %d: %w", port, ErrInvalidArgument)
	}
	cmd := fmt.Sprintf("set server %s/%s addr %s", backend, server, ip)
	if port > 0 {
		cmd += " port " + strconv.Itoa(port)
	}
	// "IP changed from '…' to '…', port changed from …" or
	// "no need to change the addr…"; failures read "Invalid addr …" etc.
	_, err = r.expect(ctx, cmd, func(s string) bool {
		return strings.HasPrefix(s, "IP changed from") || strings.HasPrefix(s, "no need to change the addr")
	})
	return err
}

// AddServer adds a server to a running backend (`add server`), then enables
// its health check (`enable health`, when options contain "check") and the
// server itself (`enable server`, unless options contain "disabled"): HAProxy
// registers dynamic servers in maintenance with checks off. addrPort is
// "ip:port" or "[ipv6]:port" — dynamic servers never resolve DNS names in
// 2.6. options are `server` keywords HAProxy accepts for dynamic servers
// (weight, check, inter, rise, fall, maxconn, backup, ssl, send-proxy, …; not
// cookie); "default-server" lines do not apply to them. The backend must use
// a dynamic algorithm (roundrobin, leastconn, first, random; not static-rr or
// hash-based ones). If enabling fails the server is removed again.
func (r Runtime) AddServer(ctx context.Context, backend, server, addrPort string, options string) error {
	if err := checkServerRef(backend, server); err != nil {
		return err
	}
	ap, err := parseRuntimeAddrPort(addrPort)
	if err != nil {
		return err
	}
	if err := checkServerOptions(options); err != nil {
		return err
	}
	opts := strings.Fields(options)
	cmd := fmt.Sprintf("add server %s/%s %s", backend, server, ap)
	if len(opts) > 0 {
		cmd += " " + strings.Join(opts, " ")
	}
	if _, err := r.expect(ctx, cmd, func(s string) bool { return strings.HasPrefix(s, "New server registered") }); err != nil {
		return err
	}
	var follow []string
	if hasWord(opts, "check") {
		follow = append(follow, fmt.Sprintf("enable health %s/%s", backend, server))
	}
	if hasWord(opts, "agent-check") {
		follow = append(follow, fmt.Sprintf("enable agent %s/%s", backend, server))
	}
	if !hasWord(opts, "disabled") {
		follow = append(follow, fmt.Sprintf("enable server %s/%s", backend, server))
	}
	for _, c := range follow {
		if _, err := r.expect(ctx, c, answerEmpty); err != nil {
			// Leave nothing half-added behind.
			_, _ = r.Command(ctx, fmt.Sprintf("set server %s/%s state maint", backend, server))
			_, _ = r.Command(ctx, fmt.Sprintf("del server %s/%s", backend, server))
			return err
		}
	}
	return nil
}

// DelServer puts a server in maintenance and deletes it (`del server`).
// HAProxy refuses to delete a server that still has connections ("Server
// still has connections attached to it"): entering maintenance drops its idle
// connections, but a connection that was busy then goes back to the idle
// pool and lingers until HAProxy's idle-connection purge (pool-purge-delay,
// 5s by default) — seconds. DelServer retries until the server is gone or
// ctx ends (30s when ctx has no deadline); it never cuts live sessions
// (drain first, or `shutdown sessions server`). Servers referenced elsewhere
// in the configuration (track, use-server) cannot be deleted.
func (r Runtime) DelServer(ctx context.Context, backend, server string) error {
	if err := checkServerRef(backend, server); err != nil {
		return err
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
	}
	if err := r.SetState(ctx, backend, server, "maint"); err != nil {
		return err
	}
	cmd := fmt.Sprintf("del server %s/%s", backend, server)
	for {
		_, err := r.expect(ctx, cmd, func(s string) bool { return strings.HasPrefix(s, "Server deleted") })
		if err == nil {
			return nil
		}
		var ce *CommandError
		if !errors.As(err, &ce) || !strings.Contains(strings.ToLower(ce.Message), "connection") {
			return err
		}
		t := time.NewTimer(100 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w (gave up: %v)", err, ctx.Err())
		case <-t.C:
		}
	}
}

// ShutdownSessions closes every session a server has, at once (`shutdown
// sessions server`): requests in flight on it are cut. A worker stopping
// after a reload refuses that command for its proxies ("Proxy is
// disabled."); there each of the server's sessions is shut down on its own
// (`show sess`, `shutdown session`). It returns the error *CommandError "No
// such server." or "No such backend." when the worker has no such server
// (see IsNoSuchServer).
func (r Runtime) ShutdownSessions(ctx context.Context, backend, server string) error {
	if err := checkServerRef(backend, server); err != nil {
		return err
	}
	_, err := r.expect(ctx, fmt.Sprintf("shutdown sessions server %s/%s", backend, server), answerEmpty)
	var ce *CommandError
	if err == nil || !errors.As(err, &ce) || !strings.HasPrefix(ce.Message, "Proxy is disabled") {
		return err
	}
	sessions, err := r.Sessions(ctx)
	if err != nil {
		return err
	}
	for _, s := range sessions {
		if s.Backend != backend || s.Server != server {
			continue
		}
		if err := r.ShutdownSession(ctx, s.ID); err != nil && !(errors.As(err, &ce) && strings.HasPrefix(ce.Message, "No such session")) {
			return err
		}
	}
	return nil
}

// IsNoSuchServer reports whether err is HAProxy's answer for a server or
// backend it does not have.
func IsNoSuchServer(err error) bool {
	var ce *CommandError
	return errors.As(err, &ce) && (strings.HasPrefix(ce.Message, "No such server") || strings.HasPrefix(ce.Message, "No such backend"))
}

// Session is one stream of `show sess`.
type Session struct {
	ID                        string // "0x…", for ShutdownSession
	Frontend, Backend, Server string // "<NONE>"/"<none>" when not assigned
}

// Sessions lists the worker's streams (`show sess`).
func (r Runtime) Sessions(ctx context.Context) ([]Session, error) {
	out, err := r.Command(ctx, "show sess")
	if err != nil {
		return nil, err
	}
	return parseShowSess(out), nil
}

// parseShowSess reads `show sess` lines such as
// "0x55f2ae9b9cb0: proto=tcpv4 src=127.0.0.1:60500 fe=f be=b srv=s1 ts=00 …".
func parseShowSess(out string) []Session {
	var ss []Session
	for _, line := range strings.Split(out, "\n") {
		id, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !sessionIDRE.MatchString(id) {
			continue
		}
		s := Session{ID: id}
		for _, f := range strings.Fields(rest) {
			k, v, _ := strings.Cut(f, "=")
			switch k {
			case "fe":
				s.Frontend = v
			case "be":
				s.Backend = v
			case "srv":
				s.Server = v
			}
		}
		ss = append(ss, s)
	}
	return ss
}

var sessionIDRE = regexp.MustCompile(`^0x[0-9a-fA-F]{1,16}$`)

// ShutdownSession closes one stream (`shutdown session <id>`).
func (r Runtime) ShutdownSession(ctx context.Context, id string) error {
	if !sessionIDRE.MatchString(id) {
		return fmt.Errorf("haproxy: session id %q: %w (0x…)", id, ErrInvalidArgument)
	}
	_, err := r.expect(ctx, "shutdown session "+id, answerEmpty)
	return err
}

// ServerStat is a server row of `show stat`.
type ServerStat struct {
	Backend, Server string
	// Status: "UP", "DOWN", "MAINT", "DRAIN", "no check", and transitional
	// forms such as "UP 1/3", "DOWN 1/2", "MAINT (via pool_x/mbr_y)",
	// "MAINT (resolution)".
	Status string
	// Weight is the effective weight; UserWeight the configured/set one.
	Weight, UserWeight           int
	Addr                         string // ip:port
	Backup                       bool
	CurrentSessions, MaxSessions int64
	SessionLimit                 int64 // 0 = none
	TotalSessions                int64
	BytesIn, BytesOut            int64
	QueueCurrent                 int64
	ConnectionErrors             int64
	ResponseErrors               int64
	Retries, Redispatches        int64
	HRsp1xx, HRsp2xx, HRsp3xx    int64
	HRsp4xx, HRsp5xx, HRspOther  int64
	CheckStatus                  string // e.g. "L4OK", "L7OK", "L4CON", "" without checks
	CheckCode                    int    // HTTP status of the last L7 check
	CheckDesc                    string
	LastChangeSeconds            int64
	DowntimeSeconds              int64
	ChecksFailed, ChecksDown     int64
	// RTime and TTime are HAProxy's average response and total session
	// times in ms over the last 1024 requests (rtime, ttime).
	RTime, TTime int64
}

// ProxyStat is a frontend or backend row of `show stat`.
type ProxyStat struct {
	Name string
	Type string // "frontend" | "backend"
	// Status: frontends "OPEN"/"STOP"; backends "UP"/"DOWN".
	Status                       string
	Mode                         string // http | tcp
	CurrentSessions, MaxSessions int64
	SessionLimit                 int64
	TotalSessions                int64
	BytesIn, BytesOut            int64
	// Requests is the HTTP request total (req_tot; HTTP proxies only).
	Requests                           int64
	HRsp1xx, HRsp2xx, HRsp3xx          int64
	HRsp4xx, HRsp5xx, HRspOther        int64
	DeniedRequests, DeniedResponses    int64
	RequestErrors, ConnectionErrors    int64
	ResponseErrors                     int64
	Errors                             int64 // RequestErrors + ConnectionErrors + ResponseErrors
	SessionRate, RequestRate           int64 // per second, current
	ConnectionRate                     int64 // frontends
	ActiveServers, BackupServers       int64 // backends
	Weight                             int64 // backends: total weight of usable servers
	Algorithm                          string
	QueueCurrent                       int64
	DowntimeSeconds, LastChangeSeconds int64
	// RTime and TTime (backends) are HAProxy's average response and total
	// session times in ms over the last 1024 requests (rtime, ttime).
	RTime, TTime int64
}

// Stats returns the frontends, backends and servers of `show stat`.
func (r Runtime) Stats(ctx context.Context) ([]ProxyStat, []ServerStat, error) {
	out, err := r.Command(ctx, "show stat")
	if err != nil {
		return nil, nil, err
	}
	return parseStatCSV(out)
}

// StatsOf returns the rows of `show stat` of one proxy (a frontend or a
// backend and its servers): a few rows where Stats reads them all.
func (r Runtime) StatsOf(ctx context.Context, proxy string) ([]ProxyStat, []ServerStat, error) {
	if len(proxy) > 128 || !runtimeNameRE.MatchString(proxy) {
		return nil, nil, fmt.Errorf("haproxy: name %q: %w (want [A-Za-z0-9_.:-]{1,128})", proxy, ErrInvalidArgument)
	}
	out, err := r.Command(ctx, "show stat "+proxy+" -1 -1")
	if err != nil {
		return nil, nil, err
	}
	return parseStatCSV(out)
}

// StatsOfEach returns the rows of `show stat <name> -1 -1` of every one of
// names (frontends, or backends and their servers), asked in one exchange:
// the commands separated by ';', as HAProxy's CLI takes them. It lets a
// caller read the whole worker in pieces: HAProxy writes the answer of
// Stats (3.3 MB at 1,000 load balancers of 10 members) in one exchange,
// tens of milliseconds of its CPU while it serves, and its clients' requests
// waited meanwhile. Names HAProxy has no proxy of are left out, as Stats
// has no rows of them.
func (r Runtime) StatsOfEach(ctx context.Context, names []string) ([]ProxyStat, []ServerStat, error) {
	if len(names) == 0 {
		return nil, nil, nil
	}
	var cmd strings.Builder
	for i, name := range names {
		if len(name) > 128 || !runtimeNameRE.MatchString(name) {
			return nil, nil, fmt.Errorf("haproxy: name %q: %w (want [A-Za-z0-9_.:-]{1,128})", name, ErrInvalidArgument)
		}
		if i > 0 {
			cmd.WriteByte(';')
		}
		if r.Worker != 0 { // the master CLI routes each command by its own prefix
			cmd.WriteString("@!" + strconv.Itoa(r.Worker) + " ")
		}
		cmd.WriteString("show stat " + name + " -1 -1")
	}
	out, err := r.exchange(ctx, cmd.String())
	if err != nil {
		return nil, nil, fmt.Errorf("haproxy runtime API %q…: %w", "show stat "+names[0]+" -1 -1", err)
	}
	rows, err := joinStatAnswers(out, len(names))
	if err != nil {
		return nil, nil, &CommandError{Command: "show stat " + names[0] + " -1 -1;…", Message: err.Error()}
	}
	if rows == "" {
		return nil, nil, nil
	}
	return parseStatCSV(rows)
}

// noSuchProxy is HAProxy 2.6's answer to `show stat <name> …` for a name
// it has no proxy of.
const noSuchProxy = "No such proxy."

// joinStatAnswers makes one `show stat` answer of the answers to n `show
// stat` commands sent together: each is its header line and its rows (or
// noSuchProxy), then an empty line. The first header is kept, the others
// dropped (1.3 KB each, a third of an answer of a load balancer of 10
// members). It fails unless every command was answered so, and returns ""
// when no command had rows.
func joinStatAnswers(out string, n int) (string, error) {
	var b strings.Builder
	b.Grow(len(out))
	answered := 0
	for len(out) > 0 {
		line, rest, _ := strings.Cut(out, "\n")
		out = rest
		switch {
		case strings.HasPrefix(line, "# "):
			if answered++; b.Len() == 0 {
				b.WriteString(line)
				b.WriteByte('\n')
			}
		case line == noSuchProxy:
			answered++
		case strings.TrimSpace(line) == "":
		case b.Len() == 0 || !strings.Contains(line, ","):
			return "", fmt.Errorf("unexpected answer: %q", line)
		default:
			b.WriteString(line)
			b.WriteByte('\n')
		}
	}
	if answered != n {
		return "", fmt.Errorf("%d of %d commands answered", answered, n)
	}
	return b.String(), nil
}

// FrontendStats returns the frontends' rows of `show stat` (`show stat -1 1
// -1`): at 1,000 load balancers of 10 members a thirteenth of Stats' bytes.
func (r Runtime) FrontendStats(ctx context.Context) ([]ProxyStat, error) {
	out, err := r.Command(ctx, "show stat -1 1 -1")
	if err != nil {
		return nil, err
	}
	proxies, _, err := parseStatCSV(out)
	return proxies, err
}

// ServersStateOf returns `show servers state <backend>`: the state-file
// dump of one backend's servers (version line, header, one line per server).
func (r Runtime) ServersStateOf(ctx context.Context, backend string) (string, error) {
	if len(backend) > 128 || !runtimeNameRE.MatchString(backend) {
		return "", fmt.Errorf("haproxy: name %q: %w (want [A-Za-z0-9_.:-]{1,128})", backend, ErrInvalidArgument)
	}
	return r.Command(ctx, "show servers state "+backend)
}

// ParseStat parses an answer of `show stat` (any of its forms).
func ParseStat(out string) ([]ProxyStat, []ServerStat, error) { return parseStatCSV(out) }

// proxyType names the proxy types of `show stat`.
var proxyType = map[string]string{"0": "frontend", "1": "backend"}

// parseStatCSV parses `show stat` output (CSV; the header line starts with
// "# "). Columns are found by name, so newer columns do not matter.
func parseStatCSV(out string) ([]ProxyStat, []ServerStat, error) {
	out = strings.TrimLeft(out, " \n")
	if !strings.HasPrefix(out, "# ") {
		return nil, nil, fmt.Errorf("haproxy: unexpected `show stat` answer: %q", firstLine(out))
	}
	cr := csv.NewReader(strings.NewReader(out[2:]))
	cr.FieldsPerRecord = -1
	cr.LazyQuotes = true
	cr.ReuseRecord = true
	header, err := cr.Read()
	if err != nil {
		return nil, nil, fmt.Errorf("haproxy: `show stat` header: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		col[strings.TrimSpace(h)] = i
	}
	for _, need := range []string{"pxname", "svname", "type"} {
		if _, ok := col[need]; !ok {
			return nil, nil, fmt.Errorf("haproxy: `show stat` has no %q column", need)
		}
	}
	// Columns by name, looked up once (a row is read per field).
	at := func(name string) int {
		if i, ok := col[name]; ok {
			return i
		}
		return -1
	}
	colAct := at("act")
	colAddr := at("addr")
	colAlgo := at("algo")
	colBck := at("bck")
	colBin := at("bin")
	colBout := at("bout")
	colCheckCode := at("check_code")
	colCheckDesc := at("check_desc")
	colCheckStatus := at("check_status")
	colChkdown := at("chkdown")
	colChkfail := at("chkfail")
	colConnRate := at("conn_rate")
	colDowntime := at("downtime")
	colDreq := at("dreq")
	colDresp := at("dresp")
	colEcon := at("econ")
	colEreq := at("ereq")
	colEresp := at("eresp")
	colHrsp1xx := at("hrsp_1xx")
	colHrsp2xx := at("hrsp_2xx")
	colHrsp3xx := at("hrsp_3xx")
	colHrsp4xx := at("hrsp_4xx")
	colHrsp5xx := at("hrsp_5xx")
	colHrspOther := at("hrsp_other")
	colLastchg := at("lastchg")
	colMode := at("mode")
	colPxname := at("pxname")
	colQcur := at("qcur")
	colRate := at("rate")
	colReqRate := at("req_rate")
	colReqTot := at("req_tot")
	colRtime := at("rtime")
	colScur := at("scur")
	colSlim := at("slim")
	colSmax := at("smax")
	colStatus := at("status")
	colStot := at("stot")
	colSvname := at("svname")
	colTtime := at("ttime")
	colType := at("type")
	colUweight := at("uweight")
	colWeight := at("weight")
	colWredis := at("wredis")
	colWretr := at("wretr")
	var proxies []ProxyStat
	var servers []ServerStat
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("haproxy: `show stat`: %w", err)
		}
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue
		}
		s := func(i int) string {
			if i >= 0 && i < len(rec) {
				return rec[i]
			}
			return ""
		}
		n := func(i int) int64 {
			v, _ := strconv.ParseInt(s(i), 10, 64)
			return v
		}
		switch s(colType) {
		case "0", "1": // frontend, backend
			ps := ProxyStat{
				Name:              s(colPxname),
				Type:              proxyType[s(colType)],
				Status:            s(colStatus),
				Mode:              s(colMode),
				CurrentSessions:   n(colScur),
				MaxSessions:       n(colSmax),
				SessionLimit:      n(colSlim),
				TotalSessions:     n(colStot),
				BytesIn:           n(colBin),
				BytesOut:          n(colBout),
				Requests:          n(colReqTot),
				HRsp1xx:           n(colHrsp1xx),
				HRsp2xx:           n(colHrsp2xx),
				HRsp3xx:           n(colHrsp3xx),
				HRsp4xx:           n(colHrsp4xx),
				HRsp5xx:           n(colHrsp5xx),
				HRspOther:         n(colHrspOther),
				DeniedRequests:    n(colDreq),
				DeniedResponses:   n(colDresp),
				RequestErrors:     n(colEreq),
				ConnectionErrors:  n(colEcon),
				ResponseErrors:    n(colEresp),
				SessionRate:       n(colRate),
				RequestRate:       n(colReqRate),
				ConnectionRate:    n(colConnRate),
				ActiveServers:     n(colAct),
				BackupServers:     n(colBck),
				Weight:            n(colWeight),
				Algorithm:         s(colAlgo),
				QueueCurrent:      n(colQcur),
				DowntimeSeconds:   n(colDowntime),
				LastChangeSeconds: n(colLastchg),
				RTime:             n(colRtime),
				TTime:             n(colTtime),
			}
			ps.Errors = ps.RequestErrors + ps.ConnectionErrors + ps.ResponseErrors
			proxies = append(proxies, ps)
		case "2": // server
			servers = append(servers, ServerStat{
				Backend:           s(colPxname),
				Server:            s(colSvname),
				Status:            s(colStatus),
				Weight:            int(n(colWeight)),
				UserWeight:        int(n(colUweight)),
				Addr:              s(colAddr),
				Backup:            n(colBck) > 0,
				CurrentSessions:   n(colScur),
				MaxSessions:       n(colSmax),
				SessionLimit:      n(colSlim),
				TotalSessions:     n(colStot),
				BytesIn:           n(colBin),
				BytesOut:          n(colBout),
				QueueCurrent:      n(colQcur),
				ConnectionErrors:  n(colEcon),
				ResponseErrors:    n(colEresp),
				Retries:           n(colWretr),
				Redispatches:      n(colWredis),
				HRsp1xx:           n(colHrsp1xx),
				HRsp2xx:           n(colHrsp2xx),
				HRsp3xx:           n(colHrsp3xx),
				HRsp4xx:           n(colHrsp4xx),
				HRsp5xx:           n(colHrsp5xx),
				HRspOther:         n(colHrspOther),
				CheckStatus:       strings.TrimPrefix(s(colCheckStatus), "* "),
				CheckCode:         int(n(colCheckCode)),
				CheckDesc:         s(colCheckDesc),
				LastChangeSeconds: n(colLastchg),
				DowntimeSeconds:   n(colDowntime),
				ChecksFailed:      n(colChkfail),
				ChecksDown:        n(colChkdown),
				RTime:             n(colRtime),
				TTime:             n(colTtime),
			})
		}
	}
	return proxies, servers, nil
}

// runtimeNameRE is what backend and server names (ids) may look like.
var runtimeNameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)

func checkServerRef(backend, server string) error {
	for _, s := range []string{backend, server} {
		if len(s) > 128 || !runtimeNameRE.MatchString(s) {
			return fmt.Errorf("haproxy: name %q: %w (want [A-Za-z0-9_.:-]{1,128})", s, ErrInvalidArgument)
		}
	}
	return nil
}

// checkServerOptions refuses what could end or escape a CLI command.
func checkServerOptions(opts string) error {
	if len(opts) > 4096 {
		return fmt.Errorf("haproxy: server options too long: %w", ErrInvalidArgument)
	}
	for _, c := range opts {
		if c == ';' || c == '\\' || c == '#' || (c != ' ' && (unicode.IsControl(c) || unicode.IsSpace(c))) || c == unicode.ReplacementChar {
			return fmt.Errorf("haproxy: server options %q: %w (no control characters, ';', '\\' or '#')", opts, ErrInvalidArgument)
		}
	}
	return nil
}

// checkCLICommand refuses control characters (a newline would start another
// command).
func checkCLICommand(cmd string) error {
	if strings.TrimSpace(cmd) == "" {
		return fmt.Errorf("haproxy: empty command: %w", ErrInvalidArgument)
	}
	for _, c := range cmd {
		if c != ' ' && c != '\t' && unicode.IsControl(c) {
			return fmt.Errorf("haproxy: command %q: %w (control character)", cmd, ErrInvalidArgument)
		}
	}
	return nil
}

func parseRuntimeIP(s string) (netip.Addr, error) {
	ip, err := netip.ParseAddr(s)
	if err != nil || ip.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("haproxy: address %q: %w (an IP address)", s, ErrInvalidArgument)
	}
	return ip.Unmap(), nil
}

func parseRuntimeAddrPort(s string) (netip.AddrPort, error) {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("haproxy: address %q: %w (ip:port)", s, ErrInvalidArgument)
	}
	ip, err := parseRuntimeIP(host)
	if err != nil {
		return netip.AddrPort{}, err
	}
	n, err := strconv.Atoi(port)
	if err != nil || n < 1 || n > 65535 {
		return netip.AddrPort{}, fmt.Errorf("haproxy: port %q: %w", port, ErrInvalidArgument)
	}
	return netip.AddrPortFrom(ip, uint16(n)), nil
}

func hasWord(words []string, w string) bool {
	for _, x := range words {
		if x == w {
			return true
		}
	}
	return false
}

// cliErrorPrefixes start HAProxy 2.6 CLI error messages (lower-cased).
var cliErrorPrefixes = []string{
	"unknown command", "unknown keyword", "unknown", "no such", "require", "permission denied",
	"invalid", "missing", "cannot", "can't", "can not", "unable", "error", "failed",
	"not ", "only ", "already exists", "this command is restricted", "absolute weight",
	"relative weight", "backend is using a static", "backend must use", "server still has",
	"'", "wrong", "bad ", "usage", "illegal", "expects", "must ", "out of memory",
	"update for the current server address family is only supported",
}

// cliErrorContains mark errors anywhere in the first line (lower-cased).
var cliErrorContains = []string{
	" expects ", " is invalid", "not found", "not supported", "not allowed", "failed to", "unsupported",
}

// cliErrorMessage reports whether a CLI answer is an error message, judging
// by its first non-empty line.
func cliErrorMessage(out string) (string, bool) {
	line := firstLine(out)
	if line == "" {
		return "", false
	}
	l := strings.ToLower(line)
	for _, p := range cliErrorPrefixes {
		if strings.HasPrefix(l, p) {
			return line, true
		}
	}
	for _, c := range cliErrorContains {
		if strings.Contains(l, c) {
			return line, true
		}
	}
	return "", false
}

// cliExchange sends one command on a HAProxy CLI socket (stats socket or
// master CLI) and reads the answer until HAProxy closes the connection. The
// write side is shut after the command: the master CLI of 2.6 keeps a
// connection open after answering until the client closes its side.
func cliExchange(ctx context.Context, socket, cmd string) (string, error) {
	if socket == "" {
		return "", errors.New("haproxy: no CLI socket configured")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", socket)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(cliTimeout)
	}
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Now()) })
	defer stop()
	if _, err := io.WriteString(conn, cmd+"\n"); err != nil {
		return "", err
	}
	if uc, ok := conn.(*net.UnixConn); ok {
		_ = uc.CloseWrite()
	}
	b, err := io.ReadAll(io.LimitReader(conn, maxCLIResponse))
	if err != nil {
		if ctx.Err() != nil {
			return string(b), ctx.Err()
		}
		return string(b), err
	}
	return string(b), nil
}

// SetSSLCert replaces the certificate and key HAProxy loaded from file (a crt
// file of a bind line, named exactly as in the configuration) with pemBundle
// and commits the change: new TLS handshakes get the new certificate at once,
// connections in flight keep theirs, and no reload is needed. The file itself
// is not written; the caller writes it so the next reload loads the same.
func (r Runtime) SetSSLCert(ctx context.Context, file, pemBundle string) error {
	if err := checkCLICommand(file); err != nil || strings.ContainsAny(file, " \t") || file == "" {
		return fmt.Errorf("haproxy: certificate file %q: %w", file, ErrInvalidArgument)
	}
	// The payload ends at the first empty line: drop empty lines of the PEM.
	var payload strings.Builder
	for _, line := range strings.Split(pemBundle, "\n") {
		line = strings.TrimRight(line, "\r")
		if strings.TrimSpace(line) == "" {
			continue
		}
		if strings.ContainsFunc(line, func(c rune) bool { return c < 0x20 && c != '\t' }) {
			return fmt.Errorf("haproxy: certificate bundle: %w (control character)", ErrInvalidArgument)
		}
		payload.WriteString(line)
		payload.WriteByte('\n')
	}
	set := "set ssl cert " + file
	out, err := r.exchange(ctx, set+" <<\n"+payload.String()+"\n")
	if err != nil {
		return fmt.Errorf("haproxy runtime API %q: %w", set, err)
	}
	if !strings.Contains(out, "Transaction created") && !strings.Contains(out, "Transaction updated") {
		_, _ = r.Command(ctx, "abort ssl cert "+file)
		return &CommandError{Command: set, Message: firstLine(out)}
	}
	commit := "commit ssl cert " + file
	out, err = r.exchange(ctx, commit)
	if err != nil {
		_, _ = r.Command(ctx, "abort ssl cert "+file)
		return fmt.Errorf("haproxy runtime API %q: %w", commit, err)
	}
	if !strings.Contains(out, "Success!") {
		_, _ = r.Command(ctx, "abort ssl cert "+file)
		return &CommandError{Command: commit, Message: strings.TrimSpace(out)}
	}
	return nil
}
