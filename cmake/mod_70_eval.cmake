# Transcript outputs (JSONL, SRT, WebVTT, CTM, STM), Whisper's text normalisers, and scoring
# (`voxshard eval`: WER/CER with sclite-compatible alignment).
add_library(vs_eval STATIC src/outputs.c src/normalizer.c src/eval.c)
target_link_libraries(vs_eval PUBLIC vs_base)

if(VS_BUILD_TESTS)
  add_executable(test_normalizer tests/test_normalizer.c)
  target_link_libraries(test_normalizer PRIVATE vs_eval)
  add_test(NAME normalizer COMMAND test_normalizer ${CMAKE_SOURCE_DIR}/tests/helpers/norm_ref.py
           ${CMAKE_BINARY_DIR}/test-eval/normalizer)
  set_tests_properties(normalizer PROPERTIES LABELS "unit" TIMEOUT 120)

  add_executable(test_outputs tests/test_outputs.c)
  target_link_libraries(test_outputs PRIVATE vs_eval)
  add_test(NAME outputs COMMAND test_outputs ${CMAKE_BINARY_DIR}/test-eval/outputs)
  set_tests_properties(outputs PROPERTIES LABELS "unit")

  # WER/S/D/I against NIST sclite (Debian sctk) on pocketsphinx-testdata transcriptions.
  add_executable(test_eval tests/test_eval.c)
  target_link_libraries(test_eval PRIVATE vs_eval)
  add_test(NAME eval COMMAND test_eval ${CMAKE_BINARY_DIR}/test-eval/eval
           /usr/share/pocketsphinx/test/data/librivox/transcription
           /usr/share/pocketsphinx/test/data/cards/cards.transcription)
  set_tests_properties(eval PROPERTIES LABELS "unit" TIMEOUT 300)
endif()

add_executable(vs_eval_cli tests/eval_cli.c)
target_link_libraries(vs_eval_cli PRIVATE vs_eval)
