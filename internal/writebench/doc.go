// Package writebench measures the API's creates per second against pgbench
// running the same SQL on the same Postgres (issue 10, item 4). It has only
// tests: TestWrites runs a bounded smoke form under `go test ./...`, and the
// full benchmark with FULCRUM_WRITES=1 (`make bench-writes`).
//
// What is created: members, one POST /v1/members each, into one pool per
// client (so clients do not collide on one pool's rows), all of one tenant
// and one node group. The statements of one such create's transaction are
// captured from the API's own store (store.Options.StatementLog), and
// written as a pgbench script: the same statements in the same order, with
// the arguments as literals except the revision (nextval, \gset), the
// member's id and its address, which vary per transaction.
//
// Each `writes:` line also gives api_process_cpu_us_per_create: the CPU time
// of the test process (the API and its HTTP clients; not Postgres, not
// pgbench) during the API phases, per create, a figure less moved by the
// machine's other load than the rates. FULCRUM_WRITES_PROFILE=<prefix>
// writes a CPU profile of each setting's last API phase to
// <prefix>-<setting>.pprof (go tool pprof <test binary> <file>).
package writebench
