# tcpconnect: build, run and test. Every target installs what it needs (as root).
SHELL := /bin/bash
GO ?= go
BUILD := _build
COLLECTOR := $(BUILD)/otelcol-tcpconnect
OCB_VERSION := v0.165.0
GOBIN := $(shell $(GO) env GOPATH)/bin
OCB := $(GOBIN)/builder
CONFIG ?= config/default.yaml
# Debian packages: clang/llvm/libbpf for `make generate` (and arm64's uapi asm
# headers for the arm64 objects), qemu (amd64 and arm64 guests)/cpio/xz for
# the VM tests, and TEST_PACKAGES for the native tests: gcc and libc6-dev
# for `go test -race` (cgo); curl, wget, busybox-static, iproute2 (ip netns),
# libc-bin (getent) and openssl (s_client) as real clients and dnsmasq-base
# as a local DNS stub,
# whose absence fails a test under
# TCPCONNECT_REQUIRE_PRIVILEGED=1.
TEST_PACKAGES := gcc libc6-dev curl wget busybox-static iproute2 libc-bin dnsmasq-base openssl
# podman and runc build the image without a Docker daemon and run the
# container tests (crun refuses this kind of host's hybrid cgroup layout);
# libcap2-bin's setcap gives the image's binary its file capabilities.
CONTAINER_PACKAGES := podman runc libcap2-bin
APT_PACKAGES := clang-19 llvm-19 libbpf-dev bpftool linux-libc-dev-arm64-cross qemu-system-x86 qemu-system-arm cpio xz-utils $(TEST_PACKAGES) $(CONTAINER_PACKAGES)
# Every file `go generate` writes: bpf2go's objects and bindings, mdatagen's
# code, generated tests and documentation (git pathspecs).
GENERATED := 'bpf/*_bpfel.*' 'bpf/*_bpfeb.*' tcpconnectreceiver/documentation.md 'tcpconnectreceiver/generated_*' tcpconnectreceiver/internal
# The linux/arm64 distribution, built from ocb's generated sources.
ARM64_COLLECTOR := $(BUILD)/linux-arm64/otelcol-tcpconnect
# Every package but e2e (make e2e, after the build) and the VM-only guest
# check (make vmtest runs it inside the guest).
UNIT_PKGS = $(shell $(GO) list ./... | grep -v -e /e2e -e /internal/vmtest/guestcheck)

# VM tests: Debian kernels pinned in internal/vmtest/kernels.go. VM_KERNELS
# (comma-separated names, or all) narrows every boot below to those kernels.
VM_KERNELS ?= all
VM_MODES ?= lsm,fentry,kprobe,cgroup,auto
VM_TIMEOUT ?= 20m
# The boots, by kernel group: amd64 kernels with bpf in their default LSM
# list; amd64 kernels without it (Debian 11's 5.10); arm64 under TCG, where
# 6.1 cannot attach BPF trampolines (lsm and fentry: "not supported"), so
# auto must pick kprobe there.
VM_AMD64_BPFLSM := 6.1 6.12
VM_AMD64_NOBPFLSM := 5.10
VM_ARM64 := 6.12-arm64
VM_ARM64_NOTRAMPOLINE := 6.1-arm64
# The tests that need a kernel, by name (they need no testdata); each must
# print PASS in every run, so a name that selects nothing fails. The tests
# whose subject does not depend on the attach mode (DNS capture is
# cgroup_skb in every mode; the LSM list, the kprobe load check and the
# all-modes comparison attach what they need themselves) run once per boot,
# in auto, as bpf-once and tcpconnectreceiver-once (the same binaries under
# a second name); the rest run in every mode of the boot.
# The connect stress test (TestConnectStress, its default count) runs
# once per boot: auto is lsm on the boots with bpf in the LSM list, fentry
# on those without (make vmtest-stress: the full count in both).
VM_BPF_MODE_TESTS := TestProbeConnects,TestProbeProof,TestCheckFeatures,TestProbeFilters,TestProbeProcessFilterMatchesProcess,TestProbeIOURingConnect,TestProbeNetnsVeth,TestProbeConnectSocketNetns,TestProbeOutcome,TestOutcomeLossAccounted,TestProbeOutcomeOff,TestAggregateExact,TestAggregateOutcomes,TestProbeOutcomeReconnect,TestLossAccounted,TestProbeFirstBytes,TestProbeFirstBytesSplit,TestOutcomeEntriesLeave,TestFirstBytesReconnect
VM_BPF_ONCE_TESTS := TestReadLSMState,TestProbeLSMExpectation,TestProbeKprobeLoads,TestProbeModesAgree,TestProbeCgroupSubtreeUnproven,TestProbeDNSCapture,TestProbeDNSSocketNetns,TestCounters,TestProbeDNSMarkedSocket,TestAggregateLateOutcome,TestAggregateFullWindow,TestAggregateDrain,TestAggregateOutcomesSkipped,TestNoLossWhenRead,TestConnectStress
VM_RECEIVER_MODE_TESTS := TestReceiverPrivileged,TestOpenNamesMissingCapability,TestReceiverPrivilegedHostileStrings
VM_RECEIVER_ONCE_TESTS := TestDNSPrivileged,TestDNSPrivilegedNetnsScope,TestDNSPrivilegedRestart,TestDNSPrivilegedTCPSegments,TestDNSPrivilegedIPv6ExtHeaders,TestDNSPrivilegedDockerNAT,TestDNSPrivilegedServiceIP,TestAggregationPrivileged,TestAggregationPrivilegedNames,TestFirstBytesPrivileged,TestFirstBytesPrivilegedServerFirst,TestFirstBytesSplitClientHello
VM_E2E_TESTS := TestPipelineOverOTLP,TestAggregationCountsAddUp
VM_TESTS ?= \
	-tests bpf.test=$(VM_BPF_MODE_TESTS) -tests bpf-once=$(VM_BPF_ONCE_TESTS) \
	-tests tcpconnectreceiver.test=$(VM_RECEIVER_MODE_TESTS) -tests tcpconnectreceiver-once=$(VM_RECEIVER_ONCE_TESTS) \
	-tests e2e.test=$(VM_E2E_TESTS)
