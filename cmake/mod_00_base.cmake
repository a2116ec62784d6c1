# Base: errors, logging, configuration. Every module links vs_base.
add_library(vs_base STATIC src/log.c src/config.c src/fsutil.c)
target_link_libraries(vs_base PUBLIC vs_deps)

if(VS_BUILD_TESTS)
  add_executable(test_config tests/test_config.c)
  target_link_libraries(test_config PRIVATE vs_base)
  add_test(NAME config COMMAND test_config ${CMAKE_SOURCE_DIR}/tests/data)
  set_tests_properties(config PROPERTIES LABELS "unit")
endif()
