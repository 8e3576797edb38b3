# Collector end-to-end tests with the OpenTelemetry JS SDK, Python grpcio and Prometheus.
if(TARGET profilis-collector)
  set(OTEL_JS_DIR ${CMAKE_BINARY_DIR}/otel-js)
  add_test(NAME setup.otel_js
    COMMAND sh -c "mkdir -p ${OTEL_JS_DIR} && cp ${CMAKE_CURRENT_LIST_DIR}/otel-js/package.json ${CMAKE_CURRENT_LIST_DIR}/otel-js/package-lock.json ${OTEL_JS_DIR}/ && cd ${OTEL_JS_DIR} && npm ci --no-audit --no-fund --loglevel=error")
  set_tests_properties(setup.otel_js PROPERTIES FIXTURES_SETUP otel_js LABELS integration TIMEOUT 600)
  foreach(case js_interop sdk_to_otlp prometheus overload burst_release)
    add_test(NAME integration.collector_${case}
      COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/collector_e2e.py ${case}
        --bin ${CMAKE_BINARY_DIR}/bin --src ${CMAKE_SOURCE_DIR} --node-modules ${OTEL_JS_DIR}/node_modules)
    set_tests_properties(integration.collector_${case} PROPERTIES LABELS integration TIMEOUT 180)
  endforeach()
  set_tests_properties(integration.collector_js_interop PROPERTIES FIXTURES_REQUIRED otel_js)
endif()