# The privileged tests that run natively only: the cgroup root's discovery
# depends on the host's mounts, not the kernel; TestNative* need glibc's
# resolver, ip netns or dnsmasq, which the initramfs lacks; the container
# tests need podman (make container-test); the fleet runs four collectors
# (make e2e); the store test needs VictoriaLogs, curl and glibc (make
# store-test).
# vmtest-list checks that every test of VM_TEST_PKGS that calls
# privtest.Require (cmd/vmtest -privileged) is in a VM list above or here.
VM_NATIVE_ONLY_TESTS := TestFindCgroupRoot TestNativeDNSDockerNATGlibc TestNativeDNSLocalStub TestNativeGlibcResolver \
	TestContainerDaemonSet TestContainerNoHostPID TestContainerShutdownNextHopDown TestContainerStartRefused TestFleetAgentsToGateway \
	TestStoreVictoriaLogs TestNativeFirstBytesForeignClients
VM_TEST_PKGS := bpf tcpconnectreceiver e2e
# arm64 (TCG, about as fast as amd64 here: TESTING.md): the kernel
# tests in every mode but fentry (on arm64 the same BPF trampoline as lsm,
# which is tested), the receiver (DNS included) and the e2e pipeline in auto.
# Without trampolines (6.1) lsm and fentry cannot attach: kprobe, cgroup and
# auto, without the two tests that need every mode to attach.
VM_ARM64_MODES ?= lsm,kprobe,cgroup,auto
VM_ARM64_TESTS ?= $(VM_TESTS) -modes tcpconnectreceiver.test=auto -modes e2e.test=auto
VM_ARM64_NOTRAMPOLINE_MODES ?= kprobe,cgroup,auto
VM_ARM64_NOTRAMPOLINE_TESTS ?= $(subst TestProbeModesAgree,,$(subst TestProbeLSMExpectation,,$(VM_ARM64_TESTS)))
# A second boot of each kernel leaves bpf out of the active LSM list, as
# Debian 11 and Ubuntu ship: auto must pick fentry there, explicit lsm fail.
VM_NOLSM_CMDLINE ?= lsm=lockdown,capability,yama,apparmor
# Debian 11's 5.10 ships without bpf in its list; this boot adds it.
VM_510_LSM_CMDLINE ?= lsm=lockdown,capability,yama,apparmor,tomoyo,bpf
VM_EXPECT_ACTIVE := -env TCPCONNECT_EXPECT_LSM=active -env TCPCONNECT_EXPECT_AUTO=lsm
VM_EXPECT_INACTIVE := -env TCPCONNECT_EXPECT_LSM=inactive -env TCPCONNECT_EXPECT_AUTO=fentry
# Tests that need every mode at once or a VM boot's LSM setting.
VM_ONLY_TESTS := TestProbeModesAgree|TestProbeLSMExpectation
# The receiver and e2e tests (the whole pipeline) run in lsm, cgroup and
# auto on the all-mode boots: fentry and kprobe hook the same function as
# lsm, and the bpf tests run in every mode. Keeps .ci/run near 45 minutes.
VM_PIPELINE_MODES := -modes tcpconnectreceiver.test=lsm,cgroup,auto -modes e2e.test=lsm,cgroup,auto
# vmtest-quick: one kernel, one mode, for the edit-test loop.
VM_QUICK_KERNEL ?= 6.12
VM_QUICK_MODE ?= lsm

