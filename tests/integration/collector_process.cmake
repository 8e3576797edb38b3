# profilis-collector as a process: command line, validate, SIGTERM under load (nothing
# acknowledged is lost or duplicated), SIGHUP with bad and good configs. Driven by
# collector_process.py against the real binaries (collector + loadgen) on free loopback ports.
if(TARGET profilis-collector AND TARGET profilis-loadgen)
  foreach(case cli validate jsonlog sigterm sighup)
    add_test(NAME integration.collector_process_${case}
      COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/collector_process.py
        $<TARGET_FILE_DIR:profilis-collector> ${case})
    set_tests_properties(integration.collector_process_${case} PROPERTIES
      LABELS integration TIMEOUT 120)
  endforeach()
endif()
