# SDK end-to-end tests: our SDK exporting to a Python grpcio OTLP receiver.
add_executable(sdk_driver ${CMAKE_CURRENT_LIST_DIR}/sdk_driver.c)
target_link_libraries(sdk_driver PRIVATE profilis_static)
set_target_properties(sdk_driver PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
foreach(case interop outage backpressure fork)
  add_test(NAME integration.sdk_${case}
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/sdk_e2e.py ${case}
      --driver $<TARGET_FILE:sdk_driver>
      --sink ${CMAKE_CURRENT_LIST_DIR}/otlp_sink.py
      --proto-dir ${CMAKE_SOURCE_DIR}/proto)
  set_tests_properties(integration.sdk_${case} PROPERTIES LABELS integration TIMEOUT 120)
endforeach()
