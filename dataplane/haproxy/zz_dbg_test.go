package haproxy
import ("testing";"time";"strings";"sync";"sync/atomic";"os";"path/filepath";"context")
func TestZZNoExpose(t *testing.T) {
	a, b := htMember(t, "a"), htMember(t, "b")
	conf := htConf{Dir: htDir(t), Port: htFreePort(t), Servers: []htServer{{"mbr_a", htHostPort(a)}, {"mbr_b", htHostPort(b)}}}
	mod := os.Getenv("ZZMODE")
	render := func() []byte {
		s := string(conf.render(t))
		if mod == "nostats" { s = strings.Replace(s, "    stats socket "+conf.Dir+"/stats.sock mode 600 level admin expose-fd listeners\n", "", 1) }
		if mod == "noexpose" { s = strings.Replace(s, " expose-fd listeners", "", 1) }
		return []byte(s)
	}
	cfg := filepath.Join(conf.Dir, "haproxy.cfg")
	htWriteFile(t, cfg, render())
	logger, _ := htLogger(t)
	p := NewProcess(ProcessConfig{Binary: htBinary(t), ConfigPath: cfg, Dir: conf.Dir, Logger: logger})
	if err := p.Start(context.Background()); err != nil { t.Fatal(err) }
	defer p.Stop(context.Background())
	url := "http://127.0.0.1:" + itoa(conf.Port) + "/"
	var ok, failed atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var first atomic.Value
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(ka bool) { defer wg.Done(); c := htClient(ka); for i := 0; i < 100000; i++ { select { case <-stop: return; default: }; if _, _, err := htGet(c, url); err != nil { failed.Add(1); first.CompareAndSwap(nil, err.Error()) } else { ok.Add(1) } } }(g%2 == 0)
	}
	for i := 1; i <= 20; i++ { conf.Gen = i; htWriteFile(t, cfg, render()); if err := p.Reload(context.Background()); err != nil { t.Fatal(err) } }
	close(stop); wg.Wait()
	t.Logf("mode %q ok %d failed %d first %v", mod, ok.Load(), failed.Load(), first.Load())
}
