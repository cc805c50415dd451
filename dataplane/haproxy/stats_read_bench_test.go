package haproxy

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fulcrumlb/fulcrum/internal/testenv"
)

// BenchmarkStatsReadStall prints how long HAProxy's clients wait while the
// whole worker's `show stat` is read, at 1,000 load balancers (a frontend
// and a backend of 10 servers each): in one exchange (Stats) and in pieces
// of 5 load balancers' proxies 2 ms apart (StatsOfEach, as the agent's
// whole read: dataplane/agent/wholeread.go). A probe sends one request at a
// time, each on a new connection, 0.5 ms apart, to a frontend HAProxy
// answers itself; the line gives the probe's answer times during the reads
// and outside them.
//
//	go test -run '^$' -bench StatsReadStall -benchtime 1x ./dataplane/haproxy/
func BenchmarkStatsReadStall(b *testing.B) {
	const lbs, members, reads = 1000, 10, 5
	bin := testenv.RequireHAProxy(b)
	dir, err := os.MkdirTemp("", "fhp")
	if err != nil {
		b.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	probe := ln.Addr().String()
	ln.Close()
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "global\n    maxconn 4000\n    stats socket %s/stats.sock mode 600 level admin\n", dir)
	cfg.WriteString("defaults\n    mode http\n    timeout connect 2s\n    timeout client 10s\n    timeout server 10s\n")
	fmt.Fprintf(&cfg, "frontend probe\n    bind %s\n    http-request return status 200 content-type text/plain string ok\n", probe)
	var names []string
	for i := range lbs {
		// No bind: the frontend's row is all the read needs (a warning).
		fmt.Fprintf(&cfg, "frontend lsn_%d\n    default_backend pool_%d\nbackend pool_%d\n", i, i, i)
		for j := range members {
			fmt.Fprintf(&cfg, "    server mbr_%d_%d 127.0.0.1:%d\n", i, j, 9+j)
		}
		names = append(names, fmt.Sprintf("lsn_%d", i), fmt.Sprintf("pool_%d", i))
	}
	cfgPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o644); err != nil {
		b.Fatal(err)
	}
	p := NewProcess(ProcessConfig{Binary: bin, ConfigPath: cfgPath, Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), StopTimeout: 3 * time.Second})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := p.Start(ctx); err != nil {
		b.Fatal(err)
	}
	defer p.Stop(context.Background())
	rt := Runtime{Socket: filepath.Join(dir, "stats.sock")}

	type answer struct{ start, end time.Time }
	var mu sync.Mutex
	var answers []answer
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			t0 := time.Now()
			c, err := net.Dial("tcp", probe)
			if err == nil {
				io.WriteString(c, "GET / HTTP/1.1\r\nHost: p\r\nConnection: close\r\n\r\n")
				io.Copy(io.Discard, c)
				c.Close()
			}
			mu.Lock()
			answers = append(answers, answer{t0, time.Now()})
			mu.Unlock()
			time.Sleep(500 * time.Microsecond)
		}
	}()
	type window struct{ start, end time.Time }
	measure := func(read func() (int, error)) (ws []window, took []time.Duration, n int) {
		for range reads {
			time.Sleep(300 * time.Millisecond)
			w := window{start: time.Now()}
			rows, err := read()
			if err != nil {
				b.Fatal(err)
			}
			w.end = time.Now()
			ws, took, n = append(ws, w), append(took, w.end.Sub(w.start)), rows
		}
		return ws, took, n
	}
	whole, wholeTook, wholeRows := measure(func() (int, error) {
		px, sv, err := rt.Stats(ctx)
		return len(px) + len(sv), err
	})
	const perPiece = 2 * 5 // 5 load balancers of 10 members: 60 rows (wholeReadRows)
	pieces, piecesTook, piecesRows := measure(func() (int, error) {
		n := 0
		for i := 0; i < len(names); i += perPiece {
			if i > 0 {
				time.Sleep(2 * time.Millisecond)
			}
			px, sv, err := rt.StatsOfEach(ctx, names[i:min(i+perPiece, len(names))])
			if err != nil {
				return 0, err
			}
			n += len(px) + len(sv)
		}
		return n, nil
	})
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done

	during := func(ws []window) (in, out []time.Duration) {
		for _, a := range answers {
			overlaps := false
			for _, w := range ws {
				if a.end.After(w.start) && a.start.Before(w.end) {
					overlaps = true
				}
			}
			if overlaps {
				in = append(in, a.end.Sub(a.start))
			} else {
				out = append(out, a.end.Sub(a.start))
			}
		}
		return in, out
	}
	ms := func(d time.Duration) string { return fmt.Sprintf("%.2f", float64(d)/float64(time.Millisecond)) }
	q := func(ds []time.Duration, f float64) time.Duration {
		if len(ds) == 0 {
			return 0
		}
		slices.Sort(ds)
		return ds[int(f*float64(len(ds)-1))]
	}
	for _, m := range []struct {
		name string
		ws   []window
		took []time.Duration
		rows int
	}{{"whole", whole, wholeTook, wholeRows}, {"pieces", pieces, piecesTook, piecesRows}} {
		in, _ := during(m.ws)
		fmt.Printf("stats-read: lbs=%d members=%d %s: rows=%d read_ms_p50=%s probe_answers=%d probe_p50_ms=%s probe_p99_ms=%s probe_max_ms=%s\n",
			lbs, members, m.name, m.rows, ms(q(m.took, 0.5)), len(in), ms(q(in, 0.5)), ms(q(in, 0.99)), ms(q(in, 1)))
	}
	_, out := during(append(whole, pieces...))
	fmt.Printf("stats-read: outside the reads: probe_answers=%d probe_p50_ms=%s probe_p99_ms=%s probe_max_ms=%s\n", len(out), ms(q(out, 0.5)), ms(q(out, 0.99)), ms(q(out, 1)))
}
