# Fulcrum — run `make` for the list of targets.
.DEFAULT_GOAL := help
SHELL := /bin/bash
export PATH := /usr/local/go/bin:$(PATH):/usr/sbin:/sbin

GO      ?= go
BIN     := $(CURDIR)/bin
VERSION ?= $(shell git describe --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/fulcrumlb/fulcrum/internal/cli.Version=$(VERSION)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  \033[1m%-16s\033[0m %s\n", $$1, $$2}' $(MAKEFILE_LIST)

# The terraform CLI for acceptance tests and docs: the one on PATH, else one
# built from source into bin/ (HashiCorp's download servers are not reachable).
TERRAFORM_VERSION ?= 1.5.7
TERRAFORM ?= $(shell command -v terraform 2>/dev/null || echo $(BIN)/terraform)

.PHONY: build
build: ## Build bin/fulcrum and bin/terraform-provider-fulcrum.
	$(GO) build -ldflags '$(LDFLAGS)' -o $(BIN)/fulcrum ./cmd/fulcrum
	$(GO) build -ldflags '-X main.version=$(VERSION)' -o $(BIN)/terraform-provider-fulcrum ./cmd/terraform-provider-fulcrum

$(BIN)/terraform:
	@echo "no terraform on PATH: building terraform $(TERRAFORM_VERSION) into bin/ (a few minutes, cached afterwards)"
	GOBIN=$(BIN) $(GO) install github.com/hashicorp/terraform@v$(TERRAFORM_VERSION)

.PHONY: terraform
terraform: $(if $(filter $(BIN)/terraform,$(TERRAFORM)),$(BIN)/terraform) ## Make sure a terraform CLI is available.
	@TF_CLI_CONFIG_FILE=/dev/null $(TERRAFORM) version | head -1

# Jaeger v2, the dev stack's trace backend (in-memory, OTLP on 127.0.0.1:4317/4318,
# query API on :16686). Its module has a replace directive, so it is built from
# the wrapper module in tools/jaeger rather than with `go install …@version`.
# Several minutes and ~120 MB the first time, cached in bin/ afterwards; a
# failed build only warns: `make run` goes on without a trace backend.
.PHONY: jaeger
jaeger: ## Build Jaeger v2 into bin/ for make run (several minutes once, cached).
	@test -x $(BIN)/jaeger || { echo "building Jaeger v2 into bin/ (several minutes, cached afterwards)"; \
	  cd tools/jaeger && GOFLAGS=-mod=mod GONOSUMDB='github.com/jaegertracing/*,go.opentelemetry.io/collector*' \
	  $(GO) build -o $(BIN)/jaeger github.com/jaegertracing/jaeger/cmd/jaeger; } \
	  || echo "warning: Jaeger could not be built; make run goes on without a trace backend (or set OTEL_EXPORTER_OTLP_ENDPOINT)" >&2

.PHONY: run
run: build ## Start the whole stack locally (installs Debian packages when root) and print how to use it.
	@bash deploy/install-deps.sh postgresql haproxy jq
	@# With OTEL_EXPORTER_OTLP_ENDPOINT set everything exports there and no Jaeger starts.
	@if [ -z "$$OTEL_EXPORTER_OTLP_ENDPOINT" ]; then $(MAKE) --no-print-directory jaeger; fi
	$(BIN)/fulcrum dev

.PHONY: generate
generate: terraform ## Regenerate code from openapi/openapi.yaml and the provider docs in docs/.
	$(GO) generate ./...
	@mkdir -p $(BIN) && tools/gen-docs.sh $(TERRAFORM) > $(BIN)/gen-docs.log 2>&1 || { cat $(BIN)/gen-docs.log >&2; exit 1; }

.PHONY: check-generated
check-generated: generate ## Fail when generated files differ from what is committed.
	@git diff --exit-code --stat -- openapi/ docs/ || { echo "generated files are stale: run 'make generate' and commit" >&2; exit 1; }
	@test -z "$$(git status --porcelain -- docs/)" || { echo "docs/ has files not committed: run 'make generate' and commit" >&2; git status --porcelain -- docs/ >&2; exit 1; }

.PHONY: lint
lint: ## go vet, a gofmt check and the OpenAPI lint (Redocly CLI, installed into tools/node_modules).
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	if [ -n "$$out" ]; then echo "gofmt would change:" >&2; echo "$$out" >&2; exit 1; fi
	tools/lint-openapi.sh

.PHONY: test
test: lint check-generated terraform ## Run every test (provider acceptance tests included) against real Postgres, HAProxy and terraform.
	TF_ACC=1 TF_ACC_TERRAFORM_PATH=$(TERRAFORM) TF_CLI_CONFIG_FILE=/dev/null $(GO) test -race -count=1 -timeout 30m ./...

.PHONY: chaos
chaos: ## Run the long forms of the failure-containment tests (restarts, kills, crashes under load; figures in RELIABILITY.md).
	FULCRUM_CHAOS=1 $(GO) test -race -count=1 -timeout 30m -v -run 'Lifecycle|Chaos' ./acceptance/

.PHONY: testacc
testacc: terraform ## Run only the Terraform provider acceptance tests.
	TF_ACC=1 TF_ACC_TERRAFORM_PATH=$(TERRAFORM) TF_CLI_CONFIG_FILE=/dev/null $(GO) test -count=1 -timeout 30m ./provider/...

.PHONY: bench
bench: ## Run the benchmarks and print figures (about a minute; results in BENCHMARKS.md).
	@# One package at a time: the API, Postgres, HAProxy and the load share the machine's cores.
	@# A fixed 1000 creates: the cost of one grows with the load balancers already in the group.
	$(GO) test -run '^$$' -bench . -benchtime 1000x -count 1 ./api
	@# Each iteration takes its samples (30 load balancers, 100 member changes) and reports percentiles.
	$(GO) test -run '^$$' -bench . -benchtime 1x -count 1 -timeout 10m ./acceptance
	@# Any other package with benchmarks.
	@pkgs=$$(grep -rl --include='*_test.go' '^func Benchmark' . | xargs -r -n1 dirname | sort -u | grep -v -x -e ./api -e ./acceptance); \
	if [ -n "$$pkgs" ]; then set -x; $(GO) test -run '^$$' -bench . -benchtime 3s -count 1 -p 1 $$pkgs; fi

.PHONY: test-ha
test-ha: ## HA failover tests in network namespaces (root): 5 kills of each kind, prints failover:/drain: lines.
	@# Three nodes (agent, HAProxy, keepalived) in namespaces on a private bridge; see acceptance/ha_*_test.go.
	set -o pipefail; FULCRUM_HA_RUNS=5 $(GO) test -race -count=1 -timeout 20m -v -run 'TestHA' ./acceptance/ | grep -E '^(=== RUN|--- |\s+---|PASS|FAIL|ok|failover|drain|stop|new_lb|api_replicas|ratelimit_peers)|ha_.*_test.go'

.PHONY: bench-ha
bench-ha: ## HA failover figures (root): 10 kills of each kind and 10 drains; figures for BENCHMARKS.md.
	set -o pipefail; FULCRUM_HA_RUNS=10 $(GO) test -count=1 -timeout 30m -v -run 'TestHA' ./acceptance/ | grep -E '^(--- |\s+---|FAIL|ok|failover|drain|stop|new_lb|api_replicas|ratelimit_peers)|ha_.*_test.go'

.PHONY: bench-fleet
bench-fleet: ## Fleet benchmark (issue 10): 1000 simulated nodes on one API, 1000 LBs; prints a `fleet:` line last (a few minutes).
	@# Sized by FULCRUM_FLEET_NODES, _LBS, _WRITES, _HEARTBEAT, _IDLE, _PHASE_TIMEOUT, _WRITE_TIMEOUT (see internal/fleetsim).
	@mkdir -p $(BIN)
	FULCRUM_FLEET=1 FULCRUM_FLEET_NODES=$${FULCRUM_FLEET_NODES:-1000} FULCRUM_FLEET_LBS=$${FULCRUM_FLEET_LBS:-1000} \
	  $(GO) test -count=1 -timeout 30m -v -run '^TestFleet$$' ./internal/fleetsim/ 2>&1 | tee $(BIN)/bench-fleet.log; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1
	@grep -ah '^fleet: ' $(BIN)/bench-fleet.log | tail -1

.PHONY: bench-writes
bench-writes: ## Writes benchmark (issue 10): API creates/s (members) vs pgbench running the same SQL, 1 and 8 clients; prints `writes:` lines.
	@# FULCRUM_WRITES_DURATION sets each phase's length (default 5s; 3 rounds of API then pgbench per client count); FULCRUM_WRITES_PROFILE=<prefix> writes CPU profiles of the API phases; see internal/writebench.
	@mkdir -p $(BIN)
	FULCRUM_WRITES=1 $(GO) test -count=1 -timeout 10m -v -run '^TestWrites$$' ./internal/writebench/ 2>&1 | tee $(BIN)/bench-writes.log; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1
	@grep -ah '^writes: ' $(BIN)/bench-writes.log

.PHONY: bench-scale
bench-scale: ## Scale benchmark (issue 10): one real node grown to 1000 LBs / 10,000 members; prints a `scale:` line last.
	@# Sized by FULCRUM_SCALE_LBS, FULCRUM_SCALE_MEMBERS (per LB), FULCRUM_SCALE_SAMPLES, FULCRUM_SCALE_SMALL_SAMPLES, FULCRUM_SCALE_CREATE_SAMPLES (creates at full size; default a quarter of the samples); FULCRUM_SCALE_PHASES=member (comma list of small,idle,member,create) runs only those phases (after the growth, which small alone skips); FULCRUM_SCALE_ONLY=idle (with FULCRUM_SCALE_IDLE_WINDOWS, FULCRUM_SCALE_IDLE_SECONDS) measures only idle CPU; FULCRUM_SCALE_PROFILE=<prefix> writes CPU profiles; FULCRUM_SCALE_STEPS=1 prints each member change's steps (spans; see internal/nodescale).
	@mkdir -p $(BIN)
	FULCRUM_SCALE=1 $(GO) test -count=1 -timeout 40m -v -run '^TestScale$$' ./internal/nodescale/ 2>&1 | tee $(BIN)/bench-scale.log; \
	  test $${PIPESTATUS[0]} -eq 0 || exit 1
	@grep -ah '^scale: ' $(BIN)/bench-scale.log | tail -1

.PHONY: clean
clean: ## Remove build output (keeps .fulcrum/ state).
	rm -rf $(BIN)
