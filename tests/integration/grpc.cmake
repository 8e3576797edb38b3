# gRPC client + OTLP exporter integration tests against tests/integration/otlp_sink.py, a real
# gRPC server (Python grpcio from Debian, run with /usr/bin/python3) on a free loopback port.
add_executable(test_grpc_client ${CMAKE_CURRENT_LIST_DIR}/test_grpc_client.c)
target_link_libraries(test_grpc_client PRIVATE profilis_static profilis_proto PkgConfig::CMOCKA)
target_include_directories(test_grpc_client PRIVATE ${CMAKE_CURRENT_LIST_DIR}/../unit)
target_compile_definitions(test_grpc_client PRIVATE
  PF_SINK_PY="${CMAKE_CURRENT_LIST_DIR}/otlp_sink.py" PF_PROTO_DIR="${CMAKE_SOURCE_DIR}/proto")
set_target_properties(test_grpc_client PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)
add_test(NAME integration.grpc_client COMMAND test_grpc_client)
set_tests_properties(integration.grpc_client PROPERTIES LABELS integration TIMEOUT 120)
target_link_libraries(test_grpc_client PRIVATE PkgConfig::NGHTTP2 Threads::Threads)
