# Fault injection against the real collector binary (tests/integration/faults.py): disk full and
# read-only directories (tmpfs mounts; skipped with exit 77 when mounting is not permitted), a
# slow backend, backend statuses and garbage, connection resets, and FAKE wall-clock jumps made
# by the LD_PRELOAD shim clockjump.c (the machine's clock is never changed).
if(TARGET profilis-collector)
  add_library(clockjump MODULE ${CMAKE_CURRENT_LIST_DIR}/clockjump.c)
  target_link_libraries(clockjump PRIVATE ${CMAKE_DL_LIBS})
  set_target_properties(clockjump PROPERTIES PREFIX "" LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
  foreach(case disk_full_jsonl disk_full_queue read_only slow_backend partial_success
          exhausted_retry_info exhausted_no_retry_info unavailable garbage conn_reset clock_jump)
    add_test(NAME integration.faults_${case}
      COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/faults.py ${case}
        --bin ${CMAKE_BINARY_DIR}/bin --src ${CMAKE_SOURCE_DIR} --clockjump $<TARGET_FILE:clockjump>)
    set_tests_properties(integration.faults_${case} PROPERTIES LABELS integration TIMEOUT 60
      SKIP_RETURN_CODE 77)
  endforeach()
endif()
