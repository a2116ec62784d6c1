# The voxshard program: parses the command line and calls the library.
add_executable(voxshard src/main.c)
target_link_libraries(voxshard PRIVATE vs_base vs_gpu vs_model vs_prepare vs_eval vs_transcribe)
