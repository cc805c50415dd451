package api

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Connections read through a buffer serve HTTP/1.1 and HTTP/2 cleartext
// (prior knowledge) as before, full duplex included: each line the client
// sends is echoed at once while its body is still open.
func TestBufferedListenerServes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.EnableFullDuplex()
		w.WriteHeader(http.StatusOK)
		_ = rc.Flush()
		br := bufio.NewReader(r.Body)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			_, _ = io.WriteString(w, strings.ToUpper(line))
			_ = rc.Flush()
		}
	})}
	go srv.Serve(bufferedListener{ln}) //nolint:errcheck
	defer srv.Close()
	for _, h2 := range []bool{false, true} {
		var cp http.Protocols
		if h2 {
			cp.SetUnencryptedHTTP2(true)
		} else {
			cp.SetHTTP1(true)
		}
		tr := &http.Transport{Protocols: &cp}
		pr, pw := io.Pipe()
		req, _ := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/", pr)
		res, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
		if err != nil {
			t.Fatalf("h2=%v: %v", h2, err)
		}
		if h2 != (res.ProtoMajor == 2) {
			t.Fatalf("h2=%v: answered over %s", h2, res.Proto)
		}
		br := bufio.NewReader(res.Body)
		for _, m := range []string{"ack 1\n", "ack 2\n", "ping\n"} {
			if _, err := io.WriteString(pw, m); err != nil {
				t.Fatal(err)
			}
			got, err := br.ReadString('\n')
			if err != nil || got != strings.ToUpper(m) {
				t.Fatalf("h2=%v: echo of %q: %q, %v", h2, m, got, err)
			}
		}
		pw.Close()
		res.Body.Close()
		tr.CloseIdleConnections()
	}
}
