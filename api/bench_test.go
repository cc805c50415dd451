package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/fulcrumlb/fulcrum/api/store"
)

// BenchmarkAPICreateLoadBalancer measures POST /v1/load-balancers through the
// whole API (HTTP, auth, validation, telemetry, one serialized Postgres write
// transaction with VIP allocation, revision and NOTIFY) on a fresh database,
// with no agent. sequential: one client, ns/op is the latency of a create;
// parallel: 8 clients, ns/op is the inverse of the throughput.
func BenchmarkAPICreateLoadBalancer(b *testing.B) {
	for _, clients := range []int{1, 8} {
		name := "sequential"
		if clients > 1 {
			name = fmt.Sprintf("parallel-%d", clients)
		}
		b.Run(name, func(b *testing.B) {
			// One tenant's quotas allow a million load balancers in a /12 of VIPs.
			bu := setup(b, withQuotas(store.Quotas{LoadBalancers: 1000000, Listeners: 10, Pools: 10, Members: 10, RoutingRules: 10, Certificates: 10}),
				withVIPRange("10.0.0.0/12"))
			url, token := bu.URL, bu.TokenA
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: clients}}
			var n atomic.Int64
			create := func() error {
				body, _ := json.Marshal(map[string]any{"name": fmt.Sprintf("lb-%d", n.Add(1))})
				req, _ := http.NewRequest(http.MethodPost, url+"/v1/load-balancers", bytes.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+token)
				req.Header.Set("Content-Type", "application/json")
				res, err := client.Do(req)
				if err != nil {
					return err
				}
				defer res.Body.Close()
				raw, _ := io.ReadAll(res.Body)
				if res.StatusCode != http.StatusCreated {
					return fmt.Errorf("status %d: %s", res.StatusCode, raw)
				}
				return nil
			}
			if clients == 1 {
				for b.Loop() {
					if err := create(); err != nil {
						b.Fatal(err)
					}
				}
			} else {
				// RunParallel starts parallelism × GOMAXPROCS goroutines.
				procs := runtime.GOMAXPROCS(0)
				b.SetParallelism((clients + procs - 1) / procs)
				b.ResetTimer()
				b.RunParallel(func(pb *testing.PB) {
					for pb.Next() {
						if err := create(); err != nil {
							b.Error(err)
							return
						}
					}
				})
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "creates/s")
		})
	}
}
