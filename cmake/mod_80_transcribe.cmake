# The transcribe job: batched (VAD-chunk) engine and the MPI job around the search.
add_library(vs_transcribe STATIC infer/batched.c src/transcribe.c)
target_link_libraries(vs_transcribe PUBLIC vs_longform vs_search vs_whisper vs_vad vs_mel vs_audio
                                           vs_eval vs_prepare vs_corpus vs_plan vs_coll vs_model
                                           vs_base)

if(VS_BUILD_TESTS)
  # Real weights (scripts/fetch-models.sh makes them); VOXSHARD_MODEL_TINY_EN overrides.
  if(DEFINED ENV{VOXSHARD_MODEL_TINY_EN})
    set(VS_TINY_EN $ENV{VOXSHARD_MODEL_TINY_EN})
  else()
    set(VS_TINY_EN $ENV{HOME}/.cache/voxshard/models/tiny.en.h5)
  endif()
  set(VS_PY $ENV{HOME}/.cache/voxshard/venv/bin/python)
  set(VS_TT ${CMAKE_BINARY_DIR}/test-transcribe)
  set(VS_TCHECK ${CMAKE_SOURCE_DIR}/tests/helpers/transcribe_check.py)
  set(VS_MPIRUN_T mpirun --allow-run-as-root --oversubscribe)

  add_test(NAME transcribe_corpus COMMAND ${VS_PY} ${VS_TCHECK} make-corpus ${VS_TT}/corpus)
  set_tests_properties(transcribe_corpus PROPERTIES FIXTURES_SETUP transcribe_corpus
                       LABELS "mpi;model" TIMEOUT 300)

  # The same corpus on 1, 2 and 3 ranks: every file exactly once, identical transcripts. One file
  # per batch, in fp32, so that each file's arithmetic is the same whatever the rank count.
  set(VS_T_INPUTS ${VS_TT}/corpus/real/manifest.jsonl ${VS_TT}/corpus/real/shard.tar)
  foreach(np 1 2 3)
    add_test(NAME transcribe_np${np}_clean COMMAND ${CMAKE_COMMAND} -E rm -rf ${VS_TT}/np${np})
    set_tests_properties(transcribe_np${np}_clean PROPERTIES FIXTURES_SETUP transcribe_np${np}
                         LABELS "mpi;model")
    add_test(NAME transcribe_np${np}
             COMMAND ${VS_MPIRUN_T} -np ${np} $<TARGET_FILE:voxshard> transcribe
                     --model=${VS_TINY_EN} --out=${VS_TT}/np${np} --batch-size=1 --precision=fp32
                     --threads=1 --progress=log --progress-interval=2 ${VS_T_INPUTS})
    set_tests_properties(transcribe_np${np} PROPERTIES LABELS "mpi;model" TIMEOUT 600
                         FIXTURES_REQUIRED "transcribe_corpus;transcribe_np${np}"
                         FIXTURES_SETUP transcribe_outputs)
  endforeach()
  add_test(NAME transcribe_np_check
           COMMAND ${VS_PY} ${VS_TCHECK} check-np ${VS_TT}/np1 ${VS_TT}/np2 ${VS_TT}/np3
                   --corpus ${VS_TT}/corpus)
  set_tests_properties(transcribe_np_check PROPERTIES LABELS "mpi;model"
                       FIXTURES_REQUIRED "transcribe_corpus;transcribe_outputs")

  # The batched mode across world sizes: VAD chunks of many files share batches, yet each file's
  # transcript is the same on 1 and 3 ranks (one window per batch, fp32, as above).
  foreach(np 1 3)
    add_test(NAME transcribe_batched_np${np}_clean
             COMMAND ${CMAKE_COMMAND} -E rm -rf ${VS_TT}/batched-np${np})
    set_tests_properties(transcribe_batched_np${np}_clean PROPERTIES LABELS "mpi;model"
                         FIXTURES_SETUP transcribe_batched_np${np})
    add_test(NAME transcribe_batched_np${np}
             COMMAND ${VS_MPIRUN_T} -np ${np} $<TARGET_FILE:voxshard> transcribe --mode=batched
                     --model=${VS_TINY_EN} --out=${VS_TT}/batched-np${np} --batch-size=1
                     --precision=fp32 --threads=1 --progress=off ${VS_T_INPUTS})
    set_tests_properties(transcribe_batched_np${np} PROPERTIES LABELS "mpi;model" TIMEOUT 600
                         FIXTURES_REQUIRED "transcribe_corpus;transcribe_batched_np${np}"
                         FIXTURES_SETUP transcribe_batched_outputs)
  endforeach()
  add_test(NAME transcribe_batched_np_check
           COMMAND ${VS_PY} ${VS_TCHECK} check-np ${VS_TT}/batched-np1 ${VS_TT}/batched-np3
                   --corpus ${VS_TT}/corpus)
  set_tests_properties(transcribe_batched_np_check PROPERTIES LABELS "mpi;model"
                       FIXTURES_REQUIRED "transcribe_corpus;transcribe_batched_outputs")

  add_test(NAME transcribe_kill9
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/helpers/transcribe_kill_test.sh
                   $<TARGET_FILE:voxshard> ${VS_TINY_EN} ${VS_PY} ${VS_TCHECK} ${VS_TT}/corpus
                   ${VS_TT}/kill)
  set_tests_properties(transcribe_kill9 PROPERTIES LABELS "mpi;model;slow" TIMEOUT 900
                       FIXTURES_REQUIRED transcribe_corpus)

  add_test(NAME transcribe_bad_input
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/helpers/transcribe_bad_input_test.sh
                   $<TARGET_FILE:voxshard> ${VS_TINY_EN} ${VS_PT}/corpus ${VS_TT}/bad)
  set_tests_properties(transcribe_bad_input PROPERTIES LABELS "mpi;model" TIMEOUT 600
                       FIXTURES_REQUIRED prepare_corpus)

  # Batched (VAD chunks across files) against sequential (long-form seek loop) on short clips
  # and a long-form file of several minutes: WER within 1 point; segments ordered and covering
  # the speech.
  foreach(mode sequential batched)
    add_test(NAME transcribe_mode_${mode}_clean COMMAND ${CMAKE_COMMAND} -E rm -rf ${VS_TT}/mode-${mode})
    set_tests_properties(transcribe_mode_${mode}_clean PROPERTIES LABELS "model;slow"
                         FIXTURES_SETUP transcribe_mode_${mode}_clean)
    add_test(NAME transcribe_mode_${mode}
             COMMAND ${CMAKE_COMMAND} -E env OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
                     $<TARGET_FILE:voxshard> transcribe --model=${VS_TINY_EN}
                     --out=${VS_TT}/mode-${mode} --mode=${mode} --batch-size=8 --progress=off
                     ${VS_TT}/corpus/mixed/manifest.jsonl)
    set_tests_properties(transcribe_mode_${mode} PROPERTIES LABELS "model;slow" TIMEOUT 900
                         FIXTURES_REQUIRED "transcribe_corpus;transcribe_mode_${mode}_clean"
                         FIXTURES_SETUP transcribe_modes)
  endforeach()
  add_test(NAME transcribe_modes_check
           COMMAND ${VS_PY} ${VS_TCHECK} check-modes ${VS_TT}/mode-sequential ${VS_TT}/mode-batched
                   --corpus ${VS_TT}/corpus --eval $<TARGET_FILE:voxshard>)
  set_tests_properties(transcribe_modes_check PROPERTIES LABELS "model;slow"
                       FIXTURES_REQUIRED "transcribe_corpus;transcribe_modes")
