# Collectives (MPI now, NCCL later behind the same header) and the `prepare` job: journal, HDF5
# feature shards and index, progress, and the job itself.
add_library(vs_coll STATIC collectives/coll_mpi.c)
target_link_libraries(vs_coll PUBLIC vs_base)

add_library(vs_prepare STATIC src/job.c src/frontend.c src/journal.c src/featstore.c src/progress.c src/prepare.c)
target_link_libraries(vs_prepare PUBLIC vs_coll vs_corpus vs_plan vs_audio vs_mel vs_base)

# A stand-alone driver of vs_cmd_prepare for tests (the lead wires the command into voxshard).
add_executable(vs_prepare_cli tests/prepare_cli.c)
target_link_libraries(vs_prepare_cli PRIVATE vs_prepare)

if(VS_BUILD_TESTS)
  set(VS_MPIRUN mpirun --allow-run-as-root --oversubscribe)
  set(VS_VENV_PY $ENV{HOME}/.cache/voxshard/venv/bin/python)
  if(DEFINED ENV{VOXSHARD_CACHE})
    set(VS_VENV_PY $ENV{VOXSHARD_CACHE}/venv/bin/python)
  endif()

  add_executable(test_journal tests/test_journal.c)
  target_link_libraries(test_journal PRIVATE vs_prepare)
  add_test(NAME journal COMMAND test_journal)
  set_tests_properties(journal PROPERTIES LABELS "unit")

  add_executable(test_featstore tests/test_featstore.c)
  target_link_libraries(test_featstore PRIVATE vs_prepare)
  add_test(NAME featstore COMMAND test_featstore ${CMAKE_SOURCE_DIR}/tests/helpers/check_featstore.py
           ${VS_VENV_PY})
  set_tests_properties(featstore PROPERTIES LABELS "unit")

  add_executable(test_progress tests/test_progress.c)
  target_link_libraries(test_progress PRIVATE vs_prepare)
  add_test(NAME progress COMMAND test_progress)
  set_tests_properties(progress PROPERTIES LABELS "unit")

  add_executable(test_coll tests/test_coll.c)
  target_link_libraries(test_coll PRIVATE vs_prepare)
  foreach(np 1 2 3)
    add_test(NAME coll_np${np} COMMAND ${VS_MPIRUN} -np ${np} $<TARGET_FILE:test_coll>)
    set_tests_properties(coll_np${np} PROPERTIES LABELS "mpi" TIMEOUT 120)
  endforeach()

  # prepare over the generated corpus: the corpus is made once (fixture), each rank count writes
  # its own output, and a checker reads the files back (exactly-once coverage, duration balance,
  # features equal to vs_mel_compute on the same audio).
  add_executable(test_prepare_check tests/test_prepare_check.c)
  target_link_libraries(test_prepare_check PRIVATE vs_prepare)
  set(VS_PT ${CMAKE_BINARY_DIR}/test-prepare)
  # The good inputs of tests/helpers/make_test_corpus.sh (its inputs.txt): all three input kinds.
  set(VS_PT_INPUTS ${VS_PT}/corpus/tree ${VS_PT}/corpus/shards/shard-000.tar
      ${VS_PT}/corpus/shards/shard-001.tar.gz ${VS_PT}/corpus/shards/shard-002.tar.zst
      ${VS_PT}/corpus/manifest/manifest.jsonl)
  add_test(NAME prepare_corpus COMMAND sh
           ${CMAKE_SOURCE_DIR}/tests/helpers/make_test_corpus.sh ${VS_PT}/corpus)
  set_tests_properties(prepare_corpus PROPERTIES FIXTURES_SETUP prepare_corpus LABELS "mpi" TIMEOUT 300)
  foreach(np 1 2 3)
    add_test(NAME prepare_np${np}_clean COMMAND ${CMAKE_COMMAND} -E rm -rf ${VS_PT}/out-np${np})
    set_tests_properties(prepare_np${np}_clean PROPERTIES FIXTURES_SETUP prepare_np${np} LABELS "mpi")
    add_test(NAME prepare_np${np}
             COMMAND ${VS_MPIRUN} -np ${np} $<TARGET_FILE:vs_prepare_cli> --out=${VS_PT}/out-np${np}
                     --shard-seconds=20 --threads=2 --progress-interval=0.5 ${VS_PT_INPUTS})
    set_tests_properties(prepare_np${np} PROPERTIES LABELS "mpi" TIMEOUT 300
                         FIXTURES_REQUIRED "prepare_corpus;prepare_np${np}" FIXTURES_SETUP prepare_np${np}_out)
    add_test(NAME prepare_np${np}_check
             COMMAND test_prepare_check --out=${VS_PT}/out-np${np} --world=${np} --check-mel
                     ${VS_PT_INPUTS})
    set_tests_properties(prepare_np${np}_check PROPERTIES LABELS "mpi" TIMEOUT 300
                         FIXTURES_REQUIRED "prepare_corpus;prepare_np${np}_out")
  endforeach()

  add_test(NAME prepare_kill9
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/helpers/prepare_kill_test.sh $<TARGET_FILE:vs_prepare_cli>
                   $<TARGET_FILE:test_prepare_check> ${VS_PT}/corpus ${VS_PT}/kill)
  set_tests_properties(prepare_kill9 PROPERTIES LABELS "mpi;slow" TIMEOUT 600 FIXTURES_REQUIRED prepare_corpus)

  add_test(NAME prepare_bad_input
           COMMAND bash ${CMAKE_SOURCE_DIR}/tests/helpers/prepare_bad_input_test.sh $<TARGET_FILE:vs_prepare_cli>
                   $<TARGET_FILE:test_prepare_check> ${VS_PT}/corpus ${VS_PT}/bad)
  set_tests_properties(prepare_bad_input PROPERTIES LABELS "mpi" TIMEOUT 300 FIXTURES_REQUIRED prepare_corpus)
endif()