.PHONY: k8s-test victorialogs store-test deb deb-test seccomp-configmap all deps deps-test image container-test gateway deploy-test ocb vmtest $(VM_BOOTS) vmtest-fetch vmtest-quick vmtest-stress vmtest-list vm-binaries vm-binaries-arm64 generate check-generate build build-arm64 run test unit lint e2e fuzz fuzz-long bench bench-go bench-vm bench-ab bench-fbcost clean

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
# scratch, one image per arch tagged IMAGE-<arch>, the host's also IMAGE, and
# their manifest list saved as an OCI archive IMAGE_ARCHIVE that registry
# clients read (skopeo copy --all oci-archive:...; podman load takes the
# host's platform).
DIST_VERSION := $(shell sed -n 's/^  version: //p' builder-config.yaml)
IMAGE ?= localhost/otelcol-tcpconnect:$(DIST_VERSION)
IMAGE_ARCHIVE := $(BUILD)/otelcol-tcpconnect-image.tar
IMAGE_ARCHES := amd64 arm64
# The manifest list of IMAGE_ARCHES' images, while make image saves it.
IMAGE_LIST = $(IMAGE)-list
# The file capabilities of the image's binary, permitted only (+p): a
# non-root user gets those of them the runtime's bounding set holds
# (capabilities.add), and the receiver makes them effective. Everything the
# README's capability table names, the optional and old-kernel ones too:
# none is granted unless the runtime adds it.
IMAGE_FILE_CAPS := cap_bpf,cap_perfmon,cap_net_admin,cap_sys_ptrace,cap_sys_admin,cap_sys_resource+p
# Debian's podman here needs runc and explicit rlimits (ENVIRONMENT.md).
PODMAN := podman --runtime runc

# image builds the collector for every arch of IMAGE_ARCHES (arm64 from
# build-arm64's static binary: scratch and COPY need no emulation) into
# $(IMAGE)-<arch> with podman (no daemon), tags the host's as $(IMAGE),
# combines them into a manifest list and saves the list as an OCI archive.
# The list lives in podman's storage only for that: while one is there,
# podman 4.3's `podman images` fails. setcap needs root; podman's COPY keeps
# the security.capability xattr, and so does the layer.
image: build build-arm64
	$(call apt_install,$(CONTAINER_PACKAGES))
	! $(PODMAN) manifest exists $(IMAGE_LIST) || $(PODMAN) manifest rm $(IMAGE_LIST)
	for arch in $(IMAGE_ARCHES); do \
		ctx=$(BUILD)/image/$$arch && rm -rf $$ctx && mkdir -p $$ctx/tmp && chmod 1777 $$ctx/tmp && \
		cp deploy/image/config.yaml $$ctx/ && \
		CGO_ENABLED=0 GOOS=linux GOARCH=$$arch $(GO) build -trimpath -ldflags='-s -w' -o $$ctx/install-profile ./cmd/install-profile && \
		if [ $$arch = arm64 ]; then cp $(ARM64_COLLECTOR) $$ctx/; else cp $(COLLECTOR) $$ctx/; fi && \
		setcap $(IMAGE_FILE_CAPS) $$ctx/otelcol-tcpconnect && \
		$(PODMAN) build --quiet --platform linux/$$arch -f deploy/image/Containerfile -t $(IMAGE)-$$arch \
			--label org.opencontainers.image.version=$(DIST_VERSION) \
			--label org.opencontainers.image.revision=$$(git rev-parse HEAD) \
			--label org.opencontainers.image.created=$$(date -u +%Y-%m-%dT%H:%M:%SZ) \
			$$ctx || exit 1; \
	done
	$(PODMAN) tag $(IMAGE)-$$($(GO) env GOARCH) $(IMAGE)
	rm -f $(IMAGE_ARCHIVE); \
	( set -e; $(PODMAN) manifest create $(IMAGE_LIST); \
		for arch in $(IMAGE_ARCHES); do $(PODMAN) manifest add $(IMAGE_LIST) containers-storage:$(IMAGE)-$$arch; done; \
		$(PODMAN) manifest push --quiet --all --format oci $(IMAGE_LIST) oci-archive:$(CURDIR)/$(IMAGE_ARCHIVE) ); \
		rc=$$?; $(PODMAN) manifest rm $(IMAGE_LIST); exit $$rc

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
# decoded strictly into k8s.io/api types, the deployment rules, the agent's
# seccomp profile against the runtime default (containers-common's), and
# `validate` of both distributions on every embedded collector config.
deploy-test: build gateway
	$(call apt_install,golang-github-containers-common)
	cd deploy/kubernetes && $(GO) vet ./... && \
		TCPCONNECT_COLLECTOR=$(CURDIR)/$(COLLECTOR) TCPCONNECT_GATEWAY=$(CURDIR)/$(GATEWAY) $(GO) test -count=1 -v ./...

