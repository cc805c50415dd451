package agent

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/fulcrumlb/fulcrum/dataplane/haproxy"
)

// checkedFile is what a checker saw: the candidate's text and inode.
type checkedFile struct {
	text string
	ino  uint64
}

// recordingChecker passes every candidate but those holding reject, and
// records what it checked.
type recordingChecker struct {
	reject string
	seen   []checkedFile
}

func (c *recordingChecker) Check(_ context.Context, path string) error {
	text, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	st, err := os.Stat(path)
	if err != nil {
		return err
	}
	c.seen = append(c.seen, checkedFile{string(text), st.Sys().(*syscall.Stat_t).Ino})
	if c.reject != "" && strings.Contains(string(text), c.reject) {
		return &haproxy.CheckError{Alerts: []haproxy.Alert{{Section: "frontend " + c.reject, Message: "bad"}}}
	}
	return nil
}

func inode(t *testing.T, path string) uint64 {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

// The reload goes onto the very file `haproxy -c` passed, moved into place
// (not the same text written a second time); a candidate the check refused
// never becomes haproxy.cfg; and a checked file whose text is not what is
// reloaded in the end (a load balancer held back after the check) is not
// moved into place: haproxy.cfg is written with what is reloaded.
func TestApplyReloadsTheCheckedFile(t *testing.T) {
	a, f := testAgent(t, "")
	c := &recordingChecker{reject: "lsn_badx80"}
	a.checker = c
	ctx := context.Background()
	cfgPath := a.path("haproxy.cfg")

	// A new listener: checked, then reloaded from the checked file.
	if err := a.Apply(ctx, snapshot(1, lbWith("lb_a", "127.0.0.2", 80))); err != nil {
		t.Fatal(err)
	}
	if f.reloads != 1 || len(c.seen) != 1 {
		t.Fatalf("reloads %d, checks %d; want 1 and 1", f.reloads, len(c.seen))
	}
	text, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if string(text) != c.seen[0].text || !strings.Contains(string(text), "lsn_ax80") {
		t.Fatalf("haproxy.cfg is not the checked candidate:\n%s", text)
	}
	if got := inode(t, cfgPath); got != c.seen[0].ino {
		t.Fatalf("haproxy.cfg is inode %d, the checked candidate was %d: written again instead of moved", got, c.seen[0].ino)
	}
	if _, err := os.Stat(a.candidatePath()); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the candidate is still at %s after the reload (err %v)", a.candidatePath(), err)
	}

	// A load balancer the check refuses: held out; what reloads (nothing
	// new here) never holds it.
	if err := a.Apply(ctx, snapshot(2, lbWith("lb_a", "127.0.0.2", 80), lbWith("lb_bad", "127.0.0.3", 80))); err != nil {
		t.Fatal(err)
	}
	if text, _ := os.ReadFile(cfgPath); strings.Contains(string(text), "lsn_badx80") {
		t.Fatalf("haproxy.cfg holds the refused load balancer:\n%s", text)
	}
	if _, ok := a.lbErrors["lb_bad"]; !ok {
		t.Fatalf("lb_bad not reported as failed: %v", a.lbErrors)
	}

	// Checked with lb_c, which then cannot be bound (held back after the
	// check): the reload's file is written without it, not the checked one
	// moved into place.
	a.binder = bindFunc(func(ap netip.AddrPort) error {
		if ap.Addr() == netip.MustParseAddr("127.0.0.4") {
			return errors.New("address in use")
		}
		return nil
	})
	checks, reloads := len(c.seen), f.reloads
	if err := a.Apply(ctx, snapshot(3, lbWith("lb_a", "127.0.0.2", 80), lbWith("lb_c", "127.0.0.4", 80), lbWith("lb_d", "127.0.0.5", 80))); err != nil {
		t.Fatal(err)
	}
	if f.reloads != reloads+1 {
		t.Fatalf("reloads %d; want %d", f.reloads, reloads+1)
	}
	last := c.seen[len(c.seen)-1]
	if len(c.seen) == checks || !strings.Contains(last.text, "lsn_cx80") {
		t.Fatalf("the candidate with lb_c was not checked")
	}
	text, _ = os.ReadFile(cfgPath)
	if strings.Contains(string(text), "lsn_cx80") || !strings.Contains(string(text), "lsn_dx80") {
		t.Fatalf("haproxy.cfg should hold lb_d and not lb_c:\n%s", text)
	}
	if inode(t, cfgPath) == last.ino {
		t.Fatal("the checked candidate (with lb_c) was moved into place")
	}
}
