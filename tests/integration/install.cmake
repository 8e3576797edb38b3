# integration.install: installs this build into a temporary prefix and builds the quickstart
# against the installed copy with pkg-config and with find_package(Profilis).
set(PF_INSTALL_TEST_FLAGS "")
if(PROFILIS_SANITIZE)
  set(PF_INSTALL_TEST_FLAGS "-fsanitize=address,undefined")
endif()
add_test(NAME integration.install
  COMMAND ${CMAKE_COMMAND} -E env CC=${CMAKE_C_COMPILER} "PF_EXTRA_CFLAGS=${PF_INSTALL_TEST_FLAGS}"
          ${CMAKE_CURRENT_LIST_DIR}/install_test.sh ${CMAKE_BINARY_DIR} ${CMAKE_SOURCE_DIR})
set_tests_properties(integration.install PROPERTIES LABELS integration TIMEOUT 180)