# k8s-test runs the gateway's Kubernetes enrichment against a real control
# plane on loopback (deploy/kubernetes/apiserver, its own Go module): etcd
# (Debian's etcd-server) and a kube-apiserver built from k8s.io/kubernetes
# K8S_VERSION (once, into $(K8S_APISERVER): remade only when that module's
# go.mod or go.sum changes), pods made through its API, the agent and the
# gateway distributions with the shipped configs, and processes in cgroups
# named as the kubelet names a pod's container; the gateway also exports to
# a VictoriaLogs ($(VICTORIALOGS)) that the cookbook's per-pod query reads.
# The cold build of the API
# server is the cost (2026-12-07, empty build cache, this 2-core machine):
# 4.6 minutes, 536 CPU-seconds, at load under 3; 7.4 minutes at load 5 to 7
# (v1.34.0: 3.4 minutes, 388 CPU-seconds, at load under 3). Then 30 s for
# vet and the test's build; the test itself about 40 s. Every go
# command of that module runs with CGO_ENABLED=0 and no -trimpath, so that
# the packages the test shares with the API server (client-go, api,
# apimachinery) are compiled once.
K8S_VERSION := v1.37.2
K8S_APISERVER := $(BUILD)/k8s/kube-apiserver-$(K8S_VERSION)
K8S_GO := cd deploy/kubernetes/apiserver && CGO_ENABLED=0 $(GO)
$(K8S_APISERVER): deploy/kubernetes/apiserver/go.mod deploy/kubernetes/apiserver/go.sum
	$(K8S_GO) build -ldflags='-s -w -X k8s.io/component-base/version.gitVersion=$(K8S_VERSION)' \
		-o $(CURDIR)/$@ k8s.io/kubernetes/cmd/kube-apiserver

k8s-test: build gateway victorialogs $(K8S_APISERVER)
	$(call apt_install,etcd-server util-linux)
	$(K8S_GO) vet ./... && \
		TCPCONNECT_COLLECTOR=$(CURDIR)/$(COLLECTOR) TCPCONNECT_GATEWAY=$(CURDIR)/$(GATEWAY) \
		TCPCONNECT_VICTORIALOGS=$(CURDIR)/$(VICTORIALOGS) \
		TCPCONNECT_KUBE_APISERVER=$(CURDIR)/$(K8S_APISERVER) TCPCONNECT_ETCD=/usr/bin/etcd \
		CGO_ENABLED=0 $(GO) test -count=1 -v ./...

# build-arm64 makes the static linux/arm64 distribution from the sources ocb
# generated into _build (same modules, same flags: -trimpath, -s -w).
build-arm64: build
	cd $(BUILD) && CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build -trimpath -ldflags='-s -w' -o linux-arm64/otelcol-tcpconnect .

# run builds the collector and runs it as root with the default config.
run: build
	@if [ "$$(id -u)" != 0 ]; then echo "tcpconnect loads eBPF programs: run as root (sudo make run)"; exit 1; fi
	$(COLLECTOR) --config $(CONFIG)

# lint also refuses a test that skips by itself: privtest.SkipOrFail is the
# one way, as it fails under TCPCONNECT_REQUIRE_PRIVILEGED=1. A skip that is
# right there too says why on its line (// skip-ok: why). The guest check
# runs only inside the VM guest, where it must not skip. Nor may a test log
# and return (a t.Log call, then return or continue): it passes having
# tested nothing, where a skip would say so; a log that is right there says
# why on its line (// log-ok: why). And every privileged test is in a VM
# list (vmtest-list).
lint: vmtest-list
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	@bad=$$(git grep -n -E '\.Skip(f|Now)?\(' -- '*_test.go' ':!internal/vmtest/guestcheck' | grep -v 'skip-ok:'); \
	if [ -n "$$bad" ]; then echo "tests that skip without privtest.SkipOrFail (or a // skip-ok: reason):"; echo "$$bad"; exit 1; fi
	@bad=$$(git ls-files '*_test.go' | xargs awk '$(LOG_RETURN_AWK)'); \
	if [ -n "$$bad" ]; then echo "tests that log and return (use privtest.SkipOrFail, or a // log-ok: reason):"; echo "$$bad"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	cd deploy/kubernetes && $(GO) vet ./... && $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
	$(K8S_GO) vet ./... && CGO_ENABLED=0 $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...

# LOG_RETURN_AWK prints each t.Log/b.Log call (one line or several) that
# the next non-blank line follows with return or continue.
LOG_RETURN_AWK := FNR == 1 { state = 0 } \
	/^[ \t]*$$/ { next } \
	state == 2 && /^[ \t]*(return|continue)([ \t;]|$$)/ { print where; state = 0; next } \
	state == 1 { if (/\)[ \t]*$$/) state = 2; next } \
	{ state = 0 } \
	/(^|[^A-Za-z0-9_])[tb]\.Logf?\(/ && !/log-ok:/ { where = FILENAME ":" FNR ": " $$0; state = /\)[ \t]*$$/ ? 2 : 1 }

