# Model: the HDF5 model file (load, convert from CTranslate2 / Hugging Face) and the tokenizer.
add_library(vs_tokenizer STATIC src/tokenizer.c)
target_link_libraries(vs_tokenizer PUBLIC vs_base)

add_library(vs_model STATIC src/model.c src/model_common.c src/ct2.c src/safetensors.c
                            src/convert.c)
target_link_libraries(vs_model PUBLIC vs_tokenizer vs_vad vs_base)

if(VS_BUILD_TESTS)
  # Helpers run from the test venv; the real tiny.en comes from $VOXSHARD_TINY_EN (a folder).
  set(VS_VENV_PYTHON "$ENV{HOME}/.cache/voxshard/venv/bin/python")
  add_executable(test_model tests/test_model.c)
  target_link_libraries(test_model PRIVATE vs_model)
  add_test(NAME model COMMAND test_model ${CMAKE_SOURCE_DIR}/tests/helpers)
  set_tests_properties(model PROPERTIES LABELS "unit;model" TIMEOUT 600)

  add_executable(test_tokenizer tests/test_tokenizer.c)
  target_link_libraries(test_tokenizer PRIVATE vs_model)
  add_test(NAME tokenizer COMMAND test_tokenizer ${CMAKE_SOURCE_DIR}/tests/helpers)
  set_tests_properties(tokenizer PROPERTIES LABELS "unit;model" TIMEOUT 600)
endif()
