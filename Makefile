# Thin wrapper over CMake. `make test` goes from a fresh Debian 12 machine to a full test run.
JOBS ?= $(shell nproc)
BUILD ?= build
ASAN_BUILD ?= build-asan
TSAN_BUILD ?= build-tsan
CMAKE_FLAGS ?=

.PHONY: all deps build asan tsan lint test test-unit run bench fuzz soak install clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

asan: deps
	@cmake -S . -B $(ASAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPROFILIS_SANITIZE=ON -DCMAKE_C_COMPILER=clang $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(ASAN_BUILD) -j $(JOBS)

# The threaded suites again under ThreadSanitizer (clang), label tsan (tests/tsan.cmake).
tsan: deps
	@cmake -S . -B $(TSAN_BUILD) -DCMAKE_BUILD_TYPE=Debug -DPROFILIS_TSAN=ON -DCMAKE_C_COMPILER=clang $(CMAKE_FLAGS) >/dev/null
	@cmake --build $(TSAN_BUILD) -j $(JOBS) --target tsan_suites
	@cd $(TSAN_BUILD) && ctest --output-on-failure -j $(JOBS) -L tsan --timeout 600

# cppcheck and clang-tidy with the committed configurations (scripts/lint.sh); any finding fails.
lint: deps
	@cmake -S . -B build-lint -DCMAKE_BUILD_TYPE=Debug -DCMAKE_C_COMPILER=clang -DCMAKE_EXPORT_COMPILE_COMMANDS=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-lint -j $(JOBS) --target profilis_proto >/dev/null
	@scripts/lint.sh all build-lint

# Every suite in the release build, then the unit and fuzz suites and the integration tests
# labelled asan (tests/CMakeLists.txt) again under ASan+UBSan (clang), then the threaded suites
# under ThreadSanitizer (about 1 minute from scratch on 2 cores).
test: build asan
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) --timeout 600
	@cd $(ASAN_BUILD) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS) -L "unit|fuzz|asan" --timeout 600
	@$(MAKE) --no-print-directory tsan

test-unit: build
	@cd $(BUILD) && ctest --output-on-failure -j $(JOBS) -L unit

run: build
	@scripts/run.sh $(BUILD)

bench: build
	@$(BUILD)/bin/profilis-bench

fuzz: deps
	@scripts/fuzz.sh

# The collector under steady load with two tenants, sampling and a flapping backend for
# SOAK_SECONDS (default 10 minutes), then crash / RSS / fd / exact-accounting checks
# (tests/integration/soak.py; a 60 s run is ctest integration.soak).
SOAK_SECONDS ?= 600
soak: build
	@/usr/bin/python3 tests/integration/soak.py --bin $(BUILD)/bin --src . --seconds $(SOAK_SECONDS)

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(TSAN_BUILD) build-lint
