package acceptance

// Benchmarks of the whole path a user waits on: API write → Postgres NOTIFY →
// agent long-poll wakes → render + `haproxy -c` → reload or runtime API →
// traffic. They measure, they assert nothing about speed. Run them with
// -benchtime 1x: each iteration takes a fixed number of samples and reports
// their percentiles (`make bench` does this).
//
// The agents run with the harness's configuration. A global OpenTelemetry
// provider records only the agent's own spans (agent.apply, agent.validate,
// haproxy.reload, haproxy.runtime), which splits the latency into its parts.

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"

	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/teststack"
)

const (
	// benchCreateSamples load balancers are created per iteration.
	benchCreateSamples = 30
	// benchMemberSamples member changes are made per iteration.
	benchMemberSamples = 100
	// benchPollEvery is the traffic probe's cadence (a fresh connection each time).
	benchPollEvery = 5 * time.Millisecond
	// benchBound bounds every wait for traffic to change.
	benchBound = 30 * time.Second
	benchPort  = 8080
)

func BenchmarkCreateToFirst200(b *testing.B) {
	spans := benchSpans()
	// A /20 of VIPs: each sample keeps its load balancer.
	s := startStack(b, teststack.Options{Quotas: benchQuotas, VIPPrefixLen: 20})
	const node = "bench-create"
	ag := s.StartAgent(node)
	be := teststack.StartBackend(b, "a")
	benchWait(b, "the agent's first snapshot", func() bool { return ag.AppliedRevision() > 0 })

	// One load balancer outside the figures: first connections, first reload.
	warm := s.createToFirst200("warm-up", be)
	s.benchWaitActive("/v1/listeners/" + warm.listener)

	var samples []createSample
	for b.Loop() {
		for range benchCreateSamples {
			smp := s.createToFirst200(fmt.Sprintf("lb-%d", len(samples)), be)
			samples = append(samples, smp)
			// Each sample starts on an idle node: the agent has finished
			// applying (and reported) the previous one.
			s.benchWaitActive("/v1/listeners/" + smp.listener)
		}
	}
	applies := spans.applies(node)

	var total, apiDur, dataplane, wake, check, reload, reloadTo200 []float64
	var nApplies, nReloads int
	for _, smp := range samples {
		total = append(total, ms(smp.first200.Sub(smp.start)))
		apiDur = append(apiDur, ms(smp.written.Sub(smp.start)))
		dataplane = append(dataplane, ms(smp.first200.Sub(smp.written)))
		in := applies.between(smp.start, smp.first200)
		nApplies += len(in)
		for _, a := range in {
			if a.reload > 0 {
				nReloads++
			}
		}
		if len(in) == 0 {
			b.Fatalf("%s: no agent apply between the first API call and the first 200", smp.name)
		}
		last := in[len(in)-1] // the apply that put the listener live
		wake = append(wake, ms(last.start.Sub(smp.written)))
		check = append(check, ms(last.validate))
		reload = append(reload, ms(last.reload))
		if !last.reloadStart.IsZero() {
			reloadTo200 = append(reloadTo200, ms(smp.first200.Sub(last.reloadStart)))
		}
	}
	b.ReportMetric(0, "ns/op") // an iteration is a batch of samples: see the percentiles
	b.ReportMetric(float64(len(samples)), "lbs")
	b.ReportMetric(percentile(total, 50), "p50-ms")
	b.ReportMetric(percentile(total, 99), "p99-ms")
	b.ReportMetric(mean(total), "mean-ms")
	b.ReportMetric(percentile(apiDur, 50), "api4calls-p50-ms")
	b.ReportMetric(percentile(dataplane, 50), "after-api-p50-ms")
	b.ReportMetric(percentile(wake, 50), "wake-p50-ms")
	b.ReportMetric(percentile(check, 50), "check-p50-ms")
	b.ReportMetric(percentile(reload, 50), "reload-p50-ms")
	b.ReportMetric(percentile(reloadTo200, 50), "reload-to-200-p50-ms")
	b.ReportMetric(float64(nApplies)/float64(len(samples)), "applies/lb")
	b.ReportMetric(float64(nReloads)/float64(len(samples)), "reloads/lb")
	b.Logf("create → first 200 over %d load balancers (ms): %s", len(samples), summary(total))
	b.Logf("  4 API calls: %s", summary(apiDur))
	b.Logf("  listener written → first 200: %s", summary(dataplane))
	b.Logf("  listener written → start of the apply that served it: %s", summary(wake))
	b.Logf("  that apply's validation (render + haproxy -c): %s", summary(check))
	b.Logf("  that apply's reload, until confirmed (the agent checks every 10ms): %s", summary(reload))
	b.Logf("  that apply's reload, from its start to the first 200: %s", summary(reloadTo200))
}

