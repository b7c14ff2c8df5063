# Sluice: `make demo` runs the demo, `make test` runs every test (as root, privileged ones too).
GO         ?= go
# The BPF objects are committed; regenerating them must give the same bytes, so clang is pinned.
BPF_CLANG  ?= clang-14
BPF_CFLAGS ?= -O2 -g -Wall -Werror
BPF2GO_STRIP ?= llvm-strip-14
export BPF_CLANG BPF_CFLAGS BPF2GO_STRIP

BIN := bin/sluice

.PHONY: all build generate check-generate test test-unit test-ipvs lint demo deps deps-ipvs clean

all: build

build:
	$(GO) build -o $(BIN) ./cmd/sluice

deps:
	@scripts/install-deps run

# qemu and busybox for the IPVS VM test (test/vm).
deps-ipvs:
	@scripts/install-deps ipvs

# Regenerate loader/lb_bpfel.{go,o} from bpf/ with bpf2go (needs clang-14, libbpf-dev).
generate:
	@scripts/install-deps build
	cd loader && $(GO) generate ./...

# CI: the committed BPF objects must be what the sources compile to.
check-generate: generate
	@git diff --exit-code --stat -- loader/ || \
		{ echo "loader/: committed BPF objects are stale; run 'make generate' and commit" >&2; exit 1; }

# Every test: unit tests with the race detector, and, as root, the BPF, namespace and
# end-to-end tests (they skip with a reason when not root).
test: deps deps-ipvs
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

# The IPVS data plane on Debian's stock kernel under qemu, as `make test` runs it among the rest:
# this machine's kernel has no ip_vs. The kernel package is cached in .cache/vm.
test-ipvs: deps deps-ipvs
	$(GO) test -count=1 -timeout 15m -v -run TestIPVSInVM ./test/vm/

# Unit tests only (no root needed).
test-unit:
	$(GO) test -race -count=1 ./config/ ./director/ ./health/ ./sched/ ./test/packets/

lint:
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { gofmt -l $$(git ls-files '*.go'); exit 1; }
	$(GO) vet ./...
	$(GO) mod tidy -diff
	$(GO) tool staticcheck ./...
	@scripts/install-deps build
	clang-format-14 --dry-run --Werror bpf/*.c bpf/*.h

# DEMO_FLAGS: -quick (short phases, as CI runs it), -plain (no redrawing), -v (daemons' logs).
demo: deps build
	$(GO) run ./test/demo -sluice $(BIN) $(DEMO_FLAGS)

# A quick benchmark (as root, under two minutes): Sluice's XDP path against the XDP ceiling and
# nftables DNAT in network namespaces; the table goes to the terminal, the chart to bin/bench.svg.
# The full run, whose numbers BENCHMARKS.md reports: sudo bin/sluice bench --svg docs/bench.svg
.PHONY: bench
bench: deps build
	$(BIN) bench --quick --svg bin/bench.svg

# sluice bench --quick with the IPVS baseline and kernel pktgen, in the qemu VM of test/vm
# (Debian's kernel has both; this one has neither). Software emulation: only ratios count.
.PHONY: bench-vm
bench-vm: deps deps-ipvs
	SLUICE_VM_BENCH=1 $(GO) test -count=1 -timeout 40m -v -run TestBenchInVM ./test/vm/

clean:
	rm -rf bin
