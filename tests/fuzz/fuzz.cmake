# libFuzzer targets, built only with clang (gcc has no libFuzzer). Each target is one line:
#
#   pf_add_fuzz(<name> <source>... [LIBS <library>...])
#
# It builds fuzz_<name> from the listed sources (relative to tests/fuzz/, or absolute: add
# collector/*.c files there when a harness needs them; collector/ is on the include path, and
# LIBS names what those sources need besides the SDK, e.g. PkgConfig::YAML) linked against
# profilis_fuzz, a copy of the library compiled with coverage (-fsanitize=fuzzer-no-link) plus
# ASan+UBSan, and registers the ctest entry fuzz.<name> (label "fuzz") that fuzzes for 20 s
# starting from the committed seeds in tests/fuzz/corpus/<name>/ (with tests/fuzz/<name>.dict
# as dictionary when present). New inputs go to the build tree, never to the seed folder.
if(NOT CMAKE_C_COMPILER_ID MATCHES "Clang" OR PROFILIS_TSAN)
  return()
endif()

include(CheckCSourceCompiles)
set(CMAKE_REQUIRED_FLAGS "-fsanitize=fuzzer")
set(CMAKE_REQUIRED_LINK_OPTIONS "-fsanitize=fuzzer")
check_c_source_compiles("
#include <stddef.h>
#include <stdint.h>
int LLVMFuzzerTestOneInput(const uint8_t *d, size_t n) { return (int)(n && d[0] == 1); }"
  PF_HAVE_LIBFUZZER)
unset(CMAKE_REQUIRED_FLAGS)
unset(CMAKE_REQUIRED_LINK_OPTIONS)
if(NOT PF_HAVE_LIBFUZZER)
  message(STATUS "libFuzzer not available: fuzz targets skipped")
  return()
endif()

set(PF_FUZZ_SAN -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer)

# The library once more, instrumented for coverage, shared by every fuzz target.
add_library(profilis_fuzz STATIC ${PROFILIS_SRCS})
profilis_setup_lib(profilis_fuzz)
set_target_properties(profilis_fuzz PROPERTIES OUTPUT_NAME profilis_fuzz
  ARCHIVE_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)
target_compile_options(profilis_fuzz PRIVATE -fsanitize=fuzzer-no-link ${PF_FUZZ_SAN})
target_include_directories(profilis_fuzz INTERFACE ${PROFILIS_PRIVATE_INCLUDES})
target_link_libraries(profilis_fuzz INTERFACE PkgConfig::NGHTTP2 PkgConfig::OPENSSL PkgConfig::ZLIB)
# Decoder targets need the generated OTLP code; linking it here also gives the library its headers.
target_link_libraries(profilis_fuzz PUBLIC profilis_proto)

set(PF_FUZZ_DIR ${CMAKE_CURRENT_LIST_DIR})

function(pf_add_fuzz name)
  cmake_parse_arguments(PARSE_ARGV 1 PF "" "" "LIBS")
  set(srcs)
  foreach(s ${PF_UNPARSED_ARGUMENTS})
    if(IS_ABSOLUTE ${s})
      list(APPEND srcs ${s})
    else()
      list(APPEND srcs ${PF_FUZZ_DIR}/${s})
    endif()
  endforeach()
  set(tgt fuzz_${name})
  add_executable(${tgt} ${srcs})
  target_compile_options(${tgt} PRIVATE -fsanitize=fuzzer ${PF_FUZZ_SAN})
  target_link_options(${tgt} PRIVATE -fsanitize=fuzzer ${PF_FUZZ_SAN})
  target_link_libraries(${tgt} PRIVATE profilis_fuzz ${PF_LIBS})
  target_include_directories(${tgt} PRIVATE ${CMAKE_SOURCE_DIR}/collector)
  set_target_properties(${tgt} PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/fuzz)

  set(work ${CMAKE_BINARY_DIR}/fuzz/corpus-${name})
  set(artifacts ${CMAKE_BINARY_DIR}/fuzz/artifacts-${name})
  file(MAKE_DIRECTORY ${work} ${artifacts})
  set(dict)
  if(EXISTS ${PF_FUZZ_DIR}/${name}.dict)
    set(dict -dict=${PF_FUZZ_DIR}/${name}.dict)
  endif()
  # The first corpus folder receives new inputs, so it is the build-tree one.
  add_test(NAME fuzz.${name}
    COMMAND ${tgt} -max_total_time=20 -timeout=10 -rss_limit_mb=2048 -print_final_stats=1
            ${dict} -artifact_prefix=${artifacts}/ ${work} ${PF_FUZZ_DIR}/corpus/${name}
    WORKING_DIRECTORY ${artifacts})
  set_tests_properties(fuzz.${name} PROPERTIES LABELS fuzz TIMEOUT 90)
endfunction()

# ---- targets: one line each ----
pf_add_fuzz(propagation fuzz_propagation.c)
pf_add_fuzz(config fuzz_config.c)
pf_add_fuzz(collector_config fuzz_collector_config.c ${CMAKE_SOURCE_DIR}/collector/config.c ${CMAKE_SOURCE_DIR}/collector/yaml_util.c LIBS PkgConfig::YAML)
set(PF_DECODE_SRCS ${CMAKE_SOURCE_DIR}/collector/chunk.c ${CMAKE_SOURCE_DIR}/collector/decode_proto.c
  ${CMAKE_SOURCE_DIR}/collector/decode_json.c ${CMAKE_SOURCE_DIR}/collector/json_parse.c)
pf_add_fuzz(decode_proto fuzz_decode_proto.c ${PF_DECODE_SRCS})
pf_add_fuzz(decode_json fuzz_decode_json.c ${PF_DECODE_SRCS})
pf_add_fuzz(dqueue fuzz_dqueue.c ${CMAKE_SOURCE_DIR}/collector/dqueue.c LIBS PkgConfig::LMDB)
pf_add_fuzz(grpc_frame fuzz_grpc_frame.c)
pf_add_fuzz(grpc_response fuzz_grpc_response.c)
# The OTLP/HTTP path end to end: the whole collector core (receiver, decoders, pipeline), instrumented.
set(PF_COLLECTOR_SRCS ${PC_SRCS})
list(FILTER PF_COLLECTOR_SRCS EXCLUDE REGEX "/main\\.c$")
pf_add_fuzz(http_request fuzz_http_request.c ${PF_COLLECTOR_SRCS} LIBS PkgConfig::MHD
  PkgConfig::YAML PkgConfig::GNUTLS PkgConfig::LMDB m)
# The OTLP/gRPC path: the collector's own HTTP/2 server, connections fed without sockets.
pf_add_fuzz(grpc_request fuzz_grpc_request.c ${PF_COLLECTOR_SRCS} LIBS PkgConfig::MHD
  PkgConfig::YAML PkgConfig::GNUTLS PkgConfig::LMDB m)
