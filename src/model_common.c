/* Shared by the readers, the converter and the loader: dtypes, the source tensor index, the list
 * of tensors a Whisper model must have, and hyper-parameters from shapes. */
#include "model_source.h"
#include "vs_error.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif

size_t vs_dtype_size(vs_dtype t) {
  static const size_t sz[VS_DT_COUNT] = {4, 1, 2, 4, 2, 2};
  return t < VS_DT_COUNT ? sz[t] : 0;
}

const char *vs_dtype_name(vs_dtype t) {
  static const char *names[VS_DT_COUNT] = {"float32", "int8",    "int16",
                                           "int32",   "float16", "bfloat16"};
  return t < VS_DT_COUNT ? names[t] : "unknown";
}

float vs_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h >> 15) << 31, exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
  if (exp == 0) {
    /* subnormal halves are exact in fp32: scale the mantissa */
    float v = ldexpf((float)man, -24);
    return sign ? -v : v;
  }
  if (exp == 31)
    bits = sign | 0x7f800000u | (man << 13);
  else
    bits = sign | ((exp + 112) << 23) | (man << 13);
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

#if defined(__x86_64__)
/* F16C widens 8 halves per instruction, exactly (subnormals included): loading a model converts
 * tens of millions of weights, which the scalar path takes a noticeable part of start-up for. */
__attribute__((target("avx,f16c"))) static void f16_to_f32_f16c(const uint16_t *src, float *dst,
                                                                size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(src + i))));
  for (; i < n; i++)
    dst[i] = vs_f16_to_f32(src[i]);
}
#endif

void vs_f16_to_f32_n(const uint16_t *src, float *dst, size_t n) {
#if defined(__x86_64__)
  if (__builtin_cpu_supports("f16c")) {
    f16_to_f32_f16c(src, dst, n);
    return;
  }
#endif
  for (size_t i = 0; i < n; i++)
    dst[i] = vs_f16_to_f32(src[i]);
}

uint16_t vs_f32_to_f16(float f) {
  uint32_t x;
  memcpy(&x, &f, 4);
  uint16_t sign = (x >> 16) & 0x8000;
  uint32_t ax = x & 0x7fffffffu;
  if (ax >= 0x7f800000u) return sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0); /* inf, nan */
  if (ax >= 0x477ff000u) return sign | 0x7c00; /* rounds above 65504 */
  if (ax < 0x38800000u) {                      /* below the smallest normal half: subnormal */
    float a;
    memcpy(&a, &ax, 4);
    return sign | (uint16_t)lrintf(a * 16777216.0f); /* 2^24; lrintf rounds to even */
  }
  uint32_t r = ax - 0x38000000u; /* rebias exponent 127 -> 15 */
  uint32_t lsb = (r >> 13) & 1;
  r += 0xfff + lsb; /* round to nearest even on the 13 dropped bits */
  return sign | (uint16_t)(r >> 13);
}

float vs_bf16_to_f32(uint16_t b) {
  uint32_t bits = (uint32_t)b << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}

void vs_convert_to_f32(vs_dtype t, const void *src, float *dst, size_t n) {
  switch (t) {
  case VS_DT_F32:
    memmove(dst, src, n * 4);
    break;
  case VS_DT_F16:
    vs_f16_to_f32_n((const uint16_t *)src, dst, n);
    break;
  case VS_DT_BF16:
    for (size_t i = 0; i < n; i++)
      dst[i] = vs_bf16_to_f32(((const uint16_t *)src)[i]);
    break;
  case VS_DT_I8:
    for (size_t i = 0; i < n; i++)
      dst[i] = ((const int8_t *)src)[i];
    break;
  case VS_DT_I16:
    for (size_t i = 0; i < n; i++)
      dst[i] = ((const int16_t *)src)[i];
    break;
  case VS_DT_I32:
    for (size_t i = 0; i < n; i++)
      dst[i] = (float)((const int32_t *)src)[i];
    break;
  default:
    break;
  }
}

static void src_tensor_free(gpointer p) {
  vs_src_tensor *t = p;
  g_free(t->name);
  g_free(t->scale_name);
  g_free(t);
}

vs_src *vs_src_new(const char *path, const char *dir) {
  vs_src *s = g_new0(vs_src, 1);
  s->path = g_strdup(path);
  s->dir = g_strdup(dir);
  s->fd = -1;
  s->tensors = g_ptr_array_new_with_free_func(src_tensor_free);
  s->by_name = g_hash_table_new(g_str_hash, g_str_equal);
  return s;
}

vs_src_tensor *vs_src_add(vs_src *s, const char *name, vs_dtype dtype, int rank, const long *dims) {
  vs_src_tensor *t = g_new0(vs_src_tensor, 1);
  t->name = g_strdup(name);
  t->dtype = dtype;
  t->rank = rank;
  for (int i = 0; i < rank && i < 4; i++)
    t->dims[i] = dims[i];
  g_ptr_array_add(s->tensors, t);
  g_hash_table_insert(s->by_name, t->name, t);
  return t;
}