# unit runs every Go test of the module with the race detector (it needs cgo;
# the VM's test binaries stay static, CGO_ENABLED=0, without it); as root it
# includes the privileged (native, cgroup mode) tests.
# TCPCONNECT_REQUIRE_PRIVILEGED=1 makes a skip fail.
# TestProbeModesAgree needs every attach mode at once: it runs in the VM only.
# The allocation guard (TestAllocsPerRecord) skips under -race, whose
# instrumentation allocates; the second line runs it without.
unit: deps-test
	CGO_ENABLED=1 $(GO) test -race -count=1 -skip '$(VM_ONLY_TESTS)' $(UNIT_PKGS)
	$(GO) test -count=1 -run '^TestAllocs' ./tcpconnectreceiver/

e2e: deps-test build
	TCPCONNECT_COLLECTOR=$(CURDIR)/$(COLLECTOR) CGO_ENABLED=1 $(GO) test -race -count=1 -v -skip '^(TestContainer|TestStore)' ./e2e/

# The VictoriaLogs server of the store test, built from deploy/victorialogs's
# own module (a Go tool there, out of the main module's go.mod). go build
# skips the link when the binary is up to date: built once per machine.
VICTORIALOGS := $(BUILD)/victorialogs/victoria-logs
victorialogs:
	cd deploy/victorialogs && CGO_ENABLED=0 $(GO) build -trimpath -o $(CURDIR)/$(VICTORIALOGS) github.com/VictoriaMetrics/VictoriaLogs/app/victoria-logs

# store-test runs the collector with deploy/victorialogs/config.yaml into a
# real VictoriaLogs on loopback (e2e/store_test.go): the entries' message
# and streams as stored, and every query of docs/cookbook-victorialogs.md
# against the connects the test made.
store-test: deps-test build victorialogs
	TCPCONNECT_COLLECTOR=$(CURDIR)/$(COLLECTOR) TCPCONNECT_VICTORIALOGS=$(CURDIR)/$(VICTORIALOGS) \
		$(GO) test -count=1 -v -run '^TestStore' ./e2e/

# container-test runs the image with podman as the Kubernetes DaemonSet does
# (e2e/container_test.go: non-root with the file capabilities, the agent's
# seccomp profile, a CRI-like runtime that grants no ambient capabilities):
# another container's connect and its container.id, a host connect, the
# agent's own export left out, no host PID, shutdown with the next hop down,
# the start refused without bpf() or capabilities; and it reads the
# multi-arch manifest list from the OCI archive.
container-test: deps-test image
	TCPCONNECT_COLLECTOR=$(CURDIR)/$(COLLECTOR) TCPCONNECT_IMAGE=$(IMAGE) TCPCONNECT_IMAGE_ARCHIVE=$(CURDIR)/$(IMAGE_ARCHIVE) \
		$(GO) test -count=1 -v -run '^TestContainer' ./e2e/

vmtest-fetch:
	$(GO) run ./cmd/vmtest -kernels $(VM_KERNELS) -fetch-only

# vm-binaries builds the static test binaries the guests run, per architecture.
vm-binaries:
	mkdir -p $(BUILD)/vm/amd64
	$(call vmbins,amd64)

vm-binaries-arm64:
	mkdir -p $(BUILD)/vm/arm64
	$(call vmbins,arm64)

vmbins = for p in internal/vmtest/guestcheck bpf tcpconnectreceiver e2e; do \
		CGO_ENABLED=0 GOOS=linux GOARCH=$(1) $(GO) test -c -o $(BUILD)/vm/$(1)/$$(basename $$p).test ./$$p || exit 1; done

