# The soak test in its 60-second form (make soak runs it for 10 minutes): loadgen against the
# collector with two tenants, sampling and a flapping backend; checks crashes, RSS and fd growth
# and exact accounting. It measures RSS, so it runs alone.
if(TARGET profilis-collector AND TARGET profilis-loadgen)
  add_test(NAME integration.soak
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/soak.py --seconds 60
      --bin ${CMAKE_BINARY_DIR}/bin --src ${CMAKE_SOURCE_DIR})
  set_tests_properties(integration.soak PROPERTIES LABELS integration TIMEOUT 180 RUN_SERIAL TRUE)
endif()
