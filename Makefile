# tcpconnect: build, run and test. Every target installs what it needs (as root).
SHELL := /bin/bash
GO ?= go
BUILD := _build
COLLECTOR := $(BUILD)/otelcol-tcpconnect
OCB_VERSION := v0.165.0
GOBIN := $(shell $(GO) env GOPATH)/bin
OCB := $(GOBIN)/builder
CONFIG ?= config/default.yaml
# Debian packages: clang/llvm/libbpf for `make generate`, qemu/busybox/cpio/xz
# for the VM tests, and TEST_PACKAGES for the native tests: gcc and libc6-dev
# for `go test -race` (cgo); curl, wget, busybox-static, iproute2 (ip netns)
# and libc-bin (getent) as real clients, whose absence fails a test under
# TCPCONNECT_REQUIRE_PRIVILEGED=1.
TEST_PACKAGES := gcc libc6-dev curl wget busybox-static iproute2 libc-bin
# podman and runc build the image without a Docker daemon and run the
# container tests (crun refuses this kind of host's hybrid cgroup layout).
CONTAINER_PACKAGES := podman runc
APT_PACKAGES := clang-19 llvm-19 libbpf-dev bpftool qemu-system-x86 cpio xz-utils $(TEST_PACKAGES) $(CONTAINER_PACKAGES)
# Every file `go generate` writes: bpf2go's objects and bindings, mdatagen's
# code, generated tests and documentation (git pathspecs).
GENERATED := 'bpf/*_bpfel.*' 'bpf/*_bpfeb.*' receiver/documentation.md 'receiver/generated_*' receiver/internal
# Every package but e2e (make e2e, after the build) and the VM-only guest
# check (make vmtest runs it inside the guest).
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e /e2e -e /internal/vmtest/guestcheck)

# VM tests: Debian kernels pinned in internal/vmtest/kernels.go, every attach mode.
VM_KERNELS ?= all
VM_MODES ?= lsm,fentry,kprobe,cgroup,auto
VM_TIMEOUT ?= 20m
# The tests that need a kernel, by name (they need no testdata); each must
# print PASS in every run, so a name that selects nothing fails.
VM_TESTS ?= \
	-tests bpf.test=TestProbeConnects,TestProbeProof,TestProbeCgroupSubtreeUnproven,TestReadLSMState,TestProbeLSMExpectation,TestProbeDNSCapture,TestProbeDNSSocketNetns,TestLostCounters,TestProbeFilters,TestProbeProcessFilterMatchesProcess,TestProbeIOURingConnect,TestProbeNetnsVeth,TestProbeConnectSocketNetns,TestProbeKprobeLoads,TestProbeModesAgree \
	-tests receiver.test=TestReceiverPrivileged,TestOpenNamesMissingCapability,TestReceiverPrivilegedHostileStrings,TestDNSPrivileged,TestDNSPrivilegedNetnsScope \
	-tests e2e.test=TestPipelineOverOTLP
# A second boot of each kernel leaves bpf out of the active LSM list, as
# Debian 11 and Ubuntu ship: auto must pick fentry there, explicit lsm fail.
VM_NOLSM_CMDLINE ?= lsm=lockdown,capability,yama,apparmor
# Tests that need every mode at once or a VM boot's LSM setting.
VM_ONLY_TESTS := TestProbeModesAgree|TestProbeLSMExpectation

.PHONY: all deps deps-test image container-test gateway deploy-test ocb vmtest vmtest-fetch generate check-generate build run test unit lint e2e vmtest fuzz fuzz-long bench bench-go bench-vm clean

all: build

# apt_install installs those of the Debian packages $(1) that are missing
# (needs root and apt).
apt_install = @missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" != 0 ]; then echo "missing packages: $$missing (run make deps as root)"; exit 1; fi; \
		echo "installing: $$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi

# deps installs every Debian package the targets need; deps-test those of the
# native tests (make unit, make e2e).
deps:
	$(call apt_install,$(APT_PACKAGES))

deps-test:
	$(call apt_install,$(TEST_PACKAGES))

# generate rebuilds the committed bpf2go objects and mdatagen output.
generate: deps
	$(GO) generate ./...

# check-generate fails when a fresh `go generate` changes a committed
# generated file (GENERATED), leaves one there that is not committed, or
# changes or adds any other file (on a clean tree, as in CI: every change).
check-generate: deps
	@before=$$(git status --porcelain --untracked-files=all); \
	$(GO) generate ./... || exit 1; \
	stale=$$(git status --porcelain --untracked-files=all -- $(GENERATED)); \
	other=$$(comm -13 <(sort <<<"$$before") <(git status --porcelain --untracked-files=all | sort)); \
	if [ -n "$$stale$$other" ]; then \
		printf '%s\n' "$$stale" "$$other" | sort -u | sed '/^$$/d'; \
		echo "generated files differ from a fresh make generate, or are not committed: run make generate and commit"; exit 1; \
	fi

