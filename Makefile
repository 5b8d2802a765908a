# Switchboard Makefile. Kubebuilder's target names where they exist.
# Every tool is built from the Go module proxy into bin/ (git-ignored) once.

SHELL := /usr/bin/env bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO ?= go
BIN := $(CURDIR)/bin
export PATH := $(BIN):$(PATH)

# Pinned tool versions.
CONTROLLER_TOOLS_VERSION ?= v0.23.0
STATICCHECK_VERSION ?= v0.8.2
HELM_VERSION ?= v3.22.0

CONTROLLER_GEN := $(BIN)/controller-gen
STATICCHECK := $(BIN)/staticcheck
HELM := $(BIN)/helm
# The image `make image` writes and the chart's default image points at.
IMAGE ?= switchboard:dev
IMAGE_ARCH ?= $(shell $(GO) env GOARCH)
# kube-apiserver and etcd for envtest, built by hack/envtest/build.sh.
KUBE_ASSETS := $(BIN)/k8s
export KUBEBUILDER_ASSETS := $(KUBE_ASSETS)

# go test flags; override for a narrower run, e.g. make test TEST_FLAGS='-run Pool'.
TEST_FLAGS ?= -count=1 -timeout=25m
TEST_PKGS ?= ./...

##@ General

.PHONY: help
help: ## Show the targets.
	@awk 'BEGIN {FS = ":.*##"; printf "Usage: make <target>\n"} /^[a-zA-Z_0-9-]+:.*?##/ { printf "  \033[36m%-14s\033[0m %s\n", $$1, $$2 } /^##@/ { printf "\n\033[1m%s\033[0m\n", substr($$0, 5) }' $(MAKEFILE_LIST)

##@ Development

.PHONY: manifests
manifests: $(CONTROLLER_GEN) ## Generate CRDs and RBAC into config/.
	$(CONTROLLER_GEN) rbac:roleName=switchboard-manager crd paths="./api/..." paths="./controllers/..." \
		output:crd:artifacts:config=config/crd/bases output:rbac:artifacts:config=config/rbac

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy code.
	$(CONTROLLER_GEN) object:headerFile=hack/boilerplate.go.txt paths="./api/..."

.PHONY: fmt
fmt: ## gofmt the tree.
	gofmt -w $$(git ls-files '*.go')

.PHONY: vet
vet: ## go vet.
	$(GO) vet ./...

.PHONY: lint
lint: $(STATICCHECK) ## Lint with staticcheck.
	$(STATICCHECK) ./...

.PHONY: verify
verify: manifests generate ## Fail if generated files are stale, code is unformatted or lint fails.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@git diff --exit-code -- config api || { echo "generated files are stale: run 'make manifests generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- config api | grep '^??')" || { echo "untracked generated files:"; git status --porcelain -- config api; exit 1; }
	@hack/helm-sync.sh --check
	$(MAKE) --no-print-directory lint

##@ Build and run

.PHONY: build
build: ## Build bin/switchboard.
	$(GO) build -o $(BIN)/switchboard ./cmd/switchboard

.PHONY: run
run: build ## Run the all-in-one dev mode (SFU + TURN + API + demo page) on localhost.
	$(BIN)/switchboard dev

.PHONY: image
image: ## Build the switchboard image (static binary, scratch base, user 65532) into bin/switchboard-image.tar; no Docker needed.
	CGO_ENABLED=0 GOOS=linux GOARCH=$(IMAGE_ARCH) $(GO) build -trimpath -ldflags='-s -w' -o $(BIN)/linux/switchboard ./cmd/switchboard
	cd hack/image && $(GO) run . -binary $(BIN)/linux/switchboard -tag $(IMAGE) -arch $(IMAGE_ARCH) -out $(BIN)/switchboard-image.tar

.PHONY: docker-build
docker-build: ## Build the same image with Docker as $(IMAGE).
	docker build -f hack/image/Dockerfile -t $(IMAGE) .

##@ Test

.PHONY: envtest
envtest: ## Build kube-apiserver, etcd and kubectl for envtest into bin/k8s (once).
	hack/envtest/build.sh $(KUBE_ASSETS) kubectl

.PHONY: chromium
chromium: ## Install Debian's chromium for the browser tests (idempotent).
	hack/install-chromium.sh

.PHONY: test
test: verify vet envtest chromium helm ## Everything CI checks: generated files, vet, lint, unit, envtest, media, chart and browser tests.
	$(GO) test $(TEST_FLAGS) $(TEST_PKGS)
	cd hack/image && $(GO) test -count=1 ./...

.PHONY: test-e2e
test-e2e: ## End to end on a local single-node cluster: helm install, pool and app, media across pods, scale-down (root; docs/e2e.md).
	hack/e2e/run.sh

.PHONY: helm
helm: $(HELM) ## Build helm into bin/ (pinned) for the chart tests.

.PHONY: helm-lint
helm-lint: $(HELM) ## Check the chart's CRD and RBAC copies and lint it with every values file in charts/switchboard/ci.
	hack/helm-sync.sh --check
	for f in charts/switchboard/ci/*-values.yaml; do $(HELM) lint --strict charts/switchboard -f "$$f"; done

.PHONY: bench
bench: ## Run the benchmarks and print figures (see docs/benchmarks.md).
	hack/bench.sh

##@ Local cluster (hack/cluster; root; see hack/cluster/README.md)

.PHONY: cluster-up
cluster-up: ## Build what is missing and bring up a single-node cluster in a private netns (idempotent).
	hack/cluster/up.sh

.PHONY: cluster-down
cluster-down: ## Tear the local cluster down and fail if anything is left (idempotent).
	hack/cluster/down.sh

.PHONY: cluster-smoke
cluster-smoke: ## Import an image, run a Deployment and reach it through a Service on the local cluster.
	hack/cluster/smoke.sh

##@ Deployment (needs kubectl and a cluster)

.PHONY: install
install: manifests ## Install the CRDs into the current cluster.
	kubectl apply --server-side -k config/crd

.PHONY: uninstall
uninstall: ## Remove the CRDs from the current cluster.
	kubectl delete -k config/crd --ignore-not-found

.PHONY: deploy
deploy: manifests ## Deploy the operator with kustomize into the current cluster.
	kubectl apply --server-side -k config/default

.PHONY: undeploy
undeploy: ## Remove the operator from the current cluster.
	kubectl delete -k config/default --ignore-not-found

##@ Tools

$(CONTROLLER_GEN):
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_TOOLS_VERSION)

$(STATICCHECK):
	GOBIN=$(BIN) $(GO) install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)

$(HELM):
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)
