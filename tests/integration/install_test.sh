#!/usr/bin/env bash
# integration.install: `cmake --install` the build into a temporary prefix, then build
# examples/quickstart.c against the installed copy twice, with pkg-config and with a small CMake
# project using find_package(Profilis), and run both (OTEL_TRACES_EXPORTER=none) expecting 0.
# Usage: install_test.sh BUILD_DIR SOURCE_DIR   (env: CC, PF_EXTRA_CFLAGS for sanitizer builds)
set -euo pipefail

build=$1
src=$2
cc=${CC:-cc}
extra=${PF_EXTRA_CFLAGS:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
prefix=$tmp/prefix
fail() { echo "FAIL: $*" >&2; exit 1; }

cmake --install "$build" --prefix "$prefix" >"$tmp/install.log" || { cat "$tmp/install.log"; fail "cmake --install"; }
for f in include/profilis/profilis.h include/profilis/trace.h; do
  [ -f "$prefix/$f" ] || fail "$f not installed"
done
so=$(find "$prefix" -name 'libprofilis.so' | head -n 1)
pc=$(find "$prefix" -name 'profilis.pc' | head -n 1)
[ -n "$so" ] || fail "libprofilis.so not installed"
[ -n "$pc" ] || fail "profilis.pc not installed"
libdir=$(dirname "$so")
# Internal headers stay private.
[ -z "$(find "$prefix" -name 'pf_*.h')" ] || fail "internal pf_*.h headers were installed"

# 1. pkg-config, with the strictest flags a user might build with.
export PKG_CONFIG_PATH
PKG_CONFIG_PATH=$(dirname "$pc")
pkg_flags=$(pkg-config --cflags --libs profilis) || fail "pkg-config --cflags --libs profilis"
echo "pkg-config: $pkg_flags"
[[ $pkg_flags == *"-I$prefix/"* ]] || fail "pkg-config does not point into the install prefix"
# shellcheck disable=SC2086
"$cc" -std=gnu11 -Wall -Wextra -Werror $extra -o "$tmp/qs-pkgconfig" "$src/examples/quickstart.c" \
  $pkg_flags || fail "building quickstart with pkg-config"

# 2. CMake package.
mkdir "$tmp/consumer"
cp "$src/examples/quickstart.c" "$tmp/consumer/"
cat >"$tmp/consumer/CMakeLists.txt" <<'CM'
cmake_minimum_required(VERSION 3.25)
project(profilis_consumer C)
find_package(Profilis 0.1 REQUIRED)
add_executable(quickstart quickstart.c)
target_compile_options(quickstart PRIVATE -Wall -Wextra -Werror)
target_link_libraries(quickstart PRIVATE Profilis::profilis)
CM
cmake -S "$tmp/consumer" -B "$tmp/consumer-build" -DCMAKE_PREFIX_PATH="$prefix" \
  -DCMAKE_C_COMPILER="$cc" -DCMAKE_C_FLAGS="$extra" -DCMAKE_EXE_LINKER_FLAGS="$extra" \
  >"$tmp/cmake.log" 2>&1 || { cat "$tmp/cmake.log"; fail "configuring a find_package(Profilis) project"; }
cmake --build "$tmp/consumer-build" >"$tmp/build.log" 2>&1 || { cat "$tmp/build.log"; fail "building it"; }

# 3. Both run against the installed library.
for exe in "$tmp/qs-pkgconfig" "$tmp/consumer-build/quickstart"; do
  used=$(LD_LIBRARY_PATH=$libdir ldd "$exe" | awk '/libprofilis/ { print $3 }')
  [ "$(realpath "$used")" = "$(realpath "$so")" ] || fail "$exe loads $used, not the installed $so"
  OTEL_TRACES_EXPORTER=none LD_LIBRARY_PATH=$libdir "$exe" || fail "$exe exited $?"
done
echo "PASS: install"
