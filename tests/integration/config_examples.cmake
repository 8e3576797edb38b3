# Every example configuration in deploy/examples/ passes validation (through pc_config_load, as
# `profilis-collector validate` does), and deploy/examples/default.yaml is the embedded default.
# A second entry makes sure the checker itself fails on a file that is not a valid config.
if(NOT TARGET profilis_collector_core)
  return()
endif()
add_executable(pc_config_check ${CMAKE_CURRENT_LIST_DIR}/config_check.c)
target_link_libraries(pc_config_check PRIVATE profilis_collector_core)
set_target_properties(pc_config_check PROPERTIES RUNTIME_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/tests)

file(GLOB PC_CONFIG_EXAMPLES CONFIGURE_DEPENDS ${CMAKE_SOURCE_DIR}/deploy/examples/*.yaml)
add_test(NAME integration.config_examples
  COMMAND pc_config_check --same-as-default ${CMAKE_SOURCE_DIR}/deploy/examples/default.yaml
          ${PC_CONFIG_EXAMPLES})
set_tests_properties(integration.config_examples PROPERTIES LABELS integration TIMEOUT 60)

# This very file is YAML-readable text but no configuration: the check must refuse it.
add_test(NAME integration.config_check_refuses COMMAND pc_config_check ${CMAKE_CURRENT_LIST_FILE})
set_tests_properties(integration.config_check_refuses PROPERTIES LABELS integration TIMEOUT 60
  WILL_FAIL TRUE)
