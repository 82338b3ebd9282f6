# make test runs everything CI runs (see README.md, "Development").
GO ?= go
STATICCHECK = $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2
# The integration tests are a separate module, so that testcontainers and
# Docker's client stay out of the library's dependencies.
MODULES = . integration

.PHONY: test lint unit fuzz integration bench chaos

test: lint unit
	$(MAKE) fuzz FUZZ_TIME=5s
	$(MAKE) integration

lint:
	@test -z "$$(gofmt -l .)" || { echo "not gofmt-formatted:"; gofmt -l .; exit 1; }
	@for m in $(MODULES); do (cd $$m && $(GO) vet ./... && $(STATICCHECK) ./...) || exit 1; done
	@# No build output or other large file is committed (issue 15).
	@big=$$(git ls-files -z | xargs -0 -r stat -c '%s %n' | awk '$$1 > 1048576 { print $$2 }'); \
		test -z "$$big" || { echo "tracked files over 1 MB: $$big"; exit 1; }
	@# The library and the command build on other systems too.
	@for os in darwin freebsd windows; do GOOS=$$os $(GO) build ./... || { echo "does not build for $$os"; exit 1; }; done

# The simulation (sim_test.go) runs 100 schedules under the race detector
# with the rest, and 2000 more without it, where it is ten times faster.
unit:
	$(GO) test -race -count=1 ./...
	OBJSYNC_SIM_SCHEDULES=2000 $(GO) test -count=1 -timeout 20m -run '^TestSimulation$$' .

# make chaos CHAOS_TIME=3m: the long runs of the reliability suite, which
# stop by themselves after about CHAOS_TIME plus the servers' start-up: the
# simulation, OS processes on MinIO and Ceph RGW through fault proxies, and
# a distributed MinIO, each with plain and queue locks
# (integration/scripts/chaos.sh). At least 2m.
CHAOS_TIME ?= 10m
chaos:
	CHAOS_TIME=$(CHAOS_TIME) integration/scripts/chaos.sh

# make fuzz FUZZ_TIME=10m: each fuzz target for that long (make test: 5s).
# An input that fails is saved under the package's testdata/fuzz: commit it,
# it is a regression test from then on.
FUZZ_TIME ?= 1m
FUZZ_TARGETS = .:FuzzDecodeLock ./file:FuzzParse ./file:FuzzTornWrite \
	./s3:FuzzDSN ./minio:FuzzDSN ./gcs:FuzzDSN ./azblob:FuzzDSN ./file:FuzzDSN ./mem:FuzzDSN
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		$(GO) test -run='^$$' -fuzz="^$${t##*:}$$" -fuzztime=$(FUZZ_TIME) $${t%%:*} || exit 1; \
	done

# Installs and starts Docker if needed (as root on Debian), builds the server
# images when their recipe changed, runs the tests, removes the containers.
integration:
	integration/scripts/test.sh

bench:
	$(GO) test -run='^$$' -bench=. -benchmem ./...
