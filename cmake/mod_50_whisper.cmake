# Compute kernels (reference and fast CPU backends) and the Whisper network written against them.
add_library(vs_kernels STATIC kernels/ref_ops.c kernels/cpu_ops.c kernels/vecmath.c)
target_link_libraries(vs_kernels PUBLIC vs_base)
# The fast path's loops (attention rows, softmax, im2col, bf16 conversion) are written to be
# vectorised; -O3 lets GCC do it without -march, and attend_row carries its own target clones.
set_source_files_properties(kernels/cpu_ops.c kernels/vecmath.c PROPERTIES COMPILE_OPTIONS "-O3")

add_library(vs_whisper STATIC infer/whisper.c)
target_link_libraries(vs_whisper PUBLIC vs_kernels vs_model vs_base)

add_executable(vs_bench_encoder bench/bench_encoder.c)
target_link_libraries(vs_bench_encoder PRIVATE vs_whisper)

if(VS_BUILD_TESTS)
  add_executable(test_ops tests/test_ops.c)
  target_link_libraries(test_ops PRIVATE vs_kernels)
  add_test(NAME ops COMMAND test_ops)
  set_tests_properties(ops PROPERTIES LABELS "unit" TIMEOUT 600)

  add_executable(test_vecmath tests/test_vecmath.c)
  target_link_libraries(test_vecmath PRIVATE vs_kernels)
  add_test(NAME vecmath COMMAND test_vecmath)
  set_tests_properties(vecmath PROPERTIES LABELS "unit")

  # CTranslate2's outputs for the golden clip, made by the venv's Python at test time; the venv
  # is found at run time ($VOXSHARD_CACHE, default ~/.cache/voxshard) like every helper's.
  add_test(NAME whisper_golden_data
           COMMAND sh -c "exec \"\${VOXSHARD_CACHE:-$HOME/.cache/voxshard}/venv/bin/python\" \"$0\" \"$1\""
                   ${CMAKE_SOURCE_DIR}/tests/helpers/ct2_golden.py ${CMAKE_BINARY_DIR}/whisper-golden)
  set_tests_properties(whisper_golden_data PROPERTIES LABELS "unit;model" TIMEOUT 300
                       FIXTURES_SETUP whisper_golden)
  add_executable(test_whisper_golden tests/test_whisper_golden.c)
  target_link_libraries(test_whisper_golden PRIVATE vs_whisper)
  add_test(NAME whisper_golden COMMAND test_whisper_golden ${CMAKE_BINARY_DIR}/whisper-golden)
  set_tests_properties(whisper_golden PROPERTIES LABELS "unit;model" TIMEOUT 900
                       FIXTURES_REQUIRED whisper_golden SKIP_RETURN_CODE 77)
endif()
