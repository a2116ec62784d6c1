/* voxshard's model file: one HDF5 file holding hyper-parameters, tokenizer and weights, in the
 * layout that training checkpoints also use (any checkpoint is a model). Layout, names and
 * shapes are documented in docs/model-file.md. `voxshard convert` writes it from a
 * faster-whisper/CTranslate2 directory or a Hugging Face Whisper directory.
 *
 * The loaded vs_model is read-only and can be shared by every thread and every backend; per-run
 * state (KV caches, scratch) lives elsewhere (infer/whisper.h).
 */
#ifndef VS_MODEL_H
#define VS_MODEL_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct {
  int n_mels;        /* 80 or 128 */
  int n_audio_ctx;   /* 1500 */
  int n_audio_state; /* d_model */
  int n_audio_head;
  int n_audio_layer;
  int n_text_ctx; /* 448 */
  int n_text_state;
  int n_text_head;
  int n_text_layer;
  int n_vocab; /* 51864 (.en), 51865 (multilingual), 51866 (large-v3) */
} vs_whisper_hparams;

/* A weight as the model holds it after loading: host memory, fp32, C order. */
typedef struct {
  const char *name; /* canonical name, e.g. "encoder/layer_0/self_attention/linear_0/weight" */
  int rank;
  long dims[4];
  float *data;
} vs_tensor;

typedef struct vs_model vs_model;
struct vs_tokenizer;

/* Loads and checks: every tensor the hyper-parameters require must be present with its shape;
 * otherwise an error naming the file and the tensor. */
vs_model *vs_model_load(const char *path, GError **err);
void vs_model_free(vs_model *m);
/* The hyper-parameters alone, checked as vs_model_load checks them, without reading weights:
 * what a job needs to start its front end while the weights load. */
bool vs_model_read_hparams(const char *path, vs_whisper_hparams *hp, GError **err);

const vs_whisper_hparams *vs_model_hparams(const vs_model *m);
const vs_tensor *vs_model_tensor(const vs_model *m, const char *name); /* NULL when absent */
const struct vs_tokenizer *vs_model_tokenizer(const vs_model *m);

/* Decoding settings shipped with the model (faster-whisper's config.json): tokens always
 * suppressed, tokens suppressed at the first step, and the language token ids. */
const int *vs_model_suppress_ids(const vs_model *m, size_t *n);
const int *vs_model_suppress_ids_begin(const vs_model *m, size_t *n);
const int *vs_model_lang_ids(const vs_model *m, size_t *n);
/* (decoder layer, head) pairs, flattened: 2 * n_pairs ints. */
const int *vs_model_alignment_heads(const vs_model *m, size_t *n_pairs);

/* Every loaded tensor, in a stable order (the tied decoder/projection/weight is not listed
 * separately; vs_model_tensor() resolves it to decoder/embeddings/weight). */
size_t vs_model_n_tensors(const vs_model *m);
const vs_tensor *vs_model_tensor_at(const vs_model *m, size_t i);

#endif
