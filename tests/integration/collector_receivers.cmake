# Collector receivers and admin port against the real binary: OTLP/gRPC (grpcio client),
# OTLP/HTTP (protobuf, JSON, gzip, bad input, huge bodies), refusals with retry hints,
# connection abuse, TLS and mutual TLS (certificates made with the openssl CLI), SIGTERM under
# load. Sanitizer builds keep freed memory resident, so their RSS bounds are scaled.
if(TARGET profilis-collector)
  set(PC_RECV_TEST_FLAGS)
  if(PROFILIS_SANITIZE)
    list(APPEND PC_RECV_TEST_FLAGS --sanitized)
  endif()
  foreach(case grpc grpc_limits http refuse abuse tls sigterm admin)
    add_test(NAME integration.collector_receivers_${case}
      COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/collector_receivers.py ${case}
        --collector $<TARGET_FILE:profilis-collector>
        --proto-dir ${CMAKE_SOURCE_DIR}/proto ${PC_RECV_TEST_FLAGS})
    set_tests_properties(integration.collector_receivers_${case} PROPERTIES
      LABELS integration TIMEOUT 120)
  endforeach()
endif()