long vs_src_tensor_numel(const vs_src_tensor *t) {
  long n = 1;
  for (int i = 0; i < t->rank; i++)
    n *= t->dims[i];
  return n;
}

size_t vs_src_tensor_nbytes(const vs_src_tensor *t) {
  return (size_t)vs_src_tensor_numel(t) * vs_dtype_size(t->dtype);
}

const vs_src_tensor *vs_src_find(const vs_src *s, const char *name) {
  return g_hash_table_lookup(s->by_name, name);
}

bool vs_src_read(const vs_src *s, const vs_src_tensor *t, void *buf, GError **err) {
  int fd = s->fd;
  bool opened = false;
  if (fd < 0) {
    fd = open(s->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) VS_FAIL_ERRNO(err, false, "cannot open", s->path);
    opened = true;
  }
  char *p = buf;
  bool ok = true;
  for (int i = 0; i < t->n_pieces && ok; i++) {
    const vs_src_piece *pc = &t->pieces[i];
    if (pc->offset < 0) {
      memset(p, 0, pc->nbytes);
      p += pc->nbytes;
      continue;
    }
    size_t done = 0;
    while (done < pc->nbytes) {
      ssize_t n = pread(fd, p + done, pc->nbytes - done, pc->offset + (off_t)done);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        g_set_error(err, VS_ERROR, n < 0 ? VS_ERROR_IO : VS_ERROR_FORMAT,
                    "%s: tensor %s: cannot read bytes %lld..%lld: %s", s->path, t->name,
                    (long long)pc->offset, (long long)(pc->offset + pc->nbytes),
                    n < 0 ? g_strerror(errno) : "file ends early (truncated)");
        ok = false;
        break;
      }
      done += (size_t)n;
    }
    p += pc->nbytes;
  }
  if (opened) close(fd);
  return ok;
}

void vs_src_free(vs_src *s) {
  if (!s) return;
  if (s->fd >= 0) close(s->fd);
  g_hash_table_destroy(s->by_name);
  g_ptr_array_free(s->tensors, TRUE);
  g_free(s->path);
  g_free(s->dir);
  g_free(s->format_desc);
  g_free(s);
}

#define EXPECT(fn, user, rank, ...)                                                                \
  do {                                                                                             \
    long d_[] = {__VA_ARGS__};                                                                     \
    fn(name, rank, d_, user);                                                                      \
  } while (0)

static void expect_norm(const char *prefix, long d, vs_expected_fn fn, void *user) {
  char name[160];
  snprintf(name, sizeof name, "%s/gamma", prefix);
  EXPECT(fn, user, 1, d);
  snprintf(name, sizeof name, "%s/beta", prefix);
  EXPECT(fn, user, 1, d);
}

static void expect_linear(const char *prefix, long out, long in, vs_expected_fn fn, void *user) {
  char name[160];
  snprintf(name, sizeof name, "%s/weight", prefix);
  EXPECT(fn, user, 2, out, in);
  snprintf(name, sizeof name, "%s/bias", prefix);
  EXPECT(fn, user, 1, out);
}

