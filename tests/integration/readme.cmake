add_test(NAME integration.readme_env_doc
  COMMAND ${CMAKE_CURRENT_LIST_DIR}/readme_check.sh ${CMAKE_SOURCE_DIR}/README.md env-doc
    $<TARGET_FILE:test_config> --env-doc)
set_tests_properties(integration.readme_env_doc PROPERTIES LABELS integration)
if(TARGET pc_test_config)
  add_test(NAME integration.readme_config_doc
    COMMAND ${CMAKE_CURRENT_LIST_DIR}/readme_check.sh ${CMAKE_SOURCE_DIR}/README.md config-doc
      $<TARGET_FILE:pc_test_config> --config-doc)
  set_tests_properties(integration.readme_config_doc PROPERTIES LABELS integration)
endif()
