/* `voxshard convert`: a faster-whisper/CTranslate2 or Hugging Face Whisper folder to voxshard's
 * HDF5 model file (docs/model-file.md). */
#ifndef VS_CONVERT_H
#define VS_CONVERT_H

#include <glib.h>
#include <stdbool.h>

/* from: "auto" (model.bin, else model.safetensors), "ct2" or "hf".
 * dtype: "keep" (as the source stores it; bf16 becomes f32), "f32" or "f16" (int8 dequantised).
 * The output appears atomically (temp file in the same folder, fsync, rename) or not at all. */
bool vs_model_convert(const char *src_dir, const char *out_path, const char *from,
                      const char *dtype, GError **err);

/* The command: voxshard convert [--from=auto|ct2|hf] [--dtype=keep|f32|f16] SRC_DIR OUT.h5 */
int vs_cmd_convert(int argc, char **argv);

#endif