void vs_model_expected_tensors(const vs_whisper_hparams *hp, vs_expected_fn fn, void *user) {
  char name[160], p[128];
  long d = hp->n_audio_state, td = hp->n_text_state;
  snprintf(name, sizeof name, "encoder/conv1/weight");
  EXPECT(fn, user, 3, d, hp->n_mels, 3);
  snprintf(name, sizeof name, "encoder/conv1/bias");
  EXPECT(fn, user, 1, d);
  snprintf(name, sizeof name, "encoder/conv2/weight");
  EXPECT(fn, user, 3, d, d, 3);
  snprintf(name, sizeof name, "encoder/conv2/bias");
  EXPECT(fn, user, 1, d);
  snprintf(name, sizeof name, "encoder/position_encodings/encodings");
  EXPECT(fn, user, 2, hp->n_audio_ctx, d);
  for (int i = 0; i < hp->n_audio_layer; i++) {
    snprintf(p, sizeof p, "encoder/layer_%d/self_attention/layer_norm", i);
    expect_norm(p, d, fn, user);
    snprintf(p, sizeof p, "encoder/layer_%d/self_attention/linear_0", i);
    expect_linear(p, 3 * d, d, fn, user);
    snprintf(p, sizeof p, "encoder/layer_%d/self_attention/linear_1", i);
    expect_linear(p, d, d, fn, user);
    snprintf(p, sizeof p, "encoder/layer_%d/ffn/layer_norm", i);
    expect_norm(p, d, fn, user);
    snprintf(p, sizeof p, "encoder/layer_%d/ffn/linear_0", i);
    expect_linear(p, 4 * d, d, fn, user);
    snprintf(p, sizeof p, "encoder/layer_%d/ffn/linear_1", i);
    expect_linear(p, d, 4 * d, fn, user);
  }
  expect_norm("encoder/layer_norm", d, fn, user);
  snprintf(name, sizeof name, "decoder/embeddings/weight");
  EXPECT(fn, user, 2, hp->n_vocab, td);
  snprintf(name, sizeof name, "decoder/position_encodings/encodings");
  EXPECT(fn, user, 2, hp->n_text_ctx, td);
  for (int i = 0; i < hp->n_text_layer; i++) {
    snprintf(p, sizeof p, "decoder/layer_%d/self_attention/layer_norm", i);
    expect_norm(p, td, fn, user);
    snprintf(p, sizeof p, "decoder/layer_%d/self_attention/linear_0", i);
    expect_linear(p, 3 * td, td, fn, user);
    snprintf(p, sizeof p, "decoder/layer_%d/self_attention/linear_1", i);
    expect_linear(p, td, td, fn, user);
    snprintf(p, sizeof p, "decoder/layer_%d/attention/layer_norm", i);
    expect_norm(p, td, fn, user);
    snprintf(p, sizeof p, "decoder/layer_%d/attention/linear_0", i);
    expect_linear(p, td, td, fn, user);
    snprintf(p, sizeof p, "decoder/layer_%d/attention/linear_1", i);
    expect_linear(p, 2 * td, d, fn, user); /* K,V project the encoder output */
    snprintf(p, sizeof p, "decoder/layer_%d/attention/linear_2", i);
    expect_linear(p, td, td, fn, user);
    snprintf(p, sizeof p, "decoder/layer_%d/ffn/layer_norm", i);
    expect_norm(p, td, fn, user);
    snprintf(p, sizeof p, "decoder/layer_%d/ffn/linear_0", i);
    expect_linear(p, 4 * td, td, fn, user);
    snprintf(p, sizeof p, "decoder/layer_%d/ffn/linear_1", i);
    expect_linear(p, td, 4 * td, fn, user);
  }
  expect_norm("decoder/layer_norm", td, fn, user);
}

static int count_layers(const vs_src *s, const char *stack) {
  int n = 0;
  for (;; n++) {
    char name[96];
    snprintf(name, sizeof name, "%s/layer_%d/ffn/linear_0/weight", stack, n);
    if (!vs_src_find(s, name)) return n;
  }
}

static const vs_src_tensor *need(const vs_src *s, const char *name, int rank, GError **err) {
  const vs_src_tensor *t = vs_src_find(s, name);
  if (!t)
    VS_FAIL(err, VS_ERROR_MODEL, NULL, "%s: tensor %s is missing: not a Whisper model?", s->path,
            name);
  if (t->rank != rank)
    VS_FAIL(err, VS_ERROR_MODEL, NULL, "%s: tensor %s has rank %d, expected %d", s->path, name,
            t->rank, rank);
  return t;
}

bool vs_src_hparams(const vs_src *s, vs_whisper_hparams *hp, GError **err) {
  const vs_src_tensor *conv1 = need(s, "encoder/conv1/weight", 3, err);
  if (!conv1) return false;
  const vs_src_tensor *epos = need(s, "encoder/position_encodings/encodings", 2, err);
  if (!epos) return false;
  const vs_src_tensor *emb = need(s, "decoder/embeddings/weight", 2, err);
  if (!emb) return false;
  const vs_src_tensor *dpos = need(s, "decoder/position_encodings/encodings", 2, err);
  if (!dpos) return false;
  memset(hp, 0, sizeof *hp);
  hp->n_mels = (int)conv1->dims[1];
  hp->n_audio_state = (int)conv1->dims[0];
  hp->n_audio_ctx = (int)epos->dims[0];
  hp->n_text_ctx = (int)dpos->dims[0];
  hp->n_text_state = (int)emb->dims[1];
  hp->n_vocab = (int)emb->dims[0];
  hp->n_audio_layer = count_layers(s, "encoder");
  hp->n_text_layer = count_layers(s, "decoder");
  /* Every Whisper size uses 64-wide heads; a source that states its head count wins. */
  hp->n_audio_head = s->enc_heads > 0 ? s->enc_heads : hp->n_audio_state / 64;
  hp->n_text_head = s->dec_heads > 0 ? s->dec_heads : hp->n_text_state / 64;
  if (hp->n_audio_layer == 0 || hp->n_text_layer == 0)
    VS_FAIL(err, VS_ERROR_MODEL, false,
            "%s: tensor %s/layer_0/ffn/linear_0/weight is missing: no %s layers", s->path,
            hp->n_audio_layer ? "decoder" : "encoder", hp->n_audio_layer ? "decoder" : "encoder");
  if (hp->n_audio_head <= 0 || hp->n_audio_state % hp->n_audio_head || hp->n_text_head <= 0 ||
      hp->n_text_state % hp->n_text_head)
    VS_FAIL(err, VS_ERROR_MODEL, false, "%s: head counts %d/%d do not divide the widths %d/%d",
            s->path, hp->n_audio_head, hp->n_text_head, hp->n_audio_state, hp->n_text_state);
  return true;
}
