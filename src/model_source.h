/* Internal to the vs_model library: a weight source being converted (a CTranslate2 model.bin or
 * a Hugging Face safetensors file), seen as a list of tensors under their canonical
 * (CTranslate2) names, each read on demand from the file. A source never holds the weights
 * in memory: the converter reads one tensor at a time, so a 3 GB model.bin costs one tensor of
 * RAM, not two copies of the file.
 */
#ifndef VS_MODEL_SOURCE_H
#define VS_MODEL_SOURCE_H

#include "model.h"

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

/* Numbering is CTranslate2's dtype ids, so model.bin's byte maps directly. */
typedef enum {
  VS_DT_F32 = 0,
  VS_DT_I8 = 1,
  VS_DT_I16 = 2,
  VS_DT_I32 = 3,
  VS_DT_F16 = 4,
  VS_DT_BF16 = 5,
  VS_DT_COUNT
} vs_dtype;

size_t vs_dtype_size(vs_dtype t);
const char *vs_dtype_name(vs_dtype t); /* "float32", "int8", "float16", "bfloat16", ... */

float vs_f16_to_f32(uint16_t h);
/* n halves widened exactly, front to back: src may be the upper half of dst's own bytes
 * ((uint16_t *)(dst + n) - n), which widens in place. */
void vs_f16_to_f32_n(const uint16_t *src, float *dst, size_t n);
uint16_t vs_f32_to_f16(float f); /* round to nearest even; overflow -> inf */
float vs_bf16_to_f32(uint16_t b);
/* Converts n elements of `src` (dtype t) to fp32; integers convert by value. */
void vs_convert_to_f32(vs_dtype t, const void *src, float *dst, size_t n);

/* A canonical tensor is the concatenation (along dim 0) of pieces of the source file; a piece
 * with offset -1 is zeros (Hugging Face's k_proj has no bias, the fused QKV bias has zeros). */
typedef struct {
  off_t offset;
  size_t nbytes;
} vs_src_piece;

typedef struct {
  char *name; /* canonical */
  int rank;
  long dims[4];
  vs_dtype dtype;
  int n_pieces;
  vs_src_piece pieces[3];
  char *scale_name; /* int8: canonical name of the fp32 per-row scale tensor, else NULL */
} vs_src_tensor;

typedef struct {
  char *path;        /* the weight file (model.bin or model.safetensors) */
  char *dir;         /* the source folder (config.json, tokenizer.json) */
  char *format_desc; /* for the model file's source_format attribute */
  int fd;
  off_t file_size;
  GPtrArray *tensors; /* vs_src_tensor*, in file order */
  GHashTable *by_name;
  int enc_heads, dec_heads; /* 0 when the source does not say (then d_model / 64) */
} vs_src;

vs_src *vs_src_new(const char *path, const char *dir);
vs_src_tensor *vs_src_add(vs_src *s, const char *name, vs_dtype dtype, int rank, const long *dims);
size_t vs_src_tensor_nbytes(const vs_src_tensor *t);
long vs_src_tensor_numel(const vs_src_tensor *t);
const vs_src_tensor *vs_src_find(const vs_src *s, const char *name);
/* Reads the tensor's bytes (as stored) into buf, which holds vs_src_tensor_nbytes(t). */
bool vs_src_read(const vs_src *s, const vs_src_tensor *t, void *buf, GError **err);
void vs_src_free(vs_src *s);

/* Readers: `dir` is the model folder. */
vs_src *vs_ct2_open(const char *dir, GError **err);
vs_src *vs_safetensors_open(const char *dir, GError **err);

/* The tensors a Whisper model with these hyper-parameters must have, with shapes; calls `fn`
 * once per tensor. Used by the converter (before writing) and the loader (after reading). */
typedef void (*vs_expected_fn)(const char *name, int rank, const long *dims, void *user);
void vs_model_expected_tensors(const vs_whisper_hparams *hp, vs_expected_fn fn, void *user);

/* Derives the hyper-parameters from tensor shapes (and heads from the source, else d/64);
 * errors name `origin` and the tensor that is missing or inconsistent. */
bool vs_src_hparams(const vs_src *s, vs_whisper_hparams *hp, GError **err);

/* ---- HDF5 helpers (model.c), shared by the converter and the loader ---- */
#include <hdf5.h>

#define VS_MODEL_FORMAT "voxshard-model"
#define VS_MODEL_FORMAT_VERSION 1

/* HDF5 prints its error stack to stderr by default; the library reports through GError instead,
 * with the innermost HDF5 message (vs_h5_last_error) appended. */
typedef struct {
  H5E_auto2_t fn;
  void *data;
} vs_h5_quiet;
vs_h5_quiet vs_h5_quiet_begin(void);
void vs_h5_quiet_end(vs_h5_quiet q);
const char *vs_h5_last_error(void); /* thread-local buffer, valid until the next call */

char *vs_h5_shape_str(int rank, const long *dims); /* "[384, 80, 3]", g_malloc'd */
hid_t vs_h5_file_type(vs_dtype t);                 /* do not close */
bool vs_h5_group(hid_t f, const char *path, const char *file_name, GError **err);
bool vs_h5_attr_str(hid_t f, const char *obj, const char *name, const char *value,
                    const char *file_name, GError **err);
bool vs_h5_attr_int(hid_t f, const char *obj, const char *name, long value, const char *file_name,
                    GError **err);
/* Creates `path` (intermediate groups too) holding `data` stored as dtype t, contiguous. */
bool vs_h5_write_array(hid_t f, const char *file_name, const char *path, vs_dtype t, int rank,
                       const long *dims, const void *data, GError **err);

#endif
