# Audio decoding (libsndfile + libsoxr) and Whisper's log-mel front end (FFTW3).
add_library(vs_audio STATIC src/audio.c)
target_link_libraries(vs_audio PUBLIC vs_base)
add_library(vs_mel STATIC kernels/mel.c)
target_link_libraries(vs_mel PUBLIC vs_base)
set_source_files_properties(kernels/mel.c PROPERTIES COMPILE_OPTIONS "-O3")

if(VS_BUILD_TESTS)
  add_executable(test_audio tests/test_audio.c)
  target_link_libraries(test_audio PRIVATE vs_audio)
  add_test(NAME audio COMMAND test_audio)
  set_tests_properties(audio PROPERTIES LABELS "unit")

  add_executable(test_mel tests/test_mel.c)
  target_link_libraries(test_mel PRIVATE vs_mel vs_audio)
  add_test(NAME mel COMMAND test_mel ${CMAKE_SOURCE_DIR}/tests/helpers/mel_reference.py
                                     ${CMAKE_CURRENT_BINARY_DIR}/mel-ref)
  set_tests_properties(mel PROPERTIES LABELS "unit")
endif()

add_executable(vs_bench_frontend bench/frontend_bench.c)
target_link_libraries(vs_bench_frontend PRIVATE vs_audio vs_mel)