type createSample struct {
	name, listener string
	start          time.Time // before the first API call
	written        time.Time // the listener's POST answered
	first200       time.Time
}

// createToFirst200 creates a load balancer, pool, member and http listener as
// a user would, then probes the VIP until it answers 200.
func (s *stack) createToFirst200(name string, be *teststack.Backend) createSample {
	s.t.Helper()
	smp := createSample{name: name, start: time.Now()}
	lb := s.Create("/v1/load-balancers", map[string]any{"name": name})
	pool := s.Create("/v1/pools", map[string]any{"load_balancer_id": lb["id"], "protocol": "http"})
	s.Create("/v1/members", map[string]any{"pool_id": pool["id"], "address": "127.0.0.1", "port": be.Port})
	l := s.Create("/v1/listeners", map[string]any{"load_balancer_id": lb["id"], "protocol": "http", "port": benchPort,
		"default_pool_id": pool["id"]})
	smp.written = time.Now()
	smp.listener = l["id"].(string)
	url := fmt.Sprintf("http://%s:%d/", lb["vip_address"], benchPort)
	cl := teststack.NewClient(nil)
	cl.Timeout = time.Second
	deadline := smp.start.Add(benchBound)
	for {
		if res, err := cl.Get(url); err == nil {
			_, _ = io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				smp.first200 = time.Now()
				return smp
			}
		}
		if time.Now().After(deadline) {
			s.t.Fatalf("%s: no 200 from %s within %s", name, url, benchBound)
		}
		time.Sleep(benchPollEvery)
	}
}

func BenchmarkMemberChangeEffective(b *testing.B) {
	spans := benchSpans()
	s := startStack(b, teststack.Options{Quotas: benchQuotas})
	const node = "bench-member"
	ag := s.StartAgent(node)
	benchWait(b, "the agent's first snapshot", func() bool { return ag.AppliedRevision() > 0 })
	ba, bb := teststack.StartBackend(b, "a"), teststack.StartBackend(b, "b")
	lb := s.Create("/v1/load-balancers", map[string]any{"name": "members"})
	pool := s.Create("/v1/pools", map[string]any{"load_balancer_id": lb["id"], "protocol": "http", "algorithm": "round_robin"})
	ma := s.Create("/v1/members", map[string]any{"pool_id": pool["id"], "address": "127.0.0.1", "port": ba.Port})["id"].(string)
	s.Create("/v1/members", map[string]any{"pool_id": pool["id"], "address": "127.0.0.1", "port": bb.Port})
	l := s.Create("/v1/listeners", map[string]any{"load_balancer_id": lb["id"], "protocol": "http", "port": benchPort,
		"default_pool_id": pool["id"]})
	s.benchWaitActive("/v1/listeners/" + l["id"].(string))
	s.benchWaitActive("/v1/members/" + ma)
	url := fmt.Sprintf("http://%s:%d/", lb["vip_address"], benchPort)
	cl := teststack.NewClient(nil)
	cl.Timeout = time.Second
	if got := distribution(b, cl, url, 10); got["a"] != 5 || got["b"] != 5 {
		b.Fatalf("round robin over a and b should alternate: %v", got)
	}

	// Member a is drained, restored, disabled and enabled in turn; each
	// change is one sample, timed from the PATCH until traffic shows it.
	changes := []struct {
		body  map[string]any
		stops bool // a stops getting new requests (else: starts again)
	}{
		{map[string]any{"weight": 0}, true},
		{map[string]any{"weight": 1}, false},
		{map[string]any{"enabled": false}, true},
		{map[string]any{"enabled": true}, false},
	}
	var samples []memberSample
	for b.Loop() {
		for i := range benchMemberSamples {
			c := changes[i%len(changes)]
			smp := memberSample{stops: c.stops, start: time.Now()}
			s.MustCall(http.StatusOK, http.MethodPatch, "/v1/members/"+ma, c.body)
			smp.written = time.Now()
			smp.effective = watchMemberA(b, cl, url, c.stops, smp.start)
			samples = append(samples, smp)
			// Let the agent finish and report, so samples do not queue up.
			s.benchWaitActive("/v1/members/" + ma)
		}
	}
	applies := spans.applies(node)

	var total, stops, starts, apiDur, wake, check, runtime []float64
	reloads := 0
	for _, smp := range samples {
		d := ms(smp.effective.Sub(smp.start))
		total = append(total, d)
		if smp.stops {
			stops = append(stops, d)
		} else {
			starts = append(starts, d)
		}
		apiDur = append(apiDur, ms(smp.written.Sub(smp.start)))
		in := applies.between(smp.start, smp.effective)
		if len(in) == 0 {
			b.Fatalf("no agent apply between a PATCH and its effect")
		}
		last := in[len(in)-1]
		wake = append(wake, ms(last.start.Sub(smp.written)))
		check = append(check, ms(last.validate))
		runtime = append(runtime, ms(last.runtime))
	}
	for _, a := range applies.all(samples[0].start) {
		if a.reload > 0 {
			reloads++
		}
	}
	b.ReportMetric(0, "ns/op") // an iteration is a batch of samples: see the percentiles
	b.ReportMetric(float64(len(samples)), "changes")
	b.ReportMetric(percentile(total, 50), "p50-ms")
	b.ReportMetric(percentile(total, 99), "p99-ms")
	b.ReportMetric(mean(total), "mean-ms")
	b.ReportMetric(percentile(stops, 50), "stop-p50-ms")
	b.ReportMetric(percentile(starts, 50), "start-p50-ms")
	b.ReportMetric(percentile(apiDur, 50), "api-p50-ms")
	b.ReportMetric(percentile(wake, 50), "wake-p50-ms")
	b.ReportMetric(percentile(check, 50), "check-p50-ms")
	b.ReportMetric(percentile(runtime, 50), "runtime-p50-ms")
	b.ReportMetric(float64(reloads), "reloads")
	b.Logf("member change → effective over %d changes (ms): %s", len(samples), summary(total))
	b.Logf("  member stops getting requests (weight 0 / disabled): %s", summary(stops))
	b.Logf("  member gets requests again (weight 1 / enabled): %s", summary(starts))
	b.Logf("  PATCH: %s", summary(apiDur))
	b.Logf("  PATCH answered → start of the apply: %s", summary(wake))
	b.Logf("  that apply's validation (render + haproxy -c): %s", summary(check))
	b.Logf("  that apply's runtime API commands: %s", summary(runtime))
	b.Logf("  HAProxy reloads during the changes: %d", reloads)
}

