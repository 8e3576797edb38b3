# Allocation-failure sweep of the SDK (tests/unit/failmalloc_sdk.c): spans through a provider,
# W3C propagation, OTLP encoding and configuration. Its own executable because it replaces
# malloc/calloc/realloc/free/strdup at link time (-Wl,--wrap) with counting versions that fail
# the i-th allocation.
add_executable(pf_failmalloc_sdk ${CMAKE_SOURCE_DIR}/tests/unit/failmalloc_sdk.c)
target_include_directories(pf_failmalloc_sdk PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit)
target_link_libraries(pf_failmalloc_sdk PRIVATE profilis_static profilis_proto PkgConfig::CMOCKA)
target_link_options(pf_failmalloc_sdk PRIVATE
  -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free,--wrap=strdup)
set_target_properties(pf_failmalloc_sdk PROPERTIES RUNTIME_OUTPUT_DIRECTORY
  ${CMAKE_BINARY_DIR}/tests)
add_test(NAME unit.failmalloc_sdk COMMAND pf_failmalloc_sdk)
set_tests_properties(unit.failmalloc_sdk PROPERTIES LABELS unit TIMEOUT 120)
