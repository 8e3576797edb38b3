# The collector exporter tests (tests/unit/collector/test_exp_*.c, registered by
# collector/collector.cmake) talk to real peers: test_exp_otlp to tests/integration/otlp_sink.py
# (Python grpcio under /usr/bin/python3), test_exp_jsonl reads its files back with
# tests/unit/collector/jsonl_check.py. This file tells them where those scripts live.
if(TARGET pc_test_exp_otlp)
  target_compile_definitions(pc_test_exp_otlp PRIVATE
    PF_SINK_PY="${CMAKE_SOURCE_DIR}/tests/integration/otlp_sink.py"
    PF_PROTO_DIR="${CMAKE_SOURCE_DIR}/proto")
endif()
if(TARGET pc_test_exp_jsonl)
  target_compile_definitions(pc_test_exp_jsonl PRIVATE
    PC_JSONL_CHECK_PY="${CMAKE_SOURCE_DIR}/tests/unit/collector/jsonl_check.py"
    PF_PROTO_DIR="${CMAKE_SOURCE_DIR}/proto")
endif()