type memberSample struct {
	stops          bool
	start, written time.Time
	effective      time.Time
}

// watchMemberA probes url until traffic shows member a started again (its
// first answer) or stopped: two answers in a row from b, which round robin
// over a and b never gives while a is in; the time is the second one's, and
// three more answers from b confirm it.
func watchMemberA(b *testing.B, cl *http.Client, url string, stops bool, start time.Time) time.Time {
	b.Helper()
	deadline := start.Add(benchBound)
	prev := ""
	var seen time.Time
	confirmations := 0
	for {
		name, err := teststack.Fetch(cl, url)
		now := time.Now()
		if err != nil {
			b.Fatalf("request to %s: %v", url, err)
		}
		switch {
		case !stops && name == "a":
			return now
		case !stops:
		case name == "a":
			seen, confirmations = time.Time{}, 0
		case seen.IsZero() && prev == "b":
			seen = now
		case !seen.IsZero():
			if confirmations++; confirmations == 3 {
				return seen
			}
		}
		prev = name
		if now.After(deadline) {
			b.Fatalf("member change not visible in traffic within %s", benchBound)
		}
		time.Sleep(benchPollEvery)
	}
}

// benchQuotas let a benchmark's tenant create a few hundred load balancers.
var benchQuotas = store.Quotas{LoadBalancers: 1000, Listeners: 1000, Pools: 1000, Members: 1000, RoutingRules: 1000, Certificates: 10}

// benchWaitActive is WaitActive polling every 10ms for up to benchBound.
func (s *stack) benchWaitActive(path string) {
	s.t.Helper()
	benchWait(s.t, path+" active", func() bool {
		_, ok := s.Active(path)
		return ok
	})
}