# ocb installs the OpenTelemetry Collector Builder at OCB_VERSION if missing.
ocb:
	@$(OCB) version 2>/dev/null | grep -q ' $(OCB_VERSION)$$' || \
		{ echo "installing ocb $(OCB_VERSION)"; $(GO) install go.opentelemetry.io/collector/cmd/builder@$(OCB_VERSION); }

# build makes the static collector distribution with ocb into
# _build/otelcol-tcpconnect (run from the repository root: ocb resolves
# output_path and the receiver's replace from here).
build: ocb
	CGO_ENABLED=0 $(OCB) --config builder-config.yaml

# The node agent image (deploy/image/Containerfile): the static collector on
# scratch, tagged IMAGE, and saved as an OCI archive IMAGE_ARCHIVE that any
# registry client loads (podman load, skopeo copy oci-archive:...).
DIST_VERSION := $(shell sed -n 's/^  version: //p' builder-config.yaml)
IMAGE ?= localhost/otelcol-tcpconnect:$(DIST_VERSION)
IMAGE_ARCHIVE := $(BUILD)/otelcol-tcpconnect-image.tar
# Debian's podman here needs runc and explicit rlimits (ENVIRONMENT.md).
PODMAN := podman --runtime runc

# image builds the collector and its OCI image with podman (no daemon).
image: build
	$(call apt_install,$(CONTAINER_PACKAGES))
	rm -rf $(BUILD)/image && mkdir -p $(BUILD)/image/tmp && chmod 1777 $(BUILD)/image/tmp
	cp $(COLLECTOR) deploy/image/config.yaml $(BUILD)/image/
	$(PODMAN) build --quiet -f deploy/image/Containerfile -t $(IMAGE) \
		--label org.opencontainers.image.version=$(DIST_VERSION) \
		--label org.opencontainers.image.revision=$$(git rev-parse HEAD) \
		--label org.opencontainers.image.created=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
		$(BUILD)/image
	rm -f $(IMAGE_ARCHIVE) && $(PODMAN) save --format oci-archive -o $(IMAGE_ARCHIVE) $(IMAGE)

# The gateway distribution (deploy/gateway/builder-config.yaml) is built by
# ocb at its own collector version, installed beside the build.
GATEWAY_OCB_VERSION := v0.160.0
GATEWAY_OCB := $(BUILD)/ocb-$(GATEWAY_OCB_VERSION)/builder
GATEWAY := $(BUILD)/gateway/otelcol-tcpconnect-gateway

# gateway builds the gateway distribution into _build/gateway.
gateway:
	@$(GATEWAY_OCB) version 2>&1 | grep -q ' $(GATEWAY_OCB_VERSION)$$' || \
		{ echo "installing ocb $(GATEWAY_OCB_VERSION)"; GOBIN=$(CURDIR)/$(dir $(GATEWAY_OCB)) $(GO) install go.opentelemetry.io/collector/cmd/builder@$(GATEWAY_OCB_VERSION); }
	CGO_ENABLED=0 $(GATEWAY_OCB) --config deploy/gateway/builder-config.yaml

# deploy-test checks deploy/kubernetes (its own Go module): every manifest
# decoded strictly into k8s.io/api types, the deployment rules, and
# `validate` of both distributions on every embedded collector config.
deploy-test: build gateway
	cd deploy/kubernetes && $(GO) vet ./... && \
		TCPCONNECT_COLLECTOR=$(CURDIR)/$(COLLECTOR) TCPCONNECT_GATEWAY=$(CURDIR)/$(GATEWAY) $(GO) test -count=1 -v ./...

# run builds the collector and runs it as root with the default config.
run: build
	@if [ "$$(id -u)" != 0 ]; then echo "tcpconnect loads eBPF programs: run as root (sudo make run)"; exit 1; fi
	$(COLLECTOR) --config $(CONFIG)

# lint also refuses a test that skips by itself: privtest.SkipOrFail is the
# one way, as it fails under TCPCONNECT_REQUIRE_PRIVILEGED=1. A skip that is
# right there too says why on its line (// skip-ok: why). The guest check
# runs only inside the VM guest, where it must not skip.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	@bad=$$(git grep -n -E '\.Skip(f|Now)?\(' -- '*_test.go' ':!internal/vmtest/guestcheck' | grep -v 'skip-ok:'); \
	if [ -n "$$bad" ]; then echo "tests that skip without privtest.SkipOrFail (or a // skip-ok: reason):"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	cd deploy/kubernetes && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# unit runs every Go test of the module with the race detector (it needs cgo;
