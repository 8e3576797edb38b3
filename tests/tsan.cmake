# ThreadSanitizer stage (configure with -DPROFILIS_TSAN=ON, run by `make tsan`): the unit suites
# whose code crosses threads run again as ctest entries tsan.<suite>, label "tsan": the SDK span
# queue and ring, batch span processor and exporters, and the collector pipeline, durable queue,
# circuit breaker, metrics registry and resilient exporter wrapper. halt_on_error makes the
# first race fail the entry.
if(NOT PROFILIS_TSAN)
  return()
endif()

set(PF_TSAN_SUITES
  test_bsp test_span test_otlp_exporter test_jsonl_exporter test_console_exporter
  pc_test_pipeline pc_test_dqueue pc_test_breaker pc_test_metrics pc_test_resilient)
# Not test_spanmetrics: it asserts a per-span CPU cost that ThreadSanitizer's slowdown breaks.
# `make tsan` builds just these (target tsan_suites), not the whole tree.
add_custom_target(tsan_suites)
foreach(t ${PF_TSAN_SUITES})
  if(NOT TARGET ${t})
    continue()
  endif()
  add_dependencies(tsan_suites ${t})
  string(REGEX REPLACE "^(pc_)?test_" "" short ${t})
  add_test(NAME tsan.${short} COMMAND ${t})
  set_tests_properties(tsan.${short} PROPERTIES LABELS tsan TIMEOUT 300
    ENVIRONMENT "TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1:suppressions=${CMAKE_CURRENT_LIST_DIR}/tsan.supp")
endforeach()