// benchWait polls cond every 10ms for up to benchBound.
func benchWait(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(benchBound)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out after %s waiting for %s", benchBound, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// --- the agent's spans ---

// benchSpanNames are the agent spans recorded; every other span is dropped
// unsampled (the store's per-query spans included), so recording costs little.
var benchSpanNames = map[string]bool{"agent.apply": true, "agent.validate": true, "haproxy.reload": true, "haproxy.runtime": true}

type spanLog struct {
	mu    sync.Mutex
	spans []sdktrace.ReadOnlySpan
}

func (l *spanLog) OnStart(context.Context, sdktrace.ReadWriteSpan) {}
func (l *spanLog) OnEnd(s sdktrace.ReadOnlySpan) {
	l.mu.Lock()
	l.spans = append(l.spans, s)
	l.mu.Unlock()
}
func (l *spanLog) Shutdown(context.Context) error   { return nil }
func (l *spanLog) ForceFlush(context.Context) error { return nil }

type nameSampler struct{}

func (nameSampler) ShouldSample(p sdktrace.SamplingParameters) sdktrace.SamplingResult {
	ts := trace.SpanContextFromContext(p.ParentContext).TraceState()
	if benchSpanNames[p.Name] {
		return sdktrace.SamplingResult{Decision: sdktrace.RecordAndSample, Tracestate: ts}
	}
	return sdktrace.SamplingResult{Decision: sdktrace.Drop, Tracestate: ts}
}
func (nameSampler) Description() string { return "fulcrum agent spans" }

// benchSpans installs (once) the global tracer provider the agents pick up.
var benchSpans = sync.OnceValue(func() *spanLog {
	l := &spanLog{}
	otel.SetTracerProvider(sdktrace.NewTracerProvider(sdktrace.WithSampler(nameSampler{}), sdktrace.WithSpanProcessor(l)))
	return l
})

// apply is one agent.apply with its children's durations.
type apply struct {
	start, end                time.Time
	validate, reload, runtime time.Duration
	reloadStart               time.Time
}

type applyList []apply

// applies returns node's applies, oldest first.
func (l *spanLog) applies(node string) applyList {
	l.mu.Lock()
	spans := slices.Clone(l.spans)
	l.mu.Unlock()
	byID := map[trace.SpanID]*apply{}
	var ids []trace.SpanID
	for _, s := range spans {
		if s.Name() != "agent.apply" || !hasAttr(s.Attributes(), "fulcrum.node", node) {
			continue
		}
		byID[s.SpanContext().SpanID()] = &apply{start: s.StartTime(), end: s.EndTime()}
		ids = append(ids, s.SpanContext().SpanID())
	}
	for _, s := range spans {
		a := byID[s.Parent().SpanID()]
		if a == nil {
			continue
		}
		d := s.EndTime().Sub(s.StartTime())
		switch s.Name() {
		case "agent.validate":
			a.validate += d
		case "haproxy.reload":
			a.reload += d
			a.reloadStart = s.StartTime()
		case "haproxy.runtime":
			a.runtime += d
		}
	}
	out := make(applyList, 0, len(ids))
	for _, id := range ids {
		out = append(out, *byID[id])
	}
	slices.SortFunc(out, func(a, b apply) int { return a.start.Compare(b.start) })
	return out
}

// between returns the applies that started in [from, to).
func (l applyList) between(from, to time.Time) applyList {
	var out applyList
	for _, a := range l {
		if !a.start.Before(from) && a.start.Before(to) {
			out = append(out, a)
		}
	}
	return out
}

func (l applyList) all(from time.Time) applyList { return l.between(from, time.Now().Add(time.Hour)) }

func hasAttr(kvs []attribute.KeyValue, key, value string) bool {
	for _, kv := range kvs {
		if string(kv.Key) == key && kv.Value.AsString() == value {
			return true
		}
	}
	return false
}

// --- statistics ---

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// percentile is the nearest-rank percentile (p99 of fewer than 100 samples is the maximum).
func percentile(v []float64, p float64) float64 {
	if len(v) == 0 {
		return math.NaN()
	}
	s := slices.Sorted(slices.Values(v))
	i := int(math.Ceil(p/100*float64(len(s)))) - 1
	return s[max(0, min(i, len(s)-1))]
}

func mean(v []float64) float64 {
	sum := 0.0
	for _, x := range v {
		sum += x
	}
	return sum / float64(len(v))
}

func summary(v []float64) string {
	if len(v) == 0 {
		return "(n=0)"
	}
	return fmt.Sprintf("min %.1f  p50 %.1f  p90 %.1f  p99 %.1f  max %.1f  mean %.1f  (n=%d)",
		slices.Min(v), percentile(v, 50), percentile(v, 90), percentile(v, 99), slices.Max(v), mean(v), len(v))
}