# the VM's test binaries stay static, CGO_ENABLED=0, without it); as root it
# includes the privileged (native, cgroup mode) tests.
# TCPCONNECT_REQUIRE_PRIVILEGED=1 makes a skip fail.
# TestProbeModesAgree needs every attach mode at once: it runs in the VM only.
unit: deps-test
	CGO_ENABLED=1 $(GO) test -race -count=1 -skip '$(VM_ONLY_TESTS)' $(UNIT_PKGS)

e2e: deps-test build
	TCPCONNECT_COLLECTOR=$(CURDIR)/$(COLLECTOR) CGO_ENABLED=1 $(GO) test -race -count=1 -v -skip '^TestContainer' ./e2e/

# container-test runs the image with podman as the Kubernetes DaemonSet does
# (e2e/container_test.go): another container's connect and its container.id,
# a host connect, the agent's own export left out, no host PID, shutdown
# with the next hop down.
container-test: deps-test image
	TCPCONNECT_COLLECTOR=$(CURDIR)/$(COLLECTOR) TCPCONNECT_IMAGE=$(IMAGE) $(GO) test -count=1 -v -run '^TestContainer' ./e2e/

vmtest-fetch:
	$(GO) run ./cmd/vmtest -kernels $(VM_KERNELS) -fetch-only

# vmtest boots each pinned kernel once under qemu (TCG) and runs the privileged
# tests in every attach mode, plus the guest sanity check.
vmtest: deps build
	mkdir -p $(BUILD)/vm
	CGO_ENABLED=0 $(GO) test -c -o $(BUILD)/vm/guestcheck.test ./internal/vmtest/guestcheck
	CGO_ENABLED=0 $(GO) test -c -o $(BUILD)/vm/bpf.test ./bpf
	CGO_ENABLED=0 $(GO) test -c -o $(BUILD)/vm/receiver.test ./receiver
	CGO_ENABLED=0 $(GO) test -c -o $(BUILD)/vm/e2e.test ./e2e
	$(call vmrun,-mode-matrix $(VM_MODES) -env TCPCONNECT_EXPECT_LSM=active -env TCPCONNECT_EXPECT_AUTO=lsm)
	$(call vmrun,-mode-matrix auto -cmdline $(VM_NOLSM_CMDLINE) -env TCPCONNECT_EXPECT_LSM=inactive -env TCPCONNECT_EXPECT_AUTO=fentry)

# vmrun boots each kernel once with the test binaries; $(1) adds flags.
vmrun = $(GO) run ./cmd/vmtest -kernels $(VM_KERNELS) -timeout $(VM_TIMEOUT) -module veth \
		-env TCPCONNECT_REQUIRE_PRIVILEGED=1 \
		-file $(BUILD)/vm/guestcheck.test:/tests/guestcheck.test \
		-file $(COLLECTOR):/bin/otelcol-tcpconnect -env TCPCONNECT_COLLECTOR=/bin/otelcol-tcpconnect \
		-run 'guestcheck=/tests/guestcheck.test -test.v' \
		-test-args '-test.v -test.timeout=5m' $(VM_TESTS) $(1) \
		-test $(BUILD)/vm/bpf.test -test $(BUILD)/vm/receiver.test -test $(BUILD)/vm/e2e.test

# fuzz is the brief run of the DNS fuzz targets that `make test` (CI) does;
# fuzz-long the scheduled one (FUZZ_LONG each, 5 minutes by default).
FUZZ_TARGETS := FuzzParse FuzzParseReference
FUZZ_LONG ?= 5m

fuzz:
	$(foreach f,$(FUZZ_TARGETS),$(GO) test -run '^$$' -fuzz '^$(f)$$' -fuzztime 10s ./dns/ &&) true

fuzz-long:
	$(foreach f,$(FUZZ_TARGETS),$(GO) test -run '^$$' -fuzz '^$(f)$$' -fuzztime $(FUZZ_LONG) ./dns/ &&) true

# bench is the native A/B connect storm (BENCHMARKS.md; about 12 minutes, root);
# bench-vm the same in lsm mode under qemu; bench-go the hot-path Go benchmarks.
bench: build
	bench/run.sh --pairs 5 --threads 2 --seconds 5

bench-vm: build
	bench/vm.sh --pairs 7 --seconds 5

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/event ./dns ./receiver/

test: deps lint check-generate unit fuzz e2e container-test deploy-test vmtest

clean:
	rm -rf $(BUILD)
