package agent

import (
	"sync"
	"time"

	"github.com/fulcrumlb/fulcrum/openapi"
)

// fullMembersEvery is how often a report carries every member's health even
// when none changed: the API keeps what reports tell it, so a report it
// answered but whose statuses it lost (a replica stopping mid-derivation)
// is made good within this time.
const fullMembersEvery = quietEvery

// reportMember is one member's health in a report.
type reportMember = struct {
	Check  *string                         `json:"check,omitempty"`
	Id     string                          `json:"id"`
	Status openapi.NodeReportMembersStatus `json:"status"`
}

// memberReports remembers the member health the API acknowledged, so a
// heartbeat carries only the members whose health changed since (at 1,000
// load balancers a full list is ~100 KB, decoded and validated by the API
// every heartbeat of every node), and all of them every fullMembersEvery.
type memberReports struct {
	mu     sync.Mutex
	sent   map[string]string // id → status and check acknowledged
	fullAt time.Time
}

func memberKey(m reportMember) string {
	k := string(m.Status)
	if m.Check != nil {
		k += "\x00" + *m.Check
	}
	return k
}

// unsent returns the members of all to report now: those whose health
// differs from what the API acknowledged, or all of them when a full report
// is due. sent records them once the API answered the report.
func (r *memberReports) unsent(all []reportMember, now time.Time) (out []reportMember, sent func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	full := r.sent == nil || now.Sub(r.fullAt) >= fullMembersEvery
	out = make([]reportMember, 0, len(all))
	keys := make(map[string]string, len(all))
	for _, m := range all {
		k := memberKey(m)
		keys[m.Id] = k
		if !full && r.sent[m.Id] == k {
			continue
		}
		out = append(out, m)
	}
	return out, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if full {
			r.sent = keys // forgets members no longer served
			r.fullAt = now
			return
		}
		for _, m := range out {
			r.sent[m.Id] = keys[m.Id]
		}
	}
}

// any reports whether a full list was acknowledged yet (before, a report
// of some members only would leave the others unknown).
func (r *memberReports) any() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent != nil
}

// unsentOf returns those of some members (not all of the node's) whose
// health differs from what the API acknowledged; sent records them.
func (r *memberReports) unsentOf(some []reportMember) (out []reportMember, sent func()) {
	r.mu.Lock()
	defer r.mu.Unlock()
	keys := make(map[string]string, len(some))
	for _, m := range some {
		k := memberKey(m)
		if r.sent != nil && r.sent[m.Id] == k {
			continue
		}
		keys[m.Id] = k
		out = append(out, m)
	}
	return out, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.sent == nil {
			return
		}
		for id, k := range keys {
			r.sent[id] = k
		}
	}
}

// fullDue reports whether the next unsent returns every member.
func (r *memberReports) fullDue(now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.sent == nil || now.Sub(r.fullAt) >= fullMembersEvery
}
