# Corpus input (directory trees, tar shards read in place, JSONL manifests) and the sharding plan.
add_library(vs_corpus STATIC src/corpus.c)
target_link_libraries(vs_corpus PUBLIC vs_audio vs_base)

add_library(vs_plan STATIC src/plan.c)
target_link_libraries(vs_plan PUBLIC vs_base)

if(VS_BUILD_TESTS)
  # The test corpus is generated at test time (espeak-ng, sox, pocketsphinx-testdata) into the
  # build tree, so the test needs nothing checked in but the generator script.
  add_executable(test_corpus tests/test_corpus.c)
  target_link_libraries(test_corpus PRIVATE vs_corpus)
  add_test(NAME corpus COMMAND test_corpus ${CMAKE_SOURCE_DIR}/tests/helpers/make_test_corpus.sh
           ${CMAKE_BINARY_DIR}/test-corpus)
  set_tests_properties(corpus PROPERTIES LABELS "unit" TIMEOUT 300)

  add_executable(test_plan tests/test_plan.c)
  target_link_libraries(test_plan PRIVATE vs_plan)
  add_test(NAME plan COMMAND test_plan)
  set_tests_properties(plan PROPERTIES LABELS "unit")
endif()
