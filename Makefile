# make test runs everything CI runs (see README.md, "Development").
GO ?= go
STATICCHECK = $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The integration tests are a separate module, so that testcontainers and
# Docker's client stay out of the library's dependencies.
MODULES = . integration

.PHONY: test lint unit integration bench

test: lint unit integration

lint:
	@test -z "$$(gofmt -l .)" || { echo "not gofmt-formatted:"; gofmt -l .; exit 1; }
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./... && $(STATICCHECK) ./...) || exit 1; done

unit:
	$(GO) test -race -count=1 ./...

# Installs and starts Docker if needed (as root on Debian), builds the server
# images when their recipe changed, runs the tests, removes the containers.
integration:
	integration/scripts/test.sh

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...
