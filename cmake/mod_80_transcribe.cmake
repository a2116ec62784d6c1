# The transcribe job: batched (VAD-chunk) engine and the MPI job around the search.
add_library(vs_transcribe STATIC infer/batched.c src/transcribe.c)
target_link_libraries(vs_transcribe PUBLIC vs_longform vs_search vs_whisper vs_vad vs_mel vs_audio
                                           vs_eval vs_prepare vs_corpus vs_plan vs_coll vs_model
                                           vs_base)
