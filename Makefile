# Hearth's tasks. CI runs `make test` (see .ci/run).
GO      ?= go
BIN     ?= bin/hearth
# make test fuzzes each target for a count of inputs, not a duration: Go
# 1.26's coordinator can fail a duration run at its deadline with "context
# deadline exceeded" and no crasher (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 2000x

.PHONY: build test vet variants fuzz fuzz-short bench kernels gpu-check lint deploy-test

build:
	$(GO) build -buildvcs=auto -o $(BIN) ./cmd/hearth

vet: variants
	$(GO) vet ./...
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || (echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1)
	$(GO) mod tidy -diff

# The builds CI keeps compiling besides the native one: the portable
# kernels alone (purego, the only switch that turns assembly off) and
# linux/arm64 without cgo (its assembly; NVML stubbed). Build and vet
# (which type-checks the tests) only: nothing runs.
variants:
	$(GO) build -tags purego ./...
	$(GO) vet -tags purego ./...
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) build ./...
	CGO_ENABLED=0 GOOS=linux GOARCH=arm64 $(GO) vet ./...

# Unit, parity and CLI tests, the deployment files' tests, then each fuzz
# target for a few seconds.
test: vet
	$(GO) test -timeout 20m ./...
	$(GO) test -race ./scheduler/ ./runtime/engine/ ./runtime/server/... ./runtime/models/
	$(GO) test -race -short ./runtime/grammar/ ./runtime/split/
	$(MAKE) deploy-test
	$(MAKE) fuzz-short

# The Helm chart and the Dockerfile (deploy/, a module of its own so that
# Helm and the Kubernetes API types stay out of hearth's dependencies):
# vet, tidy, and the tests that render the chart and decode every object.
# -v prints the rendered objects of each values file.
deploy-test:
	cd deploy && $(GO) vet ./... && $(GO) mod tidy -diff && $(GO) test -v -count=1 ./...

FUZZ_TARGETS = ./loader/gguf:FuzzParse ./runtime/arch/all:FuzzLoad ./loader/tokenizer:FuzzEncode ./loader/tokenizer:FuzzSplitters ./loader/chat:FuzzRender ./scheduler:FuzzScheduler ./runtime/server:FuzzHandlers ./runtime/models:FuzzParseName ./runtime/grammar:FuzzFromSchema

fuzz-short:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test -run='^$$' -fuzz="^$$fn$$" -fuzztime=$(FUZZTIME) -fuzzminimizetime=5s $$pkg || exit 1; \
	done

fuzz:
	$(MAKE) fuzz-short FUZZTIME=5m

bench:
	$(GO) test -run='^$$' -bench=. -benchtime=1x ./quant/ ./kernels/... ./scheduler/

# Regenerate kernels/cuda/*.ptx from the CUDA C sources with Debian's
# clang-16 (apt-get install clang-16); commit the result.
kernels:
	$(GO) run ./kernels/cuda/cmd/ptxgen -dir kernels/cuda

# Build the device check here (no GPU needed) and print the one device
# call that runs it (scripts/gpu-check.sh says what it checks).
gpu-check:
	scripts/gpu-check.sh

# staticcheck at a pinned version, fetched through the module proxy (not a
# dependency of the module), with its default checks. -tags gpu: the device
# tests use helpers that would otherwise look unused.
STATICCHECK ?= honnef.co/go/tools/cmd/staticcheck@v0.8.2

lint: vet
	$(GO) run $(STATICCHECK) -tags gpu ./...
