# TLS refusals end to end (tls_refusals.py): expired server certificate, untrusted CA, wrong host
# name and a missing client certificate under mTLS, each refused with a clear error, for the SDK
# exporter against the collector's gRPC receiver and for Python ssl against its HTTP receiver.
if(TARGET profilis-collector AND TARGET sdk_driver)
  add_test(NAME integration.tls_refusals
    COMMAND /usr/bin/python3 ${CMAKE_CURRENT_LIST_DIR}/tls_refusals.py
      --collector $<TARGET_FILE:profilis-collector> --driver $<TARGET_FILE:sdk_driver>)
  set_tests_properties(integration.tls_refusals PROPERTIES LABELS integration TIMEOUT 120)
endif()
