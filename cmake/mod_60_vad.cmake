# Silero VAD v6 in plain C (infer/vad.c): ONNX -> HDF5 conversion, forward pass, and
# faster-whisper's speech-segment and chunking rules.
add_library(vs_vad STATIC infer/vad.c)
target_link_libraries(vs_vad PUBLIC vs_base)
# The forward pass sums every output in a fixed order whatever the block size (see gemm in vad.c):
# no -ffast-math, and -ffp-contract=off so that the plain-C path never fuses a multiply-add on
# some loops only (the AVX2 path fuses them all, explicitly). -fno-trapping-math changes no
# result; it lets the LSTM cell's clamps (vs_vec_expf) become selects, so that loop vectorises.
set_source_files_properties(infer/vad.c PROPERTIES COMPILE_OPTIONS
                            "-O3;-ffp-contract=off;-fno-trapping-math")

if(VS_BUILD_TESTS)
  add_executable(test_vad tests/test_vad.c)
  target_link_libraries(test_vad PRIVATE vs_vad)
  add_test(NAME vad COMMAND test_vad ${CMAKE_SOURCE_DIR}/tests/helpers/vad_reference.py)
  set_tests_properties(vad PROPERTIES LABELS "unit;model" TIMEOUT 600)
endif()

# Throughput of vs_vad_probabilities on one thread (CPU seconds per audio minute).
add_executable(vs_bench_vad bench/vad_bench.c)
target_link_libraries(vs_bench_vad PRIVATE vs_vad vs_audio)
