# The loadbalancing exporter: its unit test exports to tests/integration/otlp_sink.py (Python
# grpcio), and loadbalance.py runs the collector in front of three such sinks.
if(TARGET pc_test_exp_loadbalance)
  target_compile_definitions(pc_test_exp_loadbalance PRIVATE
    PF_SINK_PY="${CMAKE_SOURCE_DIR}/tests/integration/otlp_sink.py"
    PF_PROTO_DIR="${CMAKE_SOURCE_DIR}/proto")
endif()
if(TARGET profilis-collector AND TARGET profilis-loadgen)
  add_test(NAME integration.loadbalance
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/loadbalance.py
      --bin ${CMAKE_BINARY_DIR}/bin --src ${CMAKE_SOURCE_DIR})
  set_tests_properties(integration.loadbalance PROPERTIES LABELS integration TIMEOUT 180)
endif()
