# shiploop: the two commands a newcomer needs are `make run` and `make test`.
GO      ?= go
# Every module of the workspace except the tools module (no packages of ours).
MODULES := $(shell $(GO) list -m -f '{{.Dir}}' | grep -v '/tools$$')
TEST_FLAGS ?= -timeout 40m

.PHONY: run test generate check-generated check-modules lint vet fmt-check bench build clean

## run: everything in one process on embedded defaults (NATS, SQLite); local
## repositories (the demo's, a path on this machine) need the file transport
run:
	$(GO) run ./cmd/shiploop up --allowed-transports https,ssh,git,file

## build: the shiploop binary in bin/
build:
	$(GO) build -o bin/shiploop ./cmd/shiploop

## test: every module's tests (go test ./... at the root would skip the modules)
test:
	@failed=""; for m in $(MODULES); do \
		echo "== $${m#$(CURDIR)/}"; \
		(cd $$m && $(GO) test $(TEST_FLAGS) ./...) || failed="$$failed $${m#$(CURDIR)/}"; \
	done; \
	if [ -n "$$failed" ]; then echo "FAILED:$$failed"; exit 1; fi

## generate: protobuf Go code from proto/ with the pinned plugins
generate:
	$(GO) tool buf generate

## check-generated: fail when the committed generated code is stale
check-generated: generate
	@git diff --exit-code --stat -- proto/ || { echo "generated code is stale: run 'make generate' and commit"; exit 1; }
	@test -z "$$(git status --porcelain -- proto/)" || { git status --porcelain -- proto/; echo "generated files not committed: run 'make generate' and commit"; exit 1; }

## check-modules: every module builds and vets on its own (GOWORK=off, replace directives)
check-modules:
	@set -e; for m in $(MODULES); do echo "GOWORK=off $${m#$(CURDIR)/}"; (cd $$m && GOWORK=off $(GO) vet ./...); done

## lint: go vet on every module, buf lint, gofmt
lint: vet fmt-check
	$(GO) tool buf lint

vet:
	@set -e; for m in $(MODULES); do (cd $$m && $(GO) vet ./...); done

fmt-check:
	@out=$$(gofmt -l $$(git ls-files '*.go')); test -z "$$out" || { echo "gofmt would change:"; echo "$$out"; exit 1; }

## bench: the benchmarks in tests/bench; figures go to docs/benchmarks.md
bench:
	cd tests && $(GO) test -run '^$$' -bench . -benchtime 1x -timeout 30m ./bench/...

clean:
	rm -rf bin .shiploop
