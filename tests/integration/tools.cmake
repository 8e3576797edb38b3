# Integration tests that drive the tools and examples (tools_check.sh holds the assertions).
set(PF_TOOLS_CHECK ${CMAKE_CURRENT_LIST_DIR}/tools_check.sh)
set(PF_BIN_DIR ${CMAKE_BINARY_DIR}/bin)

foreach(mode bench quickstart demo loadgen)
  add_test(NAME integration.tools_${mode} COMMAND ${PF_TOOLS_CHECK} ${mode} ${PF_BIN_DIR})
  set_tests_properties(integration.tools_${mode} PROPERTIES LABELS integration TIMEOUT 120)
endforeach()
# Valgrind cannot run sanitizer-instrumented binaries; ASan covers those builds instead.
find_program(PF_VALGRIND valgrind)
if(PF_VALGRIND AND NOT PROFILIS_SANITIZE)
  add_test(NAME integration.valgrind COMMAND ${PF_TOOLS_CHECK} valgrind ${PF_BIN_DIR})
  set_tests_properties(integration.valgrind PROPERTIES LABELS integration TIMEOUT 180)
endif()
