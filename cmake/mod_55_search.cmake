# Search (greedy, sampling, beam, Whisper's logit rules, temperature fallback) and the long-form
# seek loop over whole files.
add_library(vs_search STATIC infer/search.c)
target_link_libraries(vs_search PUBLIC vs_tokenizer vs_kernels vs_base ZLIB::ZLIB)

# The front end's targets may come from a fragment included after this one: link them when they
# exist at generate time.
add_library(vs_longform STATIC infer/longform.c)
target_link_libraries(vs_longform PUBLIC vs_search vs_whisper $<TARGET_NAME_IF_EXISTS:vs_mel>
                      $<TARGET_NAME_IF_EXISTS:vs_audio> vs_base)

if(VS_BUILD_TESTS)
  add_executable(test_search tests/test_search.c)
  target_link_libraries(test_search PRIVATE vs_longform vs_search vs_model)
  add_test(NAME search COMMAND test_search)
  set_tests_properties(search PROPERTIES LABELS "unit" TIMEOUT 300)

  # The correctness gate against faster-whisper on the real tiny.en: needs the front end, so it
  # is defined once every fragment has run and only when vs_mel and vs_audio exist.
  function(vs_search_add_real_test)
    if(NOT (TARGET vs_mel AND TARGET vs_audio))
      message(STATUS "voxshard: transcribe_real test skipped (vs_mel / vs_audio not defined)")
      return()
    endif()
    add_executable(test_transcribe_real tests/test_transcribe_real.c)
    target_link_libraries(test_transcribe_real PRIVATE vs_longform vs_mel vs_audio vs_model vs_eval)
    # Reference transcripts: faster-whisper in the venv, made at test time into the build tree.
    add_test(NAME transcribe_real_reference
             COMMAND sh -c "exec \"\${VOXSHARD_CACHE:-$HOME/.cache/voxshard}/venv/bin/python\" \"$0\" \"$1\""
                     ${CMAKE_SOURCE_DIR}/tests/helpers/fw_transcribe.py
                     ${CMAKE_BINARY_DIR}/fw-transcripts)
    set_tests_properties(transcribe_real_reference PROPERTIES LABELS "model;slow" TIMEOUT 1200
                         FIXTURES_SETUP fw_transcripts)
    add_test(NAME transcribe_real COMMAND test_transcribe_real ${CMAKE_BINARY_DIR}/fw-transcripts)
    set_tests_properties(transcribe_real PROPERTIES LABELS "model;slow" TIMEOUT 3600
                         FIXTURES_REQUIRED fw_transcripts SKIP_RETURN_CODE 77)
  endfunction()
  cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL vs_search_add_real_test)
endif()
