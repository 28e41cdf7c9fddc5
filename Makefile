# agentid — build, test and demo. `make test` and `make demo` do all set-up.
SHELL := /bin/bash
GO ?= go
SPIRE_VERSION := 1.13.3
CACHE := $(CURDIR)/.cache
SPIRE_BIN := $(CACHE)/spire/v$(SPIRE_VERSION)/bin
BIN := $(CURDIR)/bin
VERSION ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS := -X github.com/agentid/agentid/internal/version.Version=$(VERSION)
CMDS := $(notdir $(wildcard cmd/*))
EXAMPLE_CMDS := kbagent kbservice
FUZZTIME ?= 30s

export AGENTID_SPIRE_BIN := $(SPIRE_BIN)

.PHONY: all build spire test unit fuzz bench lint demo generate clean ts-agent mcp-npm

all: build

## build: every binary into bin/
build:
	@mkdir -p $(BIN)
	$(GO) build -ldflags "$(LDFLAGS)" -o $(BIN)/ $(addprefix ./cmd/,$(CMDS)) $(addprefix ./examples/,$(EXAMPLE_CMDS))

## spire: spire-server and spire-agent v$(SPIRE_VERSION) from the pinned tools module, cached
spire: $(SPIRE_BIN)/spire-server $(SPIRE_BIN)/spire-agent

$(SPIRE_BIN)/spire-server $(SPIRE_BIN)/spire-agent: tools/spire/go.mod tools/spire/go.sum
	@mkdir -p $(SPIRE_BIN)
	@echo "building SPIRE v$(SPIRE_VERSION) into $(SPIRE_BIN) (about 5 minutes on 2 cores the first time)"
	cd tools/spire && $(GO) build -o $(SPIRE_BIN)/ github.com/spiffe/spire/cmd/spire-server github.com/spiffe/spire/cmd/spire-agent
	@touch $(SPIRE_BIN)/spire-server $(SPIRE_BIN)/spire-agent

## test: unit tests, fuzz seed corpora and integration tests on a real SPIRE
test: spire build
	@which openssl >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq openssl) || echo "openssl not installed: the openssl check will say it was skipped"
	@command -v initdb >/dev/null 2>&1 || ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) || \
	  echo "PostgreSQL not installed: the scale-out e2e test (two SPIRE servers on one PostgreSQL) will fail"
	@command -v mariadbd >/dev/null 2>&1 || test -x /usr/sbin/mariadbd || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends mariadb-server >/dev/null) || \
	  echo "MariaDB not installed: the audit log's SQL store tests will fail"
	@ruby -e "require 'rack'; require 'webrick'" >/dev/null 2>&1 || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends ruby-rack ruby-webrick >/dev/null) || \
	  echo "Ruby's rack and webrick not installed: the real Rack upstream test (form _method override) will fail"
	@test -f /usr/share/php/Illuminate/Http/autoload.php || \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends php-cli php-illuminate-http >/dev/null) || \
	  echo "PHP and Laravel's Illuminate\\Http not installed: the real Laravel upstream test (form and JSON _method override) will fail"
	@command -v setcap >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends libcap2-bin >/dev/null) || \
	  echo "setcap (libcap2-bin) not installed: the launcher's capability-drop test (TestRunVariantBDropsCapabilities) will skip"
	@command -v npm >/dev/null 2>&1 || (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null) || \
	  echo "npm not installed: the MCP interop e2e tests (TypeScript client, npm MCP servers) will skip"
	@$(MAKE) -s mcp-npm || echo "the npm packages of examples/mcp/client did not install: the MCP interop e2e tests will say why and skip"
	AGENTID_REQUIRE_MARIADB=1 AGENTID_REQUIRE_RACK=1 AGENTID_REQUIRE_LARAVEL=1 $(GO) test -count=1 -timeout 60m ./... 2>&1 | tee $(CACHE)/test.log; test $${PIPESTATUS[0]} -eq 0
	cd bench && $(GO) test -count=1 ./... 2>&1 | tee -a $(CACHE)/test.log; test $${PIPESTATUS[0]} -eq 0
	@passed=$$(grep -c '^ok ' $(CACHE)/test.log); failed=$$(grep -c '^FAIL' $(CACHE)/test.log); \
	  echo "packages: $$passed passed, $$failed failed"

## mcp-npm: the npm packages pinned by examples/mcp/client/package-lock.json (the TypeScript MCP
## client's @modelcontextprotocol/sdk, the published MCP servers the e2e tests run) into
## .cache/npm/mcp-client, and the client compiled there (dist/client.js)
MCP_CLIENT := examples/mcp/client
MCP_NPM := $(CACHE)/npm/mcp-client
mcp-npm: $(MCP_NPM)/dist/client.js

$(MCP_NPM)/node_modules/.package-lock.json: $(MCP_CLIENT)/package.json $(MCP_CLIENT)/package-lock.json
	@mkdir -p $(MCP_NPM)
	cp $^ $(MCP_NPM)/
	cd $(MCP_NPM) && npm ci --no-audit --no-fund --loglevel=error
	@touch $@

$(MCP_NPM)/dist/client.js: $(MCP_NPM)/node_modules/.package-lock.json $(MCP_CLIENT)/client.ts $(MCP_CLIENT)/tsconfig.json
	cp $(MCP_CLIENT)/client.ts $(MCP_CLIENT)/tsconfig.json $(MCP_NPM)/
	cd $(MCP_NPM) && node_modules/.bin/tsc -p tsconfig.json

## fuzz: run every fuzz target for FUZZTIME each (default 30s)
fuzz:
	@for pkg in $$($(GO) list ./...); do \
	  for f in $$($(GO) test -list 'Fuzz.*' $$pkg | grep '^Fuzz'); do \
	    echo "== $$pkg $$f"; $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) -fuzzminimizetime 5s $$pkg || exit 1; \
	  done; done

## bench: all benchmarks, then agentid vs OPA vs cedar-go (bench/, its own module)
bench: spire build
	$(GO) test -run '^$$' -bench . -benchmem ./...
	cd bench && $(GO) test -run '^$$' -bench . -benchmem

## lint: go vet and gofmt
lint:
	$(GO) vet ./...
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

## demo: the end-to-end story on a real SPIRE
demo: spire build
	$(GO) run ./examples/delegation -bin-dir $(BIN) -spire-bin $(SPIRE_BIN)

## generate: regenerate the gRPC code under proto/ (protoc from apt, plugins from the module proxy)
PROTOC_GEN_GO := $(CACHE)/tools/protoc-gen-go
PROTOC_GEN_GO_GRPC := $(CACHE)/tools/protoc-gen-go-grpc
generate: $(PROTOC_GEN_GO) $(PROTOC_GEN_GO_GRPC)
	@which protoc >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq protobuf-compiler)
	PATH=$(CACHE)/tools:$$PATH protoc -I proto --go_out=paths=source_relative:proto --go-grpc_out=paths=source_relative:proto \
	  $$(find proto -name '*.proto')

$(PROTOC_GEN_GO):
	GOBIN=$(CACHE)/tools $(GO) install google.golang.org/protobuf/cmd/protoc-gen-go@v1.36.12
$(PROTOC_GEN_GO_GRPC):
	GOBIN=$(CACHE)/tools $(GO) install google.golang.org/grpc/cmd/protoc-gen-go-grpc@v1.6.0

## ts-agent: the TypeScript agent example (npm packages into examples/ts-agent/node_modules, npm's cache in .cache/npm; its Go interop test does the same)
ts-agent:
	cd examples/ts-agent && npm ci --no-audit --no-fund --cache $(CACHE)/npm && npm run build

clean:
	rm -rf $(BIN)