# vmtest boots the pinned kernels under qemu (TCG) and runs the privileged
# tests: amd64 kernels with bpf in their LSM list in every attach mode, then
# again without bpf in it (auto must pick fentry); 5.10 as Debian ships it
# (no bpf: auto picks fentry) and again with bpf added (every mode); arm64 in
# the modes and tests of VM_ARM64_* (6.1 without lsm and fentry, which its
# arm64 build cannot attach). One TCG guest keeps about 1.2 of this
# machine's 2 cores busy, so two boots run at once (VM_JOBS), longest first;
# each writes its whole console to $(BUILD)/vmtest/BOOT.log and the summary
# of every boot (with the console's last lines for a failed one) is printed
# at the end. VM_KERNELS=5.10 runs only 5.10's two boots.
VM_JOBS ?= 2
VM_BOOTS := vmboot-6.12 vmboot-6.1 vmboot-5.10-bpf vmboot-6.12-arm64 vmboot-6.1-arm64 vmboot-6.12-nolsm vmboot-6.1-nolsm vmboot-5.10
vmtest: vmtest-list deps build build-arm64 vm-binaries vm-binaries-arm64 vmtest-fetch
	@rm -rf $(BUILD)/vmtest && mkdir -p $(BUILD)/vmtest
	@echo "vmtest: $(VM_JOBS) boots at a time; consoles in $(BUILD)/vmtest/"
	@$(MAKE) --no-print-directory -k -j$(VM_JOBS) $(VM_BOOTS); \
	for b in $(VM_BOOTS); do [ -s $(BUILD)/vmtest/$$b.log ] || continue; \
		echo "=== $$b ($(BUILD)/vmtest/$$b.log)"; grep -v -e '^\[' -e '^vmtest: \[[^]]*\] [|!] ' $(BUILD)/vmtest/$$b.log; done; \
	for f in $(BUILD)/vmtest/*.failed; do [ -e "$$f" ] || continue; l=$${f%.failed}.log; \
		echo "=== $$(basename $${f%.failed}) FAILED: the failed tests' output, kernel errors, then the console's last lines (all of it: $$l)"; \
		grep -E '^vmtest: \[[^]]*\] (! |[^ ]+ failed; )' $$l | cut -c1-400 | tail -n 80; \
		grep '^\[' $$l | grep -B4 -E 'Kernel panic|Oops|BUG:|RIP:|Call Trace|WARNING:' | cut -c1-300 | tail -n 20; \
		echo "---"; grep '^\[' $$l | cut -c1-300 | tail -n 12; done; \
	if ls $(BUILD)/vmtest/*.failed >/dev/null 2>&1; then echo "vmtest: FAILED: $$(cd $(BUILD)/vmtest && ls *.failed | sed 's/.failed//' | tr '\n' ' ')"; exit 1; fi; \
	echo "vmtest: every boot passed"

# vmboot runs $(1) into the boot's log and marks the boot failed when it
# fails; with nothing to run (VM_KERNELS left the kernel out) it does nothing.
vmboot = $(if $(strip $(1)),{ $(1); } > $(BUILD)/vmtest/$@.log 2>&1 || touch $(BUILD)/vmtest/$@.failed,true)
vmboot-6.1:
	@$(call vmboot,$(call vmrun,6.1,amd64,-mode-matrix $(VM_MODES) $(VM_PIPELINE_MODES) $(VM_EXPECT_ACTIVE)))
vmboot-6.12:
	@$(call vmboot,$(call vmrun,6.12,amd64,-mode-matrix $(VM_MODES) $(VM_PIPELINE_MODES) $(VM_EXPECT_ACTIVE)))
vmboot-6.1-nolsm:
	@$(call vmboot,$(call vmrun,6.1,amd64,-mode-matrix auto -cmdline $(VM_NOLSM_CMDLINE) $(VM_EXPECT_INACTIVE)))
vmboot-6.12-nolsm:
	@$(call vmboot,$(call vmrun,6.12,amd64,-mode-matrix auto -cmdline $(VM_NOLSM_CMDLINE) $(VM_EXPECT_INACTIVE)))
vmboot-5.10:
	@$(call vmboot,$(call vmrun,5.10,amd64,-mode-matrix auto $(VM_EXPECT_INACTIVE)))
vmboot-5.10-bpf:
	@$(call vmboot,$(call vmrun,5.10,amd64,-mode-matrix $(VM_MODES) $(VM_PIPELINE_MODES) -cmdline $(VM_510_LSM_CMDLINE) $(VM_EXPECT_ACTIVE)))
vmboot-6.12-arm64:
	@$(call vmboot,$(call vmrun,6.12-arm64,arm64,-mode-matrix $(VM_ARM64_MODES) $(VM_EXPECT_ACTIVE)))
vmboot-6.1-arm64:
	@$(call vmboot,$(call vmrun,6.1-arm64,arm64,-mode-matrix $(VM_ARM64_NOTRAMPOLINE_MODES) -env TCPCONNECT_EXPECT_LSM=active -env TCPCONNECT_EXPECT_AUTO=kprobe,$(VM_ARM64_NOTRAMPOLINE_TESTS)))

# vmtest-quick boots one kernel (VM_QUICK_KERNEL) in one mode (VM_QUICK_MODE).
vmtest-quick: deps build vm-binaries
	$(call vmrun,$(VM_QUICK_KERNEL),amd64,-mode-matrix $(VM_QUICK_MODE) $(VM_EXPECT_ACTIVE))

# vmtest-stress: TestConnectStress (bpf/stress_test.go) with the full count,
# VM_STRESS_CONNECTS connects (blocking, non-blocking, refused, and
# connects that signals interrupt and that are retried), in each
# trampoline mode on VM_STRESS_KERNEL, the kernel where one connect once
# gave two records; every connect must give exactly one record. The
# normal VM run makes a smaller count (the test's default, about 20 s a
# boot). 1,000,000 took 25 to 35 minutes per mode under TCG here.
VM_STRESS_KERNEL ?= 6.1
VM_STRESS_MODES ?= lsm,fentry
VM_STRESS_CONNECTS ?= 1000000
vmtest-stress: deps vm-binaries
	$(GO) run ./cmd/vmtest -kernels $(VM_STRESS_KERNEL) -timeout 4h -mode-matrix $(VM_STRESS_MODES) \
		-env TCPCONNECT_REQUIRE_PRIVILEGED=1 -env TCPCONNECT_STRESS_CONNECTS=$(VM_STRESS_CONNECTS) \
		-test-args '-test.v -test.timeout=3h' -tests bpf.test=TestConnectStress -test $(BUILD)/vm/amd64/bpf.test

# vmtest-list fails when a privileged test is in no VM list (a new test
# left out would otherwise never run on a real kernel's attach modes).
vmtest-list:
	@listed=" $(subst $(comma), ,$(VM_BPF_MODE_TESTS),$(VM_BPF_ONCE_TESTS),$(VM_RECEIVER_MODE_TESTS),$(VM_RECEIVER_ONCE_TESTS),$(VM_E2E_TESTS)) $(VM_NATIVE_ONLY_TESTS) "; \
	priv=$$($(GO) run ./cmd/vmtest -privileged $(subst $() ,$(comma),$(VM_TEST_PKGS))) || exit 1; \
	bad=$$(while read -r pkg name; do case "$$listed" in *" $$name "*) ;; *) echo "$$pkg: $$name";; esac; done <<<"$$priv"); \
	if [ -n "$$bad" ]; then echo "privileged tests in no VM list (Makefile VM_*_TESTS) nor in VM_NATIVE_ONLY_TESTS:"; echo "$$bad"; exit 1; fi

comma := ,
# vmkernels is $(1) (space-separated kernel names) narrowed to VM_KERNELS.
vmkernels = $(if $(filter all,$(VM_KERNELS)),$(1),$(filter $(1),$(subst $(comma), ,$(VM_KERNELS))))
# vmrun boots each kernel of $(1) that VM_KERNELS selects once with the
# $(2) test binaries (and collector); $(3) adds flags; $(4), when given,
# replaces the test list.
vmrun = $(if $(call vmkernels,$(1)),\
	$(GO) run ./cmd/vmtest -kernels $(subst $() ,$(comma),$(call vmkernels,$(1))) -timeout $(VM_TIMEOUT) -module veth -module nft_chain_nat -module nft_nat \
		-env TCPCONNECT_REQUIRE_PRIVILEGED=1 \
		-file $(BUILD)/vm/$(2)/guestcheck.test:/tests/guestcheck.test \
		-file $(if $(filter arm64,$(2)),$(ARM64_COLLECTOR),$(COLLECTOR)):/bin/otelcol-tcpconnect -env TCPCONNECT_COLLECTOR=/bin/otelcol-tcpconnect \
		-run 'guestcheck=/tests/guestcheck.test -test.v' \
		-test-args '-test.v -test.timeout=8m' $(if $(4),$(4),$(if $(filter arm64,$(2)),$(VM_ARM64_TESTS),$(VM_TESTS))) $(3) \
		-test $(BUILD)/vm/$(2)/bpf.test -test bpf-once=$(BUILD)/vm/$(2)/bpf.test -modes bpf-once=auto \
		-test $(BUILD)/vm/$(2)/tcpconnectreceiver.test -test tcpconnectreceiver-once=$(BUILD)/vm/$(2)/tcpconnectreceiver.test -modes tcpconnectreceiver-once=auto \
		-test $(BUILD)/vm/$(2)/e2e.test)

# fuzz is the brief run of the DNS fuzz targets that `make test` (CI) does;
# fuzz-long the scheduled one (FUZZ_LONG each, 5 minutes by default). The
# brief run counts executions (TARGET:COUNT, about 10 s each here) instead of
# a duration: with -fuzztime as a duration Go 1.26's fuzz coordinator can fail
# a target with a bare "context deadline exceeded" and no failing input when
# a loaded machine starves a worker at the deadline (golang/go#75804, fixed
# in Go 1.27; seen here in a CI rehearsal). A count has no deadline to race.
# Entries are TARGET:COUNT:PACKAGE.
FUZZ_BRIEF := FuzzParse:150000x:./dns/ FuzzParseReference:150000x:./dns/ FuzzLoadState:100000x:./dns/ FuzzTCPStream:100000x:./dns/ \
	FuzzParseTLS:60000x:./internal/firstbytes/ FuzzParseHTTP:100000x:./internal/firstbytes/
fuzz_field = $(word $(2),$(subst :, ,$(1)))
FUZZ_LONG ?= 5m

fuzz:
	$(foreach t,$(FUZZ_BRIEF),$(GO) test -run '^$$' -fuzz '^$(call fuzz_field,$(t),1)$$' -fuzztime $(call fuzz_field,$(t),2) $(call fuzz_field,$(t),3) &&) true

fuzz-long:
	$(foreach t,$(FUZZ_BRIEF),TCPCONNECT_FUZZ_STRICT=1 $(GO) test -run '^$$' -fuzz '^$(call fuzz_field,$(t),1)$$' -fuzztime $(FUZZ_LONG) $(call fuzz_field,$(t),3) &&) true

# bench is the native A/B connect storm (BENCHMARKS.md; about 12 minutes, root);
# bench-vm the same in lsm mode under qemu; bench-go the hot-path Go benchmarks.
bench: build
	bench/run.sh --pairs 5 --threads 2 --seconds 5

bench-vm: build
	bench/vm.sh --pairs 7 --seconds 5

bench-go:
	$(GO) test -run '^$$' -bench . -benchmem ./internal/event ./dns ./tcpconnectreceiver/

# bench-ab: BASE's collector against the working tree's in alternating pairs in
# one run, new/base ratios printed (bench/ab.sh; root). BASE is a commit-ish;
# its build is cached under _build/ab/COMMIT. AB_ARGS passes more options
# (e.g. AB_ARGS='--pairs 9 --setups sink').
BASE ?= main
AB_ARGS ?=
bench-ab:
	bench/ab.sh $(BASE) $(AB_ARGS)

# bench-fbcost: no collector, BASE's and NEW's default collector over a loopback
# stream of small writes, a ping-pong and a storm of TLS clients, in rotating
# order per pair (bench/fbcost.sh; root; issue 19 item 5). NEW is a commit-ish
# or . (the working tree); FB_ARGS passes more options (e.g. --pairs 8 --bpf-stats).
NEW ?= .
FB_ARGS ?=
bench-fbcost:
	bench/fbcost.sh $(BASE) $(NEW) $(FB_ARGS)

test: deps lint check-generate unit fuzz e2e store-test container-test deploy-test k8s-test deb-test vmtest

# --- The .deb and its systemd test (deploy/systemd) ---
# deb packages the distribution for each of DEB_ARCHES as
# _build/otelcol-tcpconnect_<version>_<arch>.deb: the binary, the config
# (a conffile), the hardened systemd unit and its user's scripts. nfpm is a
# Go tool of deploy/systemd's own module, out of the main module's go.mod.
DEB_ARCHES := amd64 arm64
deb_file = $(BUILD)/otelcol-tcpconnect_$(DIST_VERSION)_$(1).deb
deb: build build-arm64
	$(COLLECTOR) validate --config deploy/systemd/config.yaml
	for arch in $(DEB_ARCHES); do \
		if [ $$arch = arm64 ]; then bin=$(CURDIR)/$(ARM64_COLLECTOR); else bin=$(CURDIR)/$(COLLECTOR); fi; \
		( cd deploy/systemd && VERSION=$(DIST_VERSION) ARCH=$$arch BINARY=$$bin \
			$(GO) tool nfpm package --config nfpm.yaml --packager deb --target $(CURDIR)/$(call deb_file,$$arch) ) || exit 1; \
	done

# deb-test installs the host's .deb into a Debian bookworm root file system
# (debootstrap, cached in DEBOOTSTRAP_CACHE and made only when missing),
# boots it with systemd as init (systemd-nspawn) and checks the service
# there (deploy/systemd/deb-test.sh).
DEBOOTSTRAP_CACHE ?= /var/cache/tcpconnect-debootstrap
deb-test: deb
	$(call apt_install,debootstrap systemd-container procps util-linux)
	TCPCONNECT_DEBOOTSTRAP_CACHE=$(DEBOOTSTRAP_CACHE) deploy/systemd/deb-test.sh $(call deb_file,$(shell $(GO) env GOARCH))

# seccomp-configmap writes the ConfigMap of the agent's seccomp profile, in
# deploy/kubernetes/agent-seccomp.yaml and as the Helm chart's extraManifests
# in helm/agent-seccomp-values.yaml, from the profile (deploy-test checks
# that they are equal).
seccomp-configmap:
	f=deploy/kubernetes/agent-seccomp.yaml; \
	{ sed '/^  tcpconnect-agent.json: |$$/q' $$f; sed 's/^/    /' deploy/kubernetes/seccomp/tcpconnect-agent.json; } > $$f.new && mv $$f.new $$f
	f=deploy/kubernetes/helm/agent-seccomp-values.yaml; \
	{ sed '/^      tcpconnect-agent.json: |$$/q' $$f; sed 's/^/        /' deploy/kubernetes/seccomp/tcpconnect-agent.json; } > $$f.new && mv $$f.new $$f

clean:
	rm -rf $(BUILD)
