# Adaptive sampling end to end (issue 4): 10x the target from a hot operation plus a rare one
# over OTLP/HTTP JSON for 40 s; the kept rate settles within +-20% of the target, rare, error
# and rule traces are kept, every trace is complete, span metrics count every span sent.
if(TARGET profilis-collector)
  add_test(NAME integration.sampling_e2e
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/sampling_e2e.py
      --bin $<TARGET_FILE_DIR:profilis-collector>)
  set_tests_properties(integration.sampling_e2e PROPERTIES LABELS integration TIMEOUT 150)
endif()
