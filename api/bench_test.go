package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync/atomic"
	"testing"

	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/fulcrumlb/fulcrum/api"
	"github.com/fulcrumlb/fulcrum/api/store"
	"github.com/fulcrumlb/fulcrum/internal/pgtest"
	"github.com/fulcrumlb/fulcrum/internal/secretbox"
	"github.com/fulcrumlb/fulcrum/internal/telemetry"
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
			url, token := benchAPI(b)
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

// benchAPI is setup for benchmarks (setup takes *testing.T): the API as in
// setup, on a fresh database, with one tenant whose quotas allow a million
// load balancers in a /12 of VIPs. It returns the API's URL and the tenant's
// token.
func benchAPI(tb testing.TB) (url, token string) {
	tb.Helper()
	ctx := context.Background()
	st, err := store.Open(ctx, pgtest.NewDatabase(tb))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(st.Close)
	if _, err := store.Migrate(ctx, st.Pool); err != nil {
		tb.Fatal(err)
	}
	key, _ := secretbox.GenerateKey()
	raw, _ := secretbox.LoadKey(key)
	box, err := secretbox.New(raw)
	if err != nil {
		tb.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	tel, err := telemetry.Setup(ctx, "fulcrum-api-bench", "test", telemetry.WithSpanExporter(tracetest.NewNoopExporter()), telemetry.WithoutGlobals())
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = tel.Shutdown(context.Background()) })
	srv, err := api.New(api.Config{}, st, box, log, tel)
	if err != nil {
		tb.Fatal(err)
	}
	srv.Start(tb.Context())
	hs := httptest.NewServer(srv.Handler())
	tb.Cleanup(hs.Close)
	quotas := store.Quotas{LoadBalancers: 1000000, Listeners: 10, Pools: 10, Members: 10, RoutingRules: 10, Certificates: 10}
	err = st.Write(ctx, false, func(tx *store.Tx) error {
		tn, err := api.CreateTenantTx(ctx, tx, &store.Tenant{Name: "bench", Quotas: quotas})
		if err != nil {
			return err
		}
		if _, err := api.CreateNodeGroupTx(ctx, tx, "default", "", nil, "10.0.0.0/12"); err != nil {
			return err
		}
		_, token, err = api.IssueToken(ctx, tx, store.TokenTenant, tn.ID, "", "bench", "", nil)
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	return hs.URL, token
}
