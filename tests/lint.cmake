# Static analysis as a test: lint.cppcheck (label lint) runs cppcheck over sdk/src, exporters and
# collector with the committed suppressions and fails on any finding. clang-tidy takes ~9 minutes
# for the tree on 2 cores, so it runs only in `make lint` (scripts/lint.sh).
find_program(PF_CPPCHECK cppcheck)
if(NOT PF_CPPCHECK)
  message(STATUS "cppcheck not found: lint.cppcheck skipped")
  return()
endif()
add_test(NAME lint.cppcheck
  COMMAND ${CMAKE_SOURCE_DIR}/scripts/lint.sh cppcheck ${CMAKE_BINARY_DIR})
set_tests_properties(lint.cppcheck PROPERTIES LABELS lint TIMEOUT 300)
