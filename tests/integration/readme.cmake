add_test(NAME integration.readme_env_doc
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/readme_check.sh ${CMAKE_SOURCE_DIR}/README.md $<TARGET_FILE:test_config>)
set_tests_properties(integration.readme_env_doc PROPERTIES LABELS integration)
