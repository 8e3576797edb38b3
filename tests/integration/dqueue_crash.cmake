# Crash safety of the durable queue: tests/integration/dqueue_crash.c runs itself as a driver
# that pushes and acks records, kills it with SIGKILL at random moments (12 rounds, half with
# no_sync) and checks after each reopen that nothing whose push returned success was lost,
# duplicated or reordered.
if(TARGET profilis_collector_core)
  add_executable(dqueue_crash ${CMAKE_CURRENT_LIST_DIR}/dqueue_crash.c)
  target_link_libraries(dqueue_crash PRIVATE profilis_collector_core)
  set_target_properties(dqueue_crash PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  add_test(NAME integration.dqueue_crash COMMAND dqueue_crash run 12)
  set_tests_properties(integration.dqueue_crash PROPERTIES LABELS integration TIMEOUT 120)
endif()
