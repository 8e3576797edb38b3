# Allocation-failure sweep of the adaptive sampler (tests/unit/collector/failmalloc_sampler.c).
# Its own executable because it replaces malloc/calloc/realloc/free at link time (-Wl,--wrap)
# with counting versions that fail the i-th allocation.
if(TARGET profilis_collector_core)
  add_executable(pc_failmalloc_sampler ${CMAKE_SOURCE_DIR}/tests/unit/collector/failmalloc_sampler.c)
  target_include_directories(pc_failmalloc_sampler PRIVATE ${CMAKE_SOURCE_DIR}/tests/unit
    ${CMAKE_SOURCE_DIR}/tests/unit/collector)
  target_link_libraries(pc_failmalloc_sampler PRIVATE profilis_collector_core profilis_proto
    PkgConfig::CMOCKA)
  target_link_options(pc_failmalloc_sampler PRIVATE
    -Wl,--wrap=malloc,--wrap=calloc,--wrap=realloc,--wrap=free)
  set_target_properties(pc_failmalloc_sampler PROPERTIES RUNTIME_OUTPUT_DIRECTORY
    ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME unit.collector.failmalloc_sampler COMMAND pc_failmalloc_sampler)
  set_tests_properties(unit.collector.failmalloc_sampler PROPERTIES LABELS unit TIMEOUT 120)
endif()