endif()

if(VS_BUILD_TESTS)
  # The batched engine against faster-whisper's BatchedInferencePipeline on the real tiny.en and
  # Silero VAD: chunk times, prompt, and the tokens of windows decoded across files.
  add_executable(test_batched tests/test_batched.c)
  target_link_libraries(test_batched PRIVATE vs_transcribe)
  add_test(NAME batched_reference
           COMMAND sh -c "exec \"\${VOXSHARD_CACHE:-$HOME/.cache/voxshard}/venv/bin/python\" \"$0\" \"$1\""
                   ${CMAKE_SOURCE_DIR}/tests/helpers/fw_batched.py ${CMAKE_BINARY_DIR}/fw-batched)
  set_tests_properties(batched_reference PROPERTIES LABELS "model" TIMEOUT 600
                       FIXTURES_SETUP fw_batched)
  add_test(NAME batched COMMAND test_batched ${CMAKE_BINARY_DIR}/fw-batched)
  set_tests_properties(batched PROPERTIES LABELS "model" TIMEOUT 600
                       FIXTURES_REQUIRED fw_batched SKIP_RETURN_CODE 77)
endif()

if(VS_BUILD_TESTS)
  # Bad options: exit 2 with a message, before any output folder exists.
  add_test(NAME transcribe_bad_options
           COMMAND sh -c "mkdir -p $0; out=$0/bad-options; rm -rf $out; \
\"$1\" transcribe --mode=batched --no-without-timestamps --model=m.h5 --out=$out in 2>$0/bad-options.err; \
[ $? -eq 2 ] && grep -q without-timestamps $0/bad-options.err && \
\"$1\" transcribe --beam-size=0 --model=m.h5 --out=$out in 2>/dev/null; [ $? -eq 2 ] && \
\"$1\" transcribe --model=m.h5 in 2>/dev/null; [ $? -eq 2 ] && [ ! -e $out ]"
                   ${CMAKE_BINARY_DIR}/test-transcribe $<TARGET_FILE:voxshard>)
  set_tests_properties(transcribe_bad_options PROPERTIES LABELS "unit")
endif()
