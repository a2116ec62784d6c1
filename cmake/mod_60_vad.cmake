# Silero VAD v6 in plain C (infer/vad.c): ONNX -> HDF5 conversion, forward pass, and
# faster-whisper's speech-segment and chunking rules.
add_library(vs_vad STATIC infer/vad.c)
target_link_libraries(vs_vad PUBLIC vs_base)
# The inner loops are axpys over contiguous outputs: -O3 vectorises them without reordering any
# sum (no -ffast-math), so results do not depend on the vector width.
set_source_files_properties(infer/vad.c PROPERTIES COMPILE_OPTIONS "-O3")

if(VS_BUILD_TESTS)
  add_executable(test_vad tests/test_vad.c)
  target_link_libraries(test_vad PRIVATE vs_vad)
  add_test(NAME vad COMMAND test_vad ${CMAKE_SOURCE_DIR}/tests/helpers/vad_reference.py)
  set_tests_properties(vad PROPERTIES LABELS "unit;model" TIMEOUT 600)
endif()
