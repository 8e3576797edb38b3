# Multi-tenant must-shows: isolation and refusals, a 30 s backend outage under load (breaker,
# durable queue, exactly-once delivery, the other tenant unaffected), kill -9 mid-outage.
if(TARGET profilis-collector)
  foreach(case tenants tenants_tls breaker crash reload)
    add_test(NAME integration.tenants_${case}
      COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/tenants_e2e.py ${case}
        --bin ${CMAKE_BINARY_DIR}/bin --src ${CMAKE_SOURCE_DIR})
    set_tests_properties(integration.tenants_${case} PROPERTIES LABELS integration TIMEOUT 240)
  endforeach()
  # The outage test measures delivery rates: it runs alone, not next to other load tests.
  set_tests_properties(integration.tenants_breaker PROPERTIES RUN_SERIAL TRUE)
endif()
