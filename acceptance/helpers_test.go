package acceptance

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

// inFlight counts concurrent requests and remembers the peak.
type inFlight struct {
	cur, peak, total atomic.Int64
}

func (f *inFlight) enter() {
	f.total.Add(1)
	n := f.cur.Add(1)
	for {
		p := f.peak.Load()
		if n <= p || f.peak.CompareAndSwap(p, n) {
			return
		}
	}
}

func (f *inFlight) leave() { f.cur.Add(-1) }

// slowHandler answers name after sleeping d, counting concurrency in f.
func slowHandler(name string, d time.Duration, f *inFlight) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.enter()
		defer f.leave()
		time.Sleep(d)
		fmt.Fprintf(w, "%s\n", name)
	}
}

// echoHeaders answers with the request's headers as a JSON object (first
// value of each), plus "Host" and "Path".
func echoHeaders(w http.ResponseWriter, r *http.Request) {
	out := map[string]string{"Host": r.Host, "Path": r.URL.Path}
	for k, v := range r.Header {
		out[k] = v[0]
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// freePort returns a loopback port nothing listens on.
func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return p
}

// tcpServer is a raw TCP server on loopback. Each connection first has its
// PROXY protocol header (if any) parsed; the server then answers every line
// it reads with "<header>|<line>", where header is "none", "v1 <line>" or
// "v2 <src>:<port>".
type tcpServer struct {
	Port int
	ln   net.Listener
	wg   sync.WaitGroup
}

func startTCPServer(t *testing.T) *tcpServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &tcpServer{Port: ln.Addr().(*net.TCPAddr).Port, ln: ln}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go s.handle(c)
		}
	}()
	t.Cleanup(func() { ln.Close(); s.wg.Wait() })
	return s
}

var proxyV2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

func (s *tcpServer) handle(c net.Conn) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	header := "none"
	// Peek only as much as is sure to come: the first byte tells which
	// header, if any, starts the stream.
	first, err := br.Peek(1)
	if err != nil {
		return
	}
	var peek []byte
	switch first[0] {
	case 'P':
		peek, _ = br.Peek(6)
	case '\r':
		peek, _ = br.Peek(12)
	}
	switch {
	case bytes.Equal(peek, []byte("PROXY ")):
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		header = "v1 " + strings.TrimRight(line, "\r\n")
	case bytes.Equal(peek, proxyV2Sig):
		h, err := readProxyV2(br)
		if err != nil {
			fmt.Fprintf(c, "bad v2 header: %v\n", err)
			return
		}
		header = "v2 " + h
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := fmt.Fprintf(c, "%s|%s", header, line); err != nil {
			return
		}
	}
}

// readProxyV2 reads a PROXY protocol v2 header and returns its source
// address for TCP over IPv4 ("PROXY" command), or the command for others.
func readProxyV2(r io.Reader) (string, error) {
	var h [16]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return "", err
	}
	if !bytes.Equal(h[:12], proxyV2Sig) {
		return "", errors.New("no v2 signature")
	}
	ver, cmd, fam := h[12]>>4, h[12]&0xf, h[13]
	body := make([]byte, binary.BigEndian.Uint16(h[14:16]))
	if _, err := io.ReadFull(r, body); err != nil {
		return "", err
	}
	if ver != 2 {
		return "", fmt.Errorf("version %d", ver)
	}
	if cmd != 1 {
		return fmt.Sprintf("cmd=%d", cmd), nil
	}
	if fam != 0x11 || len(body) < 12 { // TCP over IPv4
		return fmt.Sprintf("family=%#x", fam), nil
	}
	src := net.IP(body[0:4])
	return fmt.Sprintf("%s:%d", src, binary.BigEndian.Uint16(body[8:10])), nil
}

// tcpRoundTrip connects to addr, sends line and returns the reply line.
func tcpRoundTrip(addr, line string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line+"\n"); err != nil {
		return "", err
	}
	reply, err := bufio.NewReader(c).ReadString('\n')
	return strings.TrimRight(reply, "\n"), err
}

// lbSpec is a load balancer with any number of listeners, each with its own
// pool, built by buildLB.
type lbSpec struct {
	LB, VIP   string
	Pools     []string
	Listeners []string
	Members   [][]string // per pool, member ids in creation order
}

// poolSpec is one pool, its members' ports and the listener in front of it.
type poolSpec struct {
	Port     int            // listener port
	Protocol string         // "http" (default) or "tcp", for the pool and the listener
	Pool     map[string]any // extra pool fields
	Listener map[string]any // extra listener fields
	Members  []int          // member ports on 127.0.0.1
}

// buildLB creates one LB with a listener and a pool per spec and waits until
// every listener and member is active.
func (s *stack) buildLB(name string, specs ...poolSpec) *lbSpec {
	s.t.Helper()
	lb := s.Create("/v1/load-balancers", map[string]any{"name": name})
	out := &lbSpec{LB: lb["id"].(string), VIP: lb["vip_address"].(string)}
	for _, sp := range specs {
		proto := sp.Protocol
		if proto == "" {
			proto = "http"
		}
		body := map[string]any{"load_balancer_id": out.LB, "protocol": proto}
		for k, v := range sp.Pool {
			body[k] = v
		}
		pool := s.Create("/v1/pools", body)["id"].(string)
		var members []string
		for _, p := range sp.Members {
			members = append(members, s.Create("/v1/members", map[string]any{"pool_id": pool, "address": "127.0.0.1", "port": p})["id"].(string))
		}
		lbody := map[string]any{"load_balancer_id": out.LB, "protocol": proto, "port": sp.Port, "default_pool_id": pool}
		for k, v := range sp.Listener {
			lbody[k] = v
		}
		out.Listeners = append(out.Listeners, s.Create("/v1/listeners", lbody)["id"].(string))
		out.Pools = append(out.Pools, pool)
		out.Members = append(out.Members, members)
	}
	s.WaitActive("/v1/load-balancers/" + out.LB)
	for i := range out.Listeners {
		s.WaitActive("/v1/listeners/" + out.Listeners[i])
		for _, m := range out.Members[i] {
			s.WaitActive("/v1/members/" + m)
		}
	}
	return out
}

// url is the http URL of the VIP on port.
func (l *lbSpec) url(port int, path string) string {
	return fmt.Sprintf("http://%s:%d%s", l.VIP, port, path)
}

func (l *lbSpec) addr(port int) string { return net.JoinHostPort(l.VIP, fmt.Sprint(port)) }

// memberStatus reads a member's operating_status from the LB's status tree.
func (s *stack) memberStatus(lbID, memberID string) string {
	s.t.Helper()
	_, tree := s.Call("GET", "/v1/load-balancers/"+lbID+"/status", nil)
	pools, _ := tree["pools"].([]any)
	for _, p := range pools {
		members, _ := p.(map[string]any)["members"].([]any)
		for _, m := range members {
			if mm := m.(map[string]any); mm["id"] == memberID {
				st, _ := mm["operating_status"].(string)
				return st
			}
		}
	}
	return ""
}

// get sends a GET with optional headers and returns status, body and headers.
func get(c *http.Client, url string, hdr map[string]string) (int, string, http.Header, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return 0, "", nil, err
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	res, err := c.Do(req)
	if err != nil {
		return 0, "", nil, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, strings.TrimSpace(string(b)), res.Header, err
}

// noRedirects is a client that returns redirects instead of following them.
func noRedirects() *http.Client {
	c := teststack.NewClient(nil)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

// refused reports whether nothing accepts connections on addr.
func refused(addr string) bool {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return true
	}
	c.Close()
	return false
}
