package agent

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// While writeLoop runs (as under Run), a save never waits for the disk: with
// a write of stats.json held (a stalled fsync), readings, new workers and
// flushes all return at once; once the write can go, the file holds the
// newest counters (latest wins, nothing lost), and flushNow (what the agent
// does when it stops) writes what is left before it returns.
func TestStatsWrittenOffTheCallersPath(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	path := filepath.Join(t.TempDir(), "stats.json")
	cfg := statsConfig()
	objs := statObjects(cfg)
	s := loadStats(path)
	done := make(chan struct{})
	go func() { defer close(done); s.writeLoop(ctx) }()
	for start := time.Now(); ; time.Sleep(time.Millisecond) { // the loop has started
		s.mu.Lock()
		on := s.async
		s.mu.Unlock()
		if on {
			break
		}
		if time.Since(start) > 10*time.Second {
			t.Fatal("writeLoop did not start")
		}
	}

	s.writeMu.Lock() // the disk stalls
	returned := make(chan struct{})
	go func() {
		defer close(returned)
		for i := int64(1); i <= 50; i++ {
			worker := "100"
			if i > 25 {
				worker = "200" // a reload half way: written at once before, now marked due
			}
			s.sample(worker, statShow{fe: map[string]int64{"lst_a": i}, be: map[string]int64{"pool_1": i}, srv: map[string]int64{"mbr_1": i}}.read(cfg), objs, true)
			s.flush()
		}
	}()
	select {
	case <-returned:
	case <-time.After(30 * time.Second):
		s.writeMu.Unlock()
		t.Fatal("saves waited for the stalled write of stats.json")
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("stats.json written while the disk stalled: %v", err)
	}
	s.writeMu.Unlock()

	// The newest counters reach the file: worker 200, lst_a 25 (the first
	// worker's last) in the base and 50 last.
	want := func() bool {
		b, err := os.ReadFile(path)
		if err != nil {
			return false
		}
		var f statsFile
		if json.Unmarshal(b, &f) != nil || f.Worker != "200" {
			return false
		}
		e := f.Entries["lst_a"]
		return e.Base.Requests == 25 && e.Last.Requests == 50
	}
	for start := time.Now(); !want(); time.Sleep(5 * time.Millisecond) {
		if time.Since(start) > 10*time.Second {
			b, _ := os.ReadFile(path)
			t.Fatalf("stats.json does not hold the newest counters: %s", b)
		}
	}

	// A reading after the loop stopped (the agent stops): flushNow writes it.
	cancel()
	<-done
	s.sample("200", statShow{fe: map[string]int64{"lst_a": 60}}.read(cfg), objs, false)
	s.flushNow()
	r := loadStats(path)
	if e := r.Entries["lst_a"]; e == nil || e.Base.Requests != 25 || e.Last.Requests != 60 {
		t.Fatalf("after flushNow stats.json holds %+v, want base 25, last 60", e)
	}
	if ents, _ := os.ReadDir(filepath.Dir(path)); len(ents) != 1 {
		t.Fatalf("%d files in the directory, want stats.json alone", len(ents))
	}
}
