/* Silero VAD v6 without an ONNX runtime: a minimal protobuf reader for the conversion, HDF5
 * weights, a plain-C forward pass, and faster-whisper's segmentation and chunking rules.
 * See docs/vad.md for the network and the file layout. */
#include "vad.h"

#include "fsutil.h"
#include "vecmath.h"
#include "vs_error.h"

#include <hdf5.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <unistd.h>

/* ------------------------------------------------------------------------------------------ */
/* Protobuf wire format: just enough of ModelProto/GraphProto/NodeProto/TensorProto.           */

typedef struct {
  const uint8_t *p, *end;
} pb_buf;

typedef struct {
  const char *path;    /* for messages */
  const uint8_t *base; /* start of the file, to report byte offsets */
} pb_ctx;

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

static bool pb_varint(const pb_ctx *cx, pb_buf *b, uint64_t *v, GError **err) {
  uint64_t r = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (b->p >= b->end)
      VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: truncated protobuf varint at byte %td", cx->path,
              b->p - cx->base);
    uint8_t byte = *b->p++;
    r |= (uint64_t)(byte & 0x7f) << shift;
    if (!(byte & 0x80)) {
      *v = r;
      return true;
    }
  }
  VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: protobuf varint longer than 10 bytes at byte %td",
          cx->path, b->p - cx->base);
}

/* One field: its number and wire type; the scalar in *val or the payload in *sub. */
static bool pb_next(const pb_ctx *cx, pb_buf *b, uint32_t *field, uint32_t *wire, uint64_t *val,
                    pb_buf *sub, GError **err) {
  ptrdiff_t at = b->p - cx->base;
  uint64_t tag;
  if (!pb_varint(cx, b, &tag, err)) return false;
  *field = (uint32_t)(tag >> 3);
  *wire = (uint32_t)(tag & 7);
  if (*field == 0 || tag >> 32)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: not a protobuf message (bad field tag at byte %td)",
            cx->path, at);
  switch (*wire) {
  case PB_VARINT:
    return pb_varint(cx, b, val, err);
  case PB_I64:
  case PB_I32: {
    size_t w = *wire == PB_I64 ? 8 : 4;
    if ((size_t)(b->end - b->p) < w)
      VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: truncated: field %u at byte %td needs %zu bytes",
              cx->path, *field, at, w);
    uint64_t r = 0;
    memcpy(&r, b->p, w); /* protobuf fixed-width values are little-endian, as is the host */
    b->p += w;
    *val = r;
    return true;
  }
  case PB_LEN: {
    uint64_t len;
    if (!pb_varint(cx, b, &len, err)) return false;
    if (len > (uint64_t)(b->end - b->p))
      VS_FAIL(err, VS_ERROR_FORMAT, false,
              "%s: truncated: field %u at byte %td needs %" G_GUINT64_FORMAT
              " bytes, only %td left",
              cx->path, *field, at, len, b->end - b->p);
    sub->p = b->p;
    sub->end = b->p + len;
    b->p += len;
    return true;
  }
  default:
    VS_FAIL(err, VS_ERROR_FORMAT, false,
            "%s: not an ONNX/protobuf file (wire type %u of field %u at byte %td)", cx->path, *wire,
            *field, at);
  }
}

typedef struct {
  char *name;
  int dtype; /* ONNX TensorProto.DataType: 1 float, 7 int64 */
  int ndims;
  int64_t dims[8];
  size_t n;     /* element count */
  float *f;     /* host, [n] when dtype == 1 */
  int64_t *i64; /* host, [n] when dtype == 7 */
} onnx_tensor;

typedef struct {
  char *name;
  int64_t i;
  float f;
  char *s;
  int64_t *ints; /* host, [n_ints] */
  size_t n_ints;
  bool has_graph;
} onnx_attr;

typedef struct {
  char *op, *name;
  GPtrArray *inputs, *outputs; /* char* */
  GPtrArray *attrs;            /* onnx_attr* */
} onnx_node;

typedef struct {
  GPtrArray *nodes; /* onnx_node* */
  GPtrArray *inits; /* onnx_tensor* */
  GPtrArray *graph_inputs;
} onnx_graph;

static void tensor_free(gpointer p) {
  onnx_tensor *t = p;
  if (!t) return;
  g_free(t->name);
  g_free(t->f);
  g_free(t->i64);
  g_free(t);
}

static void attr_free(gpointer p) {
  onnx_attr *a = p;
  g_free(a->name);
  g_free(a->s);
  g_free(a->ints);
  g_free(a);
}

static void node_free(gpointer p) {
  onnx_node *n = p;
  g_free(n->op);
  g_free(n->name);
  g_ptr_array_unref(n->inputs);
  g_ptr_array_unref(n->outputs);
  g_ptr_array_unref(n->attrs);
  g_free(n);
}

static char *pb_str(pb_buf s) {
  return g_strndup((const char *)s.p, (gsize)(s.end - s.p));
}

/* Repeated int64 (packed or one per field) appended to a GArray. */
static bool pb_ints(const pb_ctx *cx, uint32_t wire, uint64_t val, pb_buf sub, GArray *out,
                    GError **err) {
  if (wire == PB_VARINT) {
    int64_t v = (int64_t)val;
    g_array_append_val(out, v);
    return true;
  }
  if (wire != PB_LEN)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: repeated int64 with wire type %u", cx->path, wire);
  while (sub.p < sub.end) {
    uint64_t u;
    if (!pb_varint(cx, &sub, &u, err)) return false;
    int64_t v = (int64_t)u;
    g_array_append_val(out, v);
  }
  return true;
}

static bool parse_tensor(const pb_ctx *cx, pb_buf b, onnx_tensor **out, GError **err) {
  onnx_tensor *t = g_new0(onnx_tensor, 1);
  GArray *dims = g_array_new(false, false, sizeof(int64_t));
  GArray *fdata = g_array_new(false, false, sizeof(float));
  GArray *idata = g_array_new(false, false, sizeof(int64_t));
  pb_buf raw = {NULL, NULL};
  bool external = false;
  bool ok = true;
  while (ok && b.p < b.end) {
    uint32_t f, w;
    uint64_t v = 0;
    pb_buf s = {NULL, NULL};
    if (!(ok = pb_next(cx, &b, &f, &w, &v, &s, err))) break;
    if (f == 1)
      ok = pb_ints(cx, w, v, s, dims, err);
    else if (f == 2 && w == PB_VARINT)
      t->dtype = (int)v;
    else if (f == 4 && w == PB_I32) {
      float x;
      uint32_t u = (uint32_t)v;
      memcpy(&x, &u, 4);
      g_array_append_val(fdata, x);
    } else if (f == 4 && w == PB_LEN) {
      if ((s.end - s.p) % 4) {
        g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: float_data of odd length", cx->path);
        ok = false;
      } else
        g_array_append_vals(fdata, s.p, (guint)((s.end - s.p) / 4));
    } else if (f == 7)
      ok = pb_ints(cx, w, v, s, idata, err);
    else if (f == 8 && w == PB_LEN)
      t->name = pb_str(s);
    else if (f == 9 && w == PB_LEN)
      raw = s;
    else if (f == 14 && w == PB_VARINT)
      external = v == 1;
  }
  if (ok && !t->name) t->name = g_strdup("(unnamed)");
  if (ok && external) {
    g_set_error(err, VS_ERROR, VS_ERROR_UNSUPPORTED,
                "%s: tensor %s keeps its data in an external file, which is not supported",
                cx->path, t->name);
    ok = false;
  }
  if (ok && dims->len > 8) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: tensor %s has %u dimensions", cx->path,
                t->name, dims->len);
    ok = false;
  }
  if (ok) {
    t->ndims = (int)dims->len;
    t->n = 1;
    for (int d = 0; d < t->ndims; d++) {
      t->dims[d] = g_array_index(dims, int64_t, d);
      if (t->dims[d] < 0 || t->dims[d] > (1 << 28)) {
        g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: tensor %s has dimension %" G_GINT64_FORMAT,
                    cx->path, t->name, t->dims[d]);
        ok = false;
        break;
      }
      t->n *= (size_t)t->dims[d];
    }
  }
  if (ok && (t->dtype == 1 || t->dtype == 7)) {
    size_t esz = t->dtype == 1 ? 4 : 8;
    size_t have =
        raw.p ? (size_t)(raw.end - raw.p) / esz : (t->dtype == 1 ? fdata->len : idata->len);
    if ((raw.p && (size_t)(raw.end - raw.p) != t->n * esz) || (!raw.p && have != t->n)) {
      g_set_error(err, VS_ERROR, VS_ERROR_FORMAT,
                  "%s: tensor %s has %zu elements of data for a shape of %zu", cx->path, t->name,
                  have, t->n);
      ok = false;
    } else if (t->dtype == 1) {
      t->f = g_new(float, t->n ? t->n : 1);
      memcpy(t->f, raw.p ? (const void *)raw.p : (const void *)fdata->data, t->n * 4);
    } else {
      t->i64 = g_new(int64_t, t->n ? t->n : 1);
      memcpy(t->i64, raw.p ? (const void *)raw.p : (const void *)idata->data, t->n * 8);
    }
  }
  g_array_unref(dims);
  g_array_unref(fdata);
  g_array_unref(idata);
  if (!ok) {
    tensor_free(t);
    return false;
  }
  *out = t;
  return true;
}

static bool parse_attr(const pb_ctx *cx, pb_buf b, onnx_attr **out, GError **err) {
  onnx_attr *a = g_new0(onnx_attr, 1);
  GArray *ints = g_array_new(false, false, sizeof(int64_t));
  bool ok = true;
  while (ok && b.p < b.end) {
    uint32_t f, w;
    uint64_t v = 0;
    pb_buf s = {NULL, NULL};
    if (!(ok = pb_next(cx, &b, &f, &w, &v, &s, err))) break;
    if (f == 1 && w == PB_LEN) {
      g_free(a->name);
      a->name = pb_str(s);
    } else if (f == 2 && w == PB_I32) {
      uint32_t u = (uint32_t)v;
      memcpy(&a->f, &u, 4);
    } else if (f == 3 && w == PB_VARINT)
      a->i = (int64_t)v;
    else if (f == 4 && w == PB_LEN) {
      g_free(a->s);
      a->s = pb_str(s);
    } else if (f == 6 && w == PB_LEN)
      a->has_graph = true;
    else if (f == 8)
      ok = pb_ints(cx, w, v, s, ints, err);
  }
  a->n_ints = ints->len;
  a->ints = (int64_t *)g_array_free(ints, false);
  if (ok && !a->name) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: node attribute without a name", cx->path);
    ok = false;
  }
  if (!ok) {
    attr_free(a);
    return false;
  }
  *out = a;
  return true;
}

static bool parse_node(const pb_ctx *cx, pb_buf b, onnx_node **out, GError **err) {
  onnx_node *n = g_new0(onnx_node, 1);
  n->inputs = g_ptr_array_new_with_free_func(g_free);
  n->outputs = g_ptr_array_new_with_free_func(g_free);
  n->attrs = g_ptr_array_new_with_free_func(attr_free);
  bool ok = true;
  while (ok && b.p < b.end) {
    uint32_t f, w;
    uint64_t v = 0;
    pb_buf s = {NULL, NULL};
    if (!(ok = pb_next(cx, &b, &f, &w, &v, &s, err))) break;
    if (w != PB_LEN) continue;
    if (f == 1)
      g_ptr_array_add(n->inputs, pb_str(s));
    else if (f == 2)
      g_ptr_array_add(n->outputs, pb_str(s));
    else if (f == 3) {
      g_free(n->name);
      n->name = pb_str(s);
    } else if (f == 4) {
      g_free(n->op);
      n->op = pb_str(s);
    } else if (f == 5) {
      onnx_attr *a;
      if ((ok = parse_attr(cx, s, &a, err))) g_ptr_array_add(n->attrs, a);
    }
  }
  if (ok && !n->op) {
    g_set_error(err, VS_ERROR, VS_ERROR_FORMAT, "%s: graph node without an op_type", cx->path);
    ok = false;
  }
  if (!ok) {
    node_free(n);
    return false;
  }
  if (!n->name) n->name = g_strdup("");
  *out = n;
  return true;
}

static void graph_clear(onnx_graph *g) {
  if (g->nodes) g_ptr_array_unref(g->nodes);
  if (g->inits) g_ptr_array_unref(g->inits);
  if (g->graph_inputs) g_ptr_array_unref(g->graph_inputs);
  memset(g, 0, sizeof *g);
}

static bool parse_graph(const pb_ctx *cx, pb_buf b, onnx_graph *g, GError **err) {
  g->nodes = g_ptr_array_new_with_free_func(node_free);
  g->inits = g_ptr_array_new_with_free_func(tensor_free);
  g->graph_inputs = g_ptr_array_new_with_free_func(g_free);
  while (b.p < b.end) {
    uint32_t f, w;
    uint64_t v = 0;
    pb_buf s = {NULL, NULL};
    if (!pb_next(cx, &b, &f, &w, &v, &s, err)) return false;
    if (w != PB_LEN) continue;
    if (f == 1) {
      onnx_node *n;
      if (!parse_node(cx, s, &n, err)) return false;
      g_ptr_array_add(g->nodes, n);
    } else if (f == 5) {
      onnx_tensor *t;
      if (!parse_tensor(cx, s, &t, err)) return false;
      g_ptr_array_add(g->inits, t);
    } else if (f == 11) {
      /* ValueInfoProto: only its name (field 1) matters here */
      while (s.p < s.end) {
        uint32_t f2, w2;
        uint64_t v2;
        pb_buf s2 = {NULL, NULL};
        if (!pb_next(cx, &s, &f2, &w2, &v2, &s2, err)) return false;
        if (f2 == 1 && w2 == PB_LEN) g_ptr_array_add(g->graph_inputs, pb_str(s2));
      }
    }
  }
  return true;
}

/* ModelProto: requires ir_version and a graph, or the bytes are something else. */
static bool parse_model(const pb_ctx *cx, pb_buf b, onnx_graph *g, GError **err) {
  bool have_graph = false, have_ir = false;
  while (b.p < b.end) {
    uint32_t f, w;
    uint64_t v = 0;
    pb_buf s = {NULL, NULL};
    if (!pb_next(cx, &b, &f, &w, &v, &s, err)) return false;
    if (f == 1 && w == PB_VARINT)
      have_ir = true;
    else if (f == 7 && w == PB_LEN && !have_graph) {
      if (!parse_graph(cx, s, g, err)) return false;
      have_graph = true;
    }
  }
  if (!have_ir || !have_graph)
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: not an ONNX model (no %s)", cx->path,
            have_ir ? "graph" : "ir_version");
  return true;
}

/* ------------------------------------------------------------------------------------------ */
/* Graph matching: the converter accepts only the op sequence it knows how to run.             */

#define VAD_MAX_CONV 8

typedef struct {
  int pad_left, pad_right; /* reflect padding of the 576-sample input */
  int n_fft, hop, n_bins, drop_frames;
  const onnx_tensor *basis; /* [2*n_bins][1][n_fft] */
  int n_conv;
  struct {
    const onnx_tensor *w, *b; /* [out][in][k], [out] */
    int stride, pad;
  } conv[VAD_MAX_CONV];
  int hidden;
  const onnx_tensor *lstm_w, *lstm_r, *lstm_b; /* [1][4H][in], [1][4H][H], [1][8H] */
  const onnx_tensor *out_w, *out_b;            /* [1][H][1], [1] */
} vad_spec;

typedef struct {
  const pb_ctx *cx;
  const onnx_graph *g;
  guint at; /* index of the next node */
} matcher;

static const onnx_tensor *find_init(const onnx_graph *g, const char *name) {
  for (guint i = 0; i < g->inits->len; i++) {
    const onnx_tensor *t = g_ptr_array_index(g->inits, i);
    if (strcmp(t->name, name) == 0) return t;
  }
  return NULL;
}

static const onnx_attr *find_attr(const onnx_node *n, const char *name) {
  for (guint i = 0; i < n->attrs->len; i++) {
    const onnx_attr *a = g_ptr_array_index(n->attrs, i);
    if (strcmp(a->name, name) == 0) return a;
  }
  return NULL;
}

static const char *node_in(const onnx_node *n, guint i) {
  return i < n->inputs->len ? g_ptr_array_index(n->inputs, i) : "";
}

static const onnx_node *expect(matcher *m, const char *op, GError **err) {
  if (m->at >= m->g->nodes->len)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, NULL,
            "%s: not a Silero VAD v6 16 kHz graph: ends after %u nodes, expected %s", m->cx->path,
            m->at, op);
  const onnx_node *n = g_ptr_array_index(m->g->nodes, m->at);
  if (strcmp(n->op, op) != 0) {
    if (strcmp(n->op, "If") == 0)
      VS_FAIL(err, VS_ERROR_UNSUPPORTED, NULL,
              "%s: node %u is an If (multi-rate export with a sampling-rate branch); only the "
              "16 kHz single-rate export (faster-whisper's silero_vad_v6.onnx) is supported",
              m->cx->path, m->at);
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, NULL,
            "%s: not a Silero VAD v6 16 kHz graph: node %u (%s) is %s, expected %s", m->cx->path,
            m->at, n->name, n->op, op);
  }
  m->at++;
  return n;
}

/* A node input that must be an initializer of the given element type and rank. */
static const onnx_tensor *expect_init(matcher *m, const onnx_node *n, guint input, int dtype,
                                      int ndims, GError **err) {
  const onnx_tensor *t = find_init(m->g, node_in(n, input));
  if (!t || t->dtype != dtype || (ndims >= 0 && t->ndims != ndims))
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, NULL,
            "%s: node %s (%s): input %u '%s' is not a constant %s tensor of rank %d", m->cx->path,
            n->name, n->op, input, node_in(n, input), dtype == 1 ? "float" : "int64", ndims);
  return t;
}

static bool chained(matcher *m, const onnx_node *prev, const onnx_node *n, GError **err) {
  if (prev->outputs->len < 1 || strcmp(node_in(n, 0), g_ptr_array_index(prev->outputs, 0)) != 0)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "%s: node %s (%s) does not consume the output of %s (%s)", m->cx->path, n->name, n->op,
            prev->name, prev->op);
  return true;
}

static int64_t attr_int(const onnx_node *n, const char *name, int64_t dflt) {
  const onnx_attr *a = find_attr(n, name);
  return a ? a->i : dflt;
}

/* Conv1d attributes as used here: one stride, symmetric pads, no dilation, no groups. */
static bool conv_attrs(matcher *m, const onnx_node *n, int *stride, int *pad, GError **err) {
  const onnx_attr *s = find_attr(n, "strides"), *p = find_attr(n, "pads"),
                  *d = find_attr(n, "dilations");
  *stride = s && s->n_ints == 1 ? (int)s->ints[0] : 1;
  *pad = p && p->n_ints == 2 ? (int)p->ints[0] : 0;
  bool bad = (s && s->n_ints != 1) || (p && (p->n_ints != 2 || p->ints[0] != p->ints[1])) ||
             (d && (d->n_ints != 1 || d->ints[0] != 1)) || attr_int(n, "group", 1) != 1 ||
             find_attr(n, "auto_pad") || *stride < 1 || *pad < 0;
  if (bad)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "%s: Conv %s has attributes other than one stride and symmetric padding", m->cx->path,
            n->name);
  return true;
}

static bool match_slice(matcher *m, const onnx_node *n, int channels, int *ch_start,
                        int64_t *ch_end, int *frame_start, GError **err) {
  const onnx_tensor *st, *en, *ax, *stp;
  if (!(st = expect_init(m, n, 1, 7, 1, err)) || !(en = expect_init(m, n, 2, 7, 1, err)) ||
      !(ax = expect_init(m, n, 3, 7, 1, err)) || !(stp = expect_init(m, n, 4, 7, 1, err)))
    return false;
  *ch_start = -1;
  *frame_start = -1;
  if (st->n != 2 || en->n != 2 || ax->n != 2 || stp->n != 2 || stp->i64[0] != 1 || stp->i64[1] != 1)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false, "%s: Slice %s is not a unit-step slice of 2 axes",
            m->cx->path, n->name);
  for (int k = 0; k < 2; k++) {
    if (ax->i64[k] == 1) {
      *ch_start = (int)st->i64[k];
      *ch_end = en->i64[k] > channels ? channels : en->i64[k];
    } else if (ax->i64[k] == 2 && en->i64[k] >= (int64_t)INT32_MAX)
      *frame_start = (int)st->i64[k];
  }
  if (*ch_start < 0 || *frame_start < 0)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "%s: Slice %s does not cut channels and drop leading frames", m->cx->path, n->name);
  return true;
}

static bool match_graph(const pb_ctx *cx, const onnx_graph *g, vad_spec *sp, GError **err) {
  matcher m = {cx, g, 0};
  memset(sp, 0, sizeof *sp);
  const onnx_node *pad, *unsq, *stft, *sl1, *sl2, *pw1, *pw2, *add, *sq, *prev, *n;

  if (!(pad = expect(&m, "Pad", err))) return false;
  const onnx_attr *mode = find_attr(pad, "mode");
  if (!mode || !mode->s || strcmp(mode->s, "reflect") != 0 ||
      (pad->inputs->len > 2 && *node_in(pad, 2)))
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false, "%s: Pad %s is not a plain reflect padding", cx->path,
            pad->name);
  const onnx_tensor *pads = expect_init(&m, pad, 1, 7, 1, err);
  if (!pads) return false;
  if (pads->n != 4 || pads->i64[0] != 0 || pads->i64[2] != 0 || pads->i64[1] < 0 ||
      pads->i64[3] < 0 || pads->i64[1] > 4096 || pads->i64[3] > 4096)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "%s: Pad %s must pad only the sample axis of [windows, samples]", cx->path, pad->name);
  sp->pad_left = (int)pads->i64[1];
  sp->pad_right = (int)pads->i64[3];

  if (!(unsq = expect(&m, "Unsqueeze", err)) || !chained(&m, pad, unsq, err)) return false;
  if (!(stft = expect(&m, "Conv", err)) || !chained(&m, unsq, stft, err)) return false;
  if (!(sp->basis = expect_init(&m, stft, 1, 1, 3, err))) return false;
  if (!conv_attrs(&m, stft, &sp->hop, &(int){0}, err)) return false;
  if (sp->basis->dims[1] != 1 || sp->basis->dims[0] % 2 || sp->basis->dims[0] < 2 ||
      attr_int(stft, "pads", 0) || *node_in(stft, 2))
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "%s: STFT Conv %s: basis %s must be [2*bins, 1, n_fft] without bias or padding",
            cx->path, stft->name, sp->basis->name);
  {
    const onnx_attr *p = find_attr(stft, "pads");
    if (p && (p->n_ints != 2 || p->ints[0] || p->ints[1]))
      VS_FAIL(err, VS_ERROR_UNSUPPORTED, false, "%s: STFT Conv %s is padded", cx->path, stft->name);
  }
  sp->n_bins = (int)sp->basis->dims[0] / 2;
  sp->n_fft = (int)sp->basis->dims[2];

  int ch[2], fr[2];
  int64_t che[2];
  if (!(sl1 = expect(&m, "Slice", err)) || !chained(&m, stft, sl1, err) ||
      !match_slice(&m, sl1, 2 * sp->n_bins, &ch[0], &che[0], &fr[0], err))
    return false;
  if (!(sl2 = expect(&m, "Slice", err)) || !chained(&m, stft, sl2, err) ||
      !match_slice(&m, sl2, 2 * sp->n_bins, &ch[1], &che[1], &fr[1], err))
    return false;
  int re = ch[0] == 0 ? 0 : 1, im = 1 - re;
  if (ch[re] != 0 || che[re] != sp->n_bins || ch[im] != sp->n_bins || che[im] != 2 * sp->n_bins ||
      fr[0] != fr[1])
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "%s: Slices %s and %s do not split the STFT into real and imaginary halves of %d bins "
            "with the same frames",
            cx->path, sl1->name, sl2->name, sp->n_bins);
  sp->drop_frames = fr[0];

  if (!(pw1 = expect(&m, "Pow", err)) || !(pw2 = expect(&m, "Pow", err))) return false;
  const onnx_node *pws[2] = {pw1, pw2};
  for (int k = 0; k < 2; k++) {
    const onnx_tensor *e = expect_init(&m, pws[k], 1, 1, -1, err);
    if (!e) return false;
    if (e->n != 1 || e->f[0] != 2.0f)
      VS_FAIL(err, VS_ERROR_UNSUPPORTED, false, "%s: Pow %s is not a square", cx->path,
              pws[k]->name);
  }
  bool pw_ok = (!strcmp(node_in(pw1, 0), g_ptr_array_index(sl1->outputs, 0)) &&
                !strcmp(node_in(pw2, 0), g_ptr_array_index(sl2->outputs, 0))) ||
               (!strcmp(node_in(pw1, 0), g_ptr_array_index(sl2->outputs, 0)) &&
                !strcmp(node_in(pw2, 0), g_ptr_array_index(sl1->outputs, 0)));
  if (!pw_ok)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false, "%s: Pow nodes do not square the two slices",
            cx->path);
  if (!(add = expect(&m, "Add", err)) || !(sq = expect(&m, "Sqrt", err)) ||
      !chained(&m, add, sq, err))
    return false;

  /* Encoder: Conv+ReLU pairs until the Transpose that feeds the LSTM. */
  prev = sq;
  while (m.at < g->nodes->len &&
         strcmp(((const onnx_node *)g_ptr_array_index(g->nodes, m.at))->op, "Conv") == 0) {
    if (sp->n_conv == VAD_MAX_CONV)
      VS_FAIL(err, VS_ERROR_UNSUPPORTED, false, "%s: more than %d encoder convolutions", cx->path,
              VAD_MAX_CONV);
    n = expect(&m, "Conv", err);
    if (!chained(&m, prev, n, err)) return false;
    int c = sp->n_conv;
    if (!(sp->conv[c].w = expect_init(&m, n, 1, 1, 3, err)) ||
        !(sp->conv[c].b = expect_init(&m, n, 2, 1, 1, err)) ||
        !conv_attrs(&m, n, &sp->conv[c].stride, &sp->conv[c].pad, err))
      return false;
    int64_t in_ch = c == 0 ? sp->n_bins : sp->conv[c - 1].w->dims[0];
    if (sp->conv[c].w->dims[1] != in_ch || sp->conv[c].b->dims[0] != sp->conv[c].w->dims[0])
      VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
              "%s: Conv %s: weight %s does not take %" G_GINT64_FORMAT " channels", cx->path,
              n->name, sp->conv[c].w->name, in_ch);
    prev = n;
    if (!(n = expect(&m, "Relu", err)) || !chained(&m, prev, n, err)) return false;
    prev = n;
    sp->n_conv++;
  }
  if (sp->n_conv == 0)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false, "%s: no encoder convolutions", cx->path);

  if (!(n = expect(&m, "Transpose", err)) || !chained(&m, prev, n, err)) return false;
  const onnx_attr *perm = find_attr(n, "perm");
  if (!perm || perm->n_ints != 3 || perm->ints[0] != 0 || perm->ints[1] != 2 || perm->ints[2] != 1)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false, "%s: Transpose %s is not perm [0, 2, 1]", cx->path,
            n->name);
  prev = n;

  if (!(n = expect(&m, "LSTM", err)) || !chained(&m, prev, n, err)) return false;
  sp->hidden = (int)attr_int(n, "hidden_size", 0);
  const onnx_attr *dir = find_attr(n, "direction");
  if (sp->hidden <= 0 || (dir && dir->s && strcmp(dir->s, "forward") != 0) ||
      find_attr(n, "activations") || find_attr(n, "clip") || attr_int(n, "input_forget", 0) ||
      attr_int(n, "layout", 0) || *node_in(n, 4) || (n->inputs->len > 7 && *node_in(n, 7)))
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "%s: LSTM %s is not a plain forward LSTM with default activations", cx->path, n->name);
  int64_t H = sp->hidden, in = sp->conv[sp->n_conv - 1].w->dims[0];
  if (!(sp->lstm_w = expect_init(&m, n, 1, 1, 3, err)) ||
      !(sp->lstm_r = expect_init(&m, n, 2, 1, 3, err)) ||
      !(sp->lstm_b = expect_init(&m, n, 3, 1, 2, err)))
    return false;
  if (sp->lstm_w->dims[0] != 1 || sp->lstm_w->dims[1] != 4 * H || sp->lstm_w->dims[2] != in ||
      sp->lstm_r->dims[0] != 1 || sp->lstm_r->dims[1] != 4 * H || sp->lstm_r->dims[2] != H ||
      sp->lstm_b->dims[0] != 1 || sp->lstm_b->dims[1] != 8 * H)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "%s: LSTM %s weights do not match hidden size %d and input %" G_GINT64_FORMAT, cx->path,
            n->name, sp->hidden, in);
  if (!*node_in(n, 5) || !*node_in(n, 6))
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false, "%s: LSTM %s has no state inputs", cx->path, n->name);
  prev = n;

  if (!(n = expect(&m, "Squeeze", err)) || !chained(&m, prev, n, err)) return false;
  prev = n;
  if (!(n = expect(&m, "Relu", err)) || !chained(&m, prev, n, err)) return false;
  prev = n;
  if (!(n = expect(&m, "Transpose", err)) || !chained(&m, prev, n, err)) return false;
  prev = n;
  if (!(n = expect(&m, "Conv", err)) || !chained(&m, prev, n, err)) return false;
  if (!(sp->out_w = expect_init(&m, n, 1, 1, 3, err)) ||
      !(sp->out_b = expect_init(&m, n, 2, 1, 1, err)))
    return false;
  if (sp->out_w->dims[0] != 1 || sp->out_w->dims[1] != H || sp->out_w->dims[2] != 1 ||
      sp->out_b->n != 1)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false,
            "%s: decoder Conv %s is not a 1x1 projection of %d channels to one", cx->path, n->name,
            sp->hidden);
  prev = n;
  if (!(n = expect(&m, "Sigmoid", err)) || !chained(&m, prev, n, err)) return false;
  prev = n;
  if (!(n = expect(&m, "Reshape", err)) || !chained(&m, prev, n, err)) return false;
  if (m.at != g->nodes->len)
    VS_FAIL(err, VS_ERROR_UNSUPPORTED, false, "%s: %u unexpected nodes after the output", cx->path,
            g->nodes->len - m.at);
  return true;
}

/* ------------------------------------------------------------------------------------------ */
/* HDF5 helpers                                                                                */

typedef struct {
  H5E_auto2_t func;
  void *data;
} h5_quiet;

/* HDF5 prints its own error stack by default; our GErrors say what went wrong instead. */
static h5_quiet h5_quiet_begin(void) {
  h5_quiet q;
  H5Eget_auto2(H5E_DEFAULT, &q.func, &q.data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  return q;
}
static void h5_quiet_end(h5_quiet q) {
  H5Eset_auto2(H5E_DEFAULT, q.func, q.data);
}

static bool h5_attr_int(hid_t obj, const char *name, int value) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  bool ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT, &value) >= 0;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return ok;
}

static bool h5_attr_str(hid_t obj, const char *name, const char *value) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, strlen(value) + 1);
  H5Tset_strpad(t, H5T_STR_NULLTERM);
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  bool ok = a >= 0 && H5Awrite(a, t, value) >= 0;
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  return ok;
}

/* Creates intermediate groups; returns the dataset id (caller closes) or -1. */
static hid_t h5_write_f32(hid_t file, const char *path, int ndims, const hsize_t *dims,
                          const float *data) {
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t sp = H5Screate_simple(ndims, dims, NULL);
  hid_t d = H5Dcreate2(file, path, H5T_IEEE_F32LE, sp, lcpl, H5P_DEFAULT, H5P_DEFAULT);
  if (d >= 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0) {
    H5Dclose(d);
    d = -1;
  }
  H5Sclose(sp);
  H5Pclose(lcpl);
  return d;
}

static bool write_h5(const char *tmp, const char *onnx_path, const vad_spec *sp, GError **err) {
  hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (f < 0)
    VS_FAIL(err, VS_ERROR_IO, false,
            "%s: cannot create HDF5 file (does the folder exist and is it writable?)", tmp);
  bool ok = true;
  const char *fail = NULL;
  hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
  H5Pset_create_intermediate_group(lcpl, 1);
  hid_t root = H5Gcreate2(f, "/vad", lcpl, H5P_DEFAULT, H5P_DEFAULT);
  H5Pclose(lcpl);
  gchar *base = g_path_get_basename(onnx_path);
  ok = root >= 0 && h5_attr_str(root, "model", "silero-vad-v6") &&
       h5_attr_int(root, "format_version", 1) &&
       h5_attr_int(root, "sample_rate", VS_VAD_SAMPLE_RATE) &&
       h5_attr_int(root, "window_samples", VS_VAD_WINDOW) &&
       h5_attr_int(root, "context_samples", VS_VAD_CONTEXT) &&
       h5_attr_str(root, "converted_from", base) && h5_attr_int(root, "n_conv", sp->n_conv);
  g_free(base);
  if (!ok) fail = "/vad attributes";

  if (ok) {
    hsize_t dims[2] = {(hsize_t)sp->basis->dims[0], (hsize_t)sp->basis->dims[2]};
    hid_t d = h5_write_f32(f, "/vad/stft/basis", 2, dims, sp->basis->f);
    ok = d >= 0 && h5_attr_int(d, "n_fft", sp->n_fft) && h5_attr_int(d, "hop", sp->hop) &&
         h5_attr_int(d, "n_bins", sp->n_bins) && h5_attr_int(d, "reflect_pad_left", sp->pad_left) &&
         h5_attr_int(d, "reflect_pad_right", sp->pad_right) &&
         h5_attr_int(d, "dropped_leading_frames", sp->drop_frames) &&
         h5_attr_str(d, "layout",
                     "rows [0, n_bins): real part; [n_bins, 2 n_bins): imaginary "
                     "part; magnitude = sqrt(re^2 + im^2)");
    if (d >= 0) H5Dclose(d);
    if (!ok) fail = "/vad/stft/basis";
  }
  for (int c = 0; ok && c < sp->n_conv; c++) {
    char path[64];
    snprintf(path, sizeof path, "/vad/encoder/conv%d/weight", c);
    hsize_t wd[3] = {(hsize_t)sp->conv[c].w->dims[0], (hsize_t)sp->conv[c].w->dims[1],
                     (hsize_t)sp->conv[c].w->dims[2]};
    hid_t d = h5_write_f32(f, path, 3, wd, sp->conv[c].w->f);
    ok = d >= 0 && h5_attr_int(d, "stride", sp->conv[c].stride) &&
         h5_attr_int(d, "padding", sp->conv[c].pad) &&
         h5_attr_str(d, "layout", "[out_channels][in_channels][kernel]; followed by ReLU");
    if (d >= 0) H5Dclose(d);
    snprintf(path, sizeof path, "/vad/encoder/conv%d/bias", c);
    hsize_t bd[1] = {wd[0]};
    if (ok && (d = h5_write_f32(f, path, 1, bd, sp->conv[c].b->f)) >= 0)
      H5Dclose(d);
    else
      ok = false;
    if (!ok) fail = path;
  }
  if (ok) {
    int H = sp->hidden, in = (int)sp->lstm_w->dims[2];
    hsize_t wd[2] = {(hsize_t)(4 * H), (hsize_t)in}, rd[2] = {(hsize_t)(4 * H), (hsize_t)H},
            bd[1] = {(hsize_t)(4 * H)};
    hid_t d = h5_write_f32(f, "/vad/decoder/lstm/input_weight", 2, wd, sp->lstm_w->f);
    ok = d >= 0 && h5_attr_int(d, "hidden_size", H) &&
         h5_attr_str(d, "gate_order", "i, o, f, c (ONNX LSTM)");
    if (d >= 0) H5Dclose(d);
    if (ok &&
        (d = h5_write_f32(f, "/vad/decoder/lstm/recurrent_weight", 2, rd, sp->lstm_r->f)) >= 0)
      H5Dclose(d);
    else
      ok = false;
    if (ok && (d = h5_write_f32(f, "/vad/decoder/lstm/input_bias", 1, bd, sp->lstm_b->f)) >= 0)
      H5Dclose(d);
    else
      ok = false;
    if (ok && (d = h5_write_f32(f, "/vad/decoder/lstm/recurrent_bias", 1, bd,
                                sp->lstm_b->f + 4 * H)) >= 0)
      H5Dclose(d);
    else
      ok = false;
    hsize_t od[1] = {(hsize_t)H}, obd[1] = {1};
    if (ok && (d = h5_write_f32(f, "/vad/decoder/output/weight", 1, od, sp->out_w->f)) >= 0) {
      ok = h5_attr_str(d, "layout", "ReLU(h) . weight + bias, then sigmoid");
      H5Dclose(d);
    } else
      ok = false;
    if (ok && (d = h5_write_f32(f, "/vad/decoder/output/bias", 1, obd, sp->out_b->f)) >= 0)
      H5Dclose(d);
    else
      ok = false;
    if (!ok) fail = "/vad/decoder";
  }
  if (root >= 0) H5Gclose(root);
  if (H5Fclose(f) < 0 && ok) {
    ok = false;
    fail = "closing the file";
  }
  if (!ok) VS_FAIL(err, VS_ERROR_HDF5, false, "%s: cannot write %s", tmp, fail);
  return true;
}

bool vs_vad_convert_onnx(const char *onnx_path, const char *out_h5, GError **err) {
  gchar *bytes = NULL;
  gsize len = 0;
  GError *local = NULL;
  if (!g_file_get_contents(onnx_path, &bytes, &len, &local)) {
    g_set_error(err, VS_ERROR, VS_ERROR_IO, "%s: cannot read: %s", onnx_path, local->message);
    g_error_free(local);
    return false;
  }
  if (len == 0) {
    g_free(bytes);
    VS_FAIL(err, VS_ERROR_FORMAT, false, "%s: empty file, not an ONNX model", onnx_path);
  }
  pb_ctx cx = {onnx_path, (const uint8_t *)bytes};
  pb_buf b = {(const uint8_t *)bytes, (const uint8_t *)bytes + len};
  onnx_graph g = {0};
  vad_spec sp;
  bool ok = parse_model(&cx, b, &g, err) && match_graph(&cx, &g, &sp, err);
  if (ok) {
    char *tmp = vs_fs_temp_path(out_h5);
    h5_quiet q = h5_quiet_begin();
    ok = write_h5(tmp, onnx_path, &sp, err);
    h5_quiet_end(q);
    if (ok) ok = vs_fs_publish(tmp, out_h5, err);
    if (!ok) unlink(tmp);
    g_free(tmp);
  }
  graph_clear(&g);
  g_free(bytes);
  return ok;
}

/* ------------------------------------------------------------------------------------------ */
/* Model                                                                                       */

struct vs_vad_model {
  int n_fft, hop, n_bins, pad_left, pad_right, drop_frames;
  int in_len;     /* samples per step: context + window = 576 */
  int padded_len; /* after reflect padding */
  int n_frames;   /* STFT frames kept */
  int n_spec;     /* columns of basis_t: 2*n_bins rounded up to a whole vector */
  float *basis_t; /* host, [n_fft][n_spec], re then im, zero beyond 2*n_bins */
  int n_conv;
  struct {
    int in, out, k, stride, pad, len_in, len_out;
    int len_pad; /* input frames with the zero padding on both sides */
    int ld;      /* out rounded up to a whole vector */
    float *w;    /* host, [k][in][ld]: one conv output frame is then a product with k * in
                  * consecutive input floats (k frames, time-major), read in place */
    float *b;    /* host, [ld] */
  } conv[VAD_MAX_CONV];
  int max_len; /* most frames of any layer, per window */
  int hidden, lstm_in;
  int n_gates;  /* 4H rounded up to a whole vector */
  float *w_t;   /* host, [lstm_in][n_gates], gates i, o, f, c */
  float *r_t;   /* host, [H][n_gates] */
  float *bias;  /* host, [n_gates]: input bias + recurrent bias */
  float *out_w; /* host, [H] */
  float out_b;
  bool avx2; /* AVX2 + FMA products; fixed at load so every call of this model rounds alike */
};

struct vs_vad_state {
  float *h, *c;                  /* host, [H] */
  float context[VS_VAD_CONTEXT]; /* last samples of the previous window */
  int block;                     /* windows the scratch below holds */
  float *padded;                 /* host scratch, [block][padded_len] */
  float *spec;                   /* host scratch, [block * n_frames][n_spec] */
  float *act[VAD_MAX_CONV];      /* host scratch, [block][len_pad][in] of each conv; the padding
                                  * frames stay zero */
  float *lstm_x;                 /* host scratch, [block][lstm_in] */
  float *gates;                  /* host scratch, [block][n_gates] */
  const float **a_rows;          /* host scratch, [block * max_len] */
  float **c_rows;                /* host scratch, [block * max_len] */
  int hidden, n_conv;
};

static float *h5_read_f32(hid_t f, const char *h5_path, const char *path, int ndims, hsize_t *dims,
                          GError **err) {
  hid_t d = H5Dopen2(f, path, H5P_DEFAULT);
  if (d < 0)
    VS_FAIL(err, VS_ERROR_MODEL, NULL, "%s: dataset %s is missing (not a converted Silero VAD?)",
            h5_path, path);
  hid_t sp = H5Dget_space(d);
  int nd = H5Sget_simple_extent_ndims(sp);
  hsize_t got[8] = {0};
  if (nd == ndims) H5Sget_simple_extent_dims(sp, got, NULL);
  H5Sclose(sp);
  bool shape_ok = nd == ndims;
  for (int i = 0; shape_ok && i < ndims; i++)
    shape_ok = dims[i] == 0 ? (dims[i] = got[i]) > 0 : got[i] == dims[i];
  if (!shape_ok) {
    H5Dclose(d);
    VS_FAIL(err, VS_ERROR_MODEL, NULL, "%s: dataset %s has an unexpected shape (rank %d)", h5_path,
            path, nd);
  }
  size_t n = 1;
  for (int i = 0; i < ndims; i++)
    n *= dims[i];
  float *buf = g_new(float, n);
  if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0) {
    H5Dclose(d);
    g_free(buf);
    VS_FAIL(err, VS_ERROR_MODEL, NULL, "%s: cannot read dataset %s", h5_path, path);
  }
  H5Dclose(d);
  return buf;
}

static bool h5_read_attr_int(hid_t f, const char *h5_path, const char *obj, const char *name,
                             int *value, GError **err) {
  hid_t a = H5Aopen_by_name(f, obj, name, H5P_DEFAULT, H5P_DEFAULT);
  if (a < 0)
    VS_FAIL(err, VS_ERROR_MODEL, false, "%s: attribute %s of %s is missing", h5_path, name, obj);
  bool ok = H5Aread(a, H5T_NATIVE_INT, value) >= 0;
  H5Aclose(a);
  if (!ok)
    VS_FAIL(err, VS_ERROR_MODEL, false, "%s: cannot read attribute %s of %s", h5_path, name, obj);
  return true;
}

void vs_vad_free(vs_vad_model *m) {
  if (!m) return;
  g_free(m->basis_t);
  for (int c = 0; c < VAD_MAX_CONV; c++) {
    g_free(m->conv[c].w);
    g_free(m->conv[c].b);
  }
  g_free(m->w_t);
  g_free(m->r_t);
  g_free(m->bias);
  g_free(m->out_w);
  g_free(m);
}

/* Floats per vector of the products below; weight rows are padded to whole vectors so that
 * the kernels load them without a tail case. */
#define VAD_VEC 8

static int round_vec(int n) {
  return (n + VAD_VEC - 1) / VAD_VEC * VAD_VEC;
}

/* [rows][cols] -> [cols][ld], zero beyond rows */
static float *transpose(const float *a, size_t rows, size_t cols, size_t ld) {
  float *t = g_new0(float, cols *ld);
  for (size_t r = 0; r < rows; r++)
    for (size_t c = 0; c < cols; c++)
      t[c * ld + r] = a[r * cols + c];
  return t;
}

static bool load_tensors(vs_vad_model *m, hid_t f, const char *path, GError **err) {
  int version, rate, window, context;
  if (!h5_read_attr_int(f, path, "/vad", "format_version", &version, err) ||
      !h5_read_attr_int(f, path, "/vad", "sample_rate", &rate, err) ||
      !h5_read_attr_int(f, path, "/vad", "window_samples", &window, err) ||
      !h5_read_attr_int(f, path, "/vad", "context_samples", &context, err) ||
      !h5_read_attr_int(f, path, "/vad", "n_conv", &m->n_conv, err))
    return false;
  if (version != 1 || rate != VS_VAD_SAMPLE_RATE || window != VS_VAD_WINDOW ||
      context != VS_VAD_CONTEXT || m->n_conv < 1 || m->n_conv > VAD_MAX_CONV)
    VS_FAIL(err, VS_ERROR_MODEL, false,
            "%s: unsupported VAD file (format %d, %d Hz, window %d, context %d, %d convs)", path,
            version, rate, window, context, m->n_conv);
  const char *bp = "/vad/stft/basis";
  if (!h5_read_attr_int(f, path, bp, "n_fft", &m->n_fft, err) ||
      !h5_read_attr_int(f, path, bp, "hop", &m->hop, err) ||
      !h5_read_attr_int(f, path, bp, "n_bins", &m->n_bins, err) ||
      !h5_read_attr_int(f, path, bp, "reflect_pad_left", &m->pad_left, err) ||
      !h5_read_attr_int(f, path, bp, "reflect_pad_right", &m->pad_right, err) ||
      !h5_read_attr_int(f, path, bp, "dropped_leading_frames", &m->drop_frames, err))
    return false;
  m->in_len = VS_VAD_WINDOW + VS_VAD_CONTEXT;
  m->padded_len = m->pad_left + m->in_len + m->pad_right;
  /* reflect padding needs pad < input length; the frames must fit the padded input */
  if (m->n_fft < 1 || m->hop < 1 || m->n_bins < 1 || m->pad_left < 0 || m->pad_right < 0 ||
      m->pad_left >= m->in_len || m->pad_right >= m->in_len || m->n_fft > m->padded_len)
    VS_FAIL(err, VS_ERROR_MODEL, false, "%s: inconsistent STFT attributes of %s", path, bp);
  int all_frames = (m->padded_len - m->n_fft) / m->hop + 1;
  m->n_frames = all_frames - m->drop_frames;
  if (m->drop_frames < 0 || m->n_frames < 1)
    VS_FAIL(err, VS_ERROR_MODEL, false, "%s: %s drops %d of %d frames", path, bp, m->drop_frames,
            all_frames);
  hsize_t bd[2] = {(hsize_t)(2 * m->n_bins), (hsize_t)m->n_fft};
  float *basis = h5_read_f32(f, path, bp, 2, bd, err);
  if (!basis) return false;
  m->n_spec = round_vec(2 * m->n_bins);
  m->basis_t = transpose(basis, bd[0], bd[1], (size_t)m->n_spec);
  g_free(basis);

  int ch = m->n_bins, len = m->n_frames;
  m->max_len = len;
  for (int c = 0; c < m->n_conv; c++) {
    char wp[64], bpth[64];
    snprintf(wp, sizeof wp, "/vad/encoder/conv%d/weight", c);
    snprintf(bpth, sizeof bpth, "/vad/encoder/conv%d/bias", c);
    hsize_t wd[3] = {0, (hsize_t)ch, 0};
    float *w = h5_read_f32(f, path, wp, 3, wd, err);
    if (!w) return false;
    int out = (int)wd[0], k = (int)wd[2];
    hsize_t bdims[1] = {(hsize_t)out};
    float *b = h5_read_f32(f, path, bpth, 1, bdims, err);
    const int ld = round_vec(out);
    if (b) {
      m->conv[c].b = g_new0(float, ld);
      memcpy(m->conv[c].b, b, sizeof(float) * (size_t)out);
      g_free(b);
    }
    if (!m->conv[c].b || !h5_read_attr_int(f, path, wp, "stride", &m->conv[c].stride, err) ||
        !h5_read_attr_int(f, path, wp, "padding", &m->conv[c].pad, err)) {
      g_free(w);
      return false;
    }
    int s = m->conv[c].stride, p = m->conv[c].pad;
    int len_out = s >= 1 && p >= 0 ? (len + 2 * p - k) / s + 1 : 0;
    if (len_out < 1) {
      g_free(w);
      VS_FAIL(err, VS_ERROR_MODEL, false, "%s: %s: stride %d, padding %d give no output", path, wp,
              s, p);
    }
    m->conv[c].in = ch;
    m->conv[c].out = out;
    m->conv[c].k = k;
    m->conv[c].len_in = len;
    m->conv[c].len_out = len_out;
    m->conv[c].len_pad = len + 2 * p;
    m->conv[c].ld = ld;
    /* [out][in][k] -> [k][in][ld] */
    m->conv[c].w = g_new0(float, (size_t)k *ch *ld);
    for (int o = 0; o < out; o++)
      for (int i = 0; i < ch; i++)
        for (int j = 0; j < k; j++)
          m->conv[c].w[((size_t)j * ch + i) * ld + o] = w[((size_t)o * ch + i) * k + j];
    g_free(w);
    ch = out;
    len = len_out;
    if (len > m->max_len) m->max_len = len;
  }
  if (len != 1)
    VS_FAIL(err, VS_ERROR_MODEL, false,
            "%s: the encoder ends with %d frames per window; the LSTM needs exactly 1", path, len);

  hsize_t wd[2] = {0, (hsize_t)ch};
  float *w = h5_read_f32(f, path, "/vad/decoder/lstm/input_weight", 2, wd, err);
  if (!w) return false;
  if (wd[0] % 4) {
    g_free(w);
    VS_FAIL(err, VS_ERROR_MODEL, false, "%s: /vad/decoder/lstm/input_weight rows not 4*hidden",
            path);
  }
  m->hidden = (int)wd[0] / 4;
  m->lstm_in = ch;
  int H = m->hidden;
  m->n_gates = round_vec(4 * H);
  m->w_t = transpose(w, (size_t)4 * H, (size_t)ch, (size_t)m->n_gates);
  g_free(w);
  hsize_t rd[2] = {(hsize_t)(4 * H), (hsize_t)H}, bd1[1] = {(hsize_t)(4 * H)};
  float *r = h5_read_f32(f, path, "/vad/decoder/lstm/recurrent_weight", 2, rd, err);
  if (!r) return false;
  m->r_t = transpose(r, (size_t)4 * H, (size_t)H, (size_t)m->n_gates);
  g_free(r);
  float *bi = h5_read_f32(f, path, "/vad/decoder/lstm/input_bias", 1, bd1, err);
  if (!bi) return false;
  float *br = h5_read_f32(f, path, "/vad/decoder/lstm/recurrent_bias", 1, bd1, err);
  if (!br) {
    g_free(bi);
    return false;
  }
  m->bias = g_new0(float, m->n_gates);
  for (int i = 0; i < 4 * H; i++)
    m->bias[i] = bi[i] + br[i];
  g_free(bi);
  g_free(br);
  hsize_t od[1] = {(hsize_t)H}, obd[1] = {1};
  if (!(m->out_w = h5_read_f32(f, path, "/vad/decoder/output/weight", 1, od, err))) return false;
  float *ob = h5_read_f32(f, path, "/vad/decoder/output/bias", 1, obd, err);
  if (!ob) return false;
  m->out_b = ob[0];
  g_free(ob);
  return true;
}

static bool have_avx2(void);

vs_vad_model *vs_vad_load(const char *h5_path, GError **err) {
  h5_quiet q = h5_quiet_begin();
  if (access(h5_path, R_OK) != 0) {
    h5_quiet_end(q);
    VS_FAIL_ERRNO(err, NULL, "cannot read VAD model", h5_path);
  }
  hid_t f = H5Fopen(h5_path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (f < 0) {
    h5_quiet_end(q);
    VS_FAIL(err, VS_ERROR_FORMAT, NULL, "%s: not an HDF5 file", h5_path);
  }
  vs_vad_model *m = g_new0(vs_vad_model, 1);
  bool ok = load_tensors(m, f, h5_path, err);
  /* VOXSHARD_VAD_PLAIN: the portable products on any CPU, so tests can cover them */
  m->avx2 = have_avx2() && !g_getenv("VOXSHARD_VAD_PLAIN");
  H5Fclose(f);
  h5_quiet_end(q);
  if (!ok) {
    vs_vad_free(m);
    return NULL;
  }
  return m;
}

/* ------------------------------------------------------------------------------------------ */
/* Forward pass                                                                                */

static vs_vad_state *state_new(const vs_vad_model *m, int block) {
  vs_vad_state *s = g_new0(vs_vad_state, 1);
  s->hidden = m->hidden;
  s->n_conv = m->n_conv;
  s->block = block;
  s->h = g_new0(float, m->hidden);
  s->c = g_new0(float, m->hidden);
  s->padded = g_new0(float, (size_t)block * m->padded_len);
  s->spec = g_new0(float, (size_t)block * m->n_frames * m->n_spec);
  for (int c = 0; c < m->n_conv; c++)
    s->act[c] = g_new0(float, (size_t)block * m->conv[c].len_pad * m->conv[c].in);
  s->lstm_x = g_new0(float, (size_t)block * m->lstm_in);
  s->gates = g_new0(float, (size_t)block * m->n_gates);
  s->a_rows = g_new0(const float *, (size_t)block * m->max_len);
  s->c_rows = g_new0(float *, (size_t)block * m->max_len);
  return s;
}

vs_vad_state *vs_vad_state_init(const vs_vad_model *m) {
  return state_new(m, 1);
}

void vs_vad_state_free(vs_vad_state *s) {
  if (!s) return;
  g_free(s->h);
  g_free(s->c);
  g_free(s->padded);
  g_free(s->spec);
  for (int c = 0; c < s->n_conv; c++)
    g_free(s->act[c]);
  g_free(s->lstm_x);
  g_free(s->gates);
  g_free(s->a_rows);
  g_free(s->c_rows);
  g_free(s);
}

void vs_vad_state_reset(vs_vad_state *s) {
  memset(s->h, 0, sizeof(float) * (size_t)s->hidden);
  memset(s->c, 0, sizeof(float) * (size_t)s->hidden);
  memset(s->context, 0, sizeof s->context);
}

static inline float sigmoidf(float x) {
  return 1.0f / (1.0f + expf(-x));
}

/* Every layer is one product C = init + A B over the rows of a block of windows (STFT frames,
 * conv output frames, LSTM inputs): A by row pointers, so that overlapping STFT frames and conv
 * receptive fields are read in place, B the weights as [k][ldb]. Each element of C starts from
 * its init and adds a[i] * b[i] for i = 0, 1, ..., k-1 in that order, one rounding per term,
 * whatever the block size and whichever tile the element falls in. A window's result therefore
 * does not depend on the windows beside it, and vs_vad_process_window (a block of one) equals
 * vs_vad_probabilities bit for bit. */
enum { INIT_ZERO, INIT_BIAS, INIT_C };

typedef struct {
  int m, n, k;
  const float *const *a; /* [m] row pointers, k floats each */
  const float *b;        /* [k][ldb], zero beyond column n */
  int ldb;               /* a multiple of VAD_VEC */
  int init;              /* start from zero, from bias, or from C itself */
  const float *bias;     /* [ldb] for INIT_BIAS */
  float *const *c;       /* [m] row pointers, n floats each */
  bool relu;
} vad_gemm;

/* Any CPU: axpys over contiguous outputs, which the compiler vectorises without reordering a
 * sum (and, with -ffp-contract=off, without fusing a multiply-add on some rows only). */
static void gemm_plain(const vad_gemm *g) {
  for (int r = 0; r < g->m; r++) {
    float *c = g->c[r];
    const float *a = g->a[r];
    if (g->init == INIT_ZERO)
      memset(c, 0, sizeof(float) * (size_t)g->n);
    else if (g->init == INIT_BIAS)
      memcpy(c, g->bias, sizeof(float) * (size_t)g->n);
    for (int i = 0; i < g->k; i++) {
      const float *row = g->b + (size_t)i * g->ldb;
      const float v = a[i];
      for (int o = 0; o < g->n; o++)
        c[o] += row[o] * v;
    }
    if (g->relu)
      for (int o = 0; o < g->n; o++)
        c[o] = c[o] > 0.0f ? c[o] : 0.0f;
  }
}

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define VAD_AVX2 __attribute__((target("avx2,fma")))

/* One tile of mr rows by nv vectors of columns, held in registers across the whole k loop; the
 * callers pass constants so that the arrays below become registers. The last vector of a row may
 * be partial (masked): C rows are packed against each other. */
VAD_AVX2 __attribute__((always_inline)) static inline void
tile_avx2(const vad_gemm *g, int r0, const int mr, int col, const int nv) {
  __m256 acc[4][8];
  const float *a[4];
  const int tail = g->n - col - VAD_VEC * (nv - 1); /* columns in the last vector */
  const __m256i mask =
      _mm256_cmpgt_epi32(_mm256_set1_epi32(tail), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  for (int r = 0; r < mr; r++) {
    a[r] = g->a[r0 + r];
    const float *c = g->c[r0 + r] + col;
    for (int v = 0; v < nv; v++)
      acc[r][v] = g->init == INIT_ZERO            ? _mm256_setzero_ps()
                  : g->init == INIT_BIAS          ? _mm256_loadu_ps(g->bias + col + VAD_VEC * v)
                  : v < nv - 1 || tail >= VAD_VEC ? _mm256_loadu_ps(c + VAD_VEC * v)
                                                  : _mm256_maskload_ps(c + VAD_VEC * v, mask);
  }
  const float *b = g->b + col;
  for (int i = 0; i < g->k; i++, b += g->ldb) {
    if (mr == 1) {
      const __m256 x = _mm256_broadcast_ss(a[0] + i);
      for (int v = 0; v < nv; v++)
        acc[0][v] = _mm256_fmadd_ps(x, _mm256_loadu_ps(b + VAD_VEC * v), acc[0][v]);
    } else {
      __m256 w[4];
      for (int v = 0; v < nv; v++)
        w[v] = _mm256_loadu_ps(b + VAD_VEC * v);
      for (int r = 0; r < mr; r++) {
        const __m256 x = _mm256_broadcast_ss(a[r] + i);
        for (int v = 0; v < nv; v++)
          acc[r][v] = _mm256_fmadd_ps(x, w[v], acc[r][v]);
      }
    }
  }
  for (int r = 0; r < mr; r++) {
    float *c = g->c[r0 + r] + col;
    for (int v = 0; v < nv; v++) {
      __m256 y = g->relu ? _mm256_max_ps(acc[r][v], _mm256_setzero_ps()) : acc[r][v];
      if (v < nv - 1 || tail >= VAD_VEC)
        _mm256_storeu_ps(c + VAD_VEC * v, y);
      else
        _mm256_maskstore_ps(c + VAD_VEC * v, mask, y);
    }
  }
}

/* Tiles of 4 rows x 3 vectors (12 accumulators, 3 weight vectors, 1 broadcast: all 16 ymm
 * registers); the column panel (k x 24 floats) stays in L1 while the rows stream past it. A
 * single row (the recurrent LSTM step) takes 8 vectors at a time instead, so that 8 independent
 * sums hide the FMA latency. ReLU's max(x, 0) gives +0 for -0 and NaN, as x > 0 ? x : 0 does. */
VAD_AVX2 static void gemm_avx2(const vad_gemm *g) {
  const int n_vec = (g->n + VAD_VEC - 1) / VAD_VEC;
#define VAD_TILE(MR, NV)                                                                           \
  case MR * 16 + NV:                                                                               \
    tile_avx2(g, r0, MR, col, NV);                                                                 \
    break;
  const int max_mr = g->m == 1 ? 1 : 4, max_nv = g->m == 1 ? 8 : 3;
  for (int v0 = 0; v0 < n_vec; v0 += max_nv) {
    const int col = v0 * VAD_VEC, nv = n_vec - v0 < max_nv ? n_vec - v0 : max_nv;
    for (int r0 = 0; r0 < g->m; r0 += max_mr) {
      const int mr = g->m - r0 < max_mr ? g->m - r0 : max_mr;
      /* clang-format off */
      switch (mr * 16 + nv) {
      VAD_TILE(1, 1) VAD_TILE(1, 2) VAD_TILE(1, 3) VAD_TILE(1, 4)
      VAD_TILE(1, 5) VAD_TILE(1, 6) VAD_TILE(1, 7) VAD_TILE(1, 8)
      VAD_TILE(2, 1) VAD_TILE(2, 2) VAD_TILE(2, 3)
      VAD_TILE(3, 1) VAD_TILE(3, 2) VAD_TILE(3, 3)
      VAD_TILE(4, 1) VAD_TILE(4, 2) VAD_TILE(4, 3)
      }
      /* clang-format on */
    }
  }
#undef VAD_TILE
}
#endif

static bool have_avx2(void) {
#if defined(__x86_64__) || defined(__i386__)
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

static void gemm(const vs_vad_model *m, const vad_gemm *g) {
#if defined(__x86_64__) || defined(__i386__)
  if (m->avx2) {
    gemm_avx2(g);
    return;
  }
#endif
  gemm_plain(g);
}

/* The LSTM cell on gates g (i, o, f, c; H each): c = f c + i tanh(g_c), h = o tanh(c). libm's
 * expf and tanhf are a call per element (and tanhf goes through expm1f): a quarter of the
 * forward pass; this loop vectorises instead. tanh(x) = 2 / (1 + exp(-2x)) - 1 is within ~1e-7
 * of libm's, which the probabilities do not notice (tests/test_vad.c compares with
 * onnxruntime). Without FP contraction every clone rounds alike; -fno-trapping-math lets GCC
 * turn vs_vec_expf's clamps into selects. */
__attribute__((target_clones("avx2", "default"))) static void lstm_cell(int H, const float *g,
                                                                        float *c, float *h) {
  for (int j = 0; j < H; j++) {
    const float ig = 1.0f / (1.0f + vs_vec_expf(-g[j]));
    const float og = 1.0f / (1.0f + vs_vec_expf(-g[H + j]));
    const float fg = 1.0f / (1.0f + vs_vec_expf(-g[2 * H + j]));
    const float cand = 2.0f / (1.0f + vs_vec_expf(-2.0f * g[3 * H + j])) - 1.0f;
    c[j] = fg * c[j] + ig * cand;
    h[j] = og * (2.0f / (1.0f + vs_vec_expf(-2.0f * c[j])) - 1.0f);
  }
}

/* Reflect padding around the m->in_len samples at pad + pad_left (the edge sample excluded). */
static void reflect_pad(const vs_vad_model *m, float *pad) {
  const int L = m->in_len, pl = m->pad_left, pr = m->pad_right;
  const float *x = pad + pl;
  for (int j = 0; j < pl; j++)
    pad[j] = x[pl - j];
  for (int k = 0; k < pr; k++)
    pad[pl + L + k] = x[L - 2 - k];
}

/* Probabilities of nw <= s->block windows whose padded inputs are in s->padded (padded_len
 * floats apart), in order: the STFT and the encoder do not depend on the LSTM state, so they run
 * as products over the whole block (the weights are read once per block, not once per window);
 * then the LSTM steps through the windows. Updates h and c. */
static void forward_block(const vs_vad_model *m, vs_vad_state *s, int nw, float *probs) {
  const int F = m->n_frames, B = m->n_bins;
  const float **a = s->a_rows;
  float **c = s->c_rows;

  /* STFT: one row per frame, read in place from the overlapping padded input */
  for (int w = 0; w < nw; w++)
    for (int t = 0; t < F; t++) {
      a[w * F + t] = s->padded + (size_t)w * m->padded_len + (size_t)(t + m->drop_frames) * m->hop;
      c[w * F + t] = s->spec + (size_t)(w * F + t) * m->n_spec;
    }
  gemm(m, &(vad_gemm){.m = nw * F,
                      .n = 2 * B,
                      .k = m->n_fft,
                      .a = a,
                      .b = m->basis_t,
                      .ldb = m->n_spec,
                      .init = INIT_ZERO,
                      .c = c});
  /* magnitude, time-major, between the first conv's padding frames */
  const int p0 = m->conv[0].pad;
  for (int w = 0; w < nw; w++)
    for (int t = 0; t < F; t++) {
      const float *sp = s->spec + (size_t)(w * F + t) * m->n_spec;
      float *out = s->act[0] + ((size_t)w * m->conv[0].len_pad + p0 + t) * B;
      for (int k = 0; k < B; k++)
        out[k] = sqrtf(sp[k] * sp[k] + sp[B + k] * sp[B + k]);
    }

  /* encoder: Conv1d + ReLU; row (w, t) reads k input frames from frame t * stride of the padded
   * input, and writes into the next layer's padded input (or the LSTM input) */
  for (int l = 0; l < m->n_conv; l++) {
    const int in = m->conv[l].in, out = m->conv[l].out, L = m->conv[l].len_out;
    const bool last = l == m->n_conv - 1;
    for (int w = 0; w < nw; w++)
      for (int t = 0; t < L; t++) {
        a[w * L + t] =
            s->act[l] + ((size_t)w * m->conv[l].len_pad + (size_t)t * m->conv[l].stride) * in;
        c[w * L + t] =
            last ? s->lstm_x + (size_t)w * out /* L == 1, checked at load */
                 : s->act[l + 1] +
                       ((size_t)w * m->conv[l + 1].len_pad + m->conv[l + 1].pad + t) * out;
      }
    gemm(m, &(vad_gemm){.m = nw * L,
                        .n = out,
                        .k = m->conv[l].k * in,
                        .a = a,
                        .b = m->conv[l].w,
                        .ldb = m->conv[l].ld,
                        .init = INIT_BIAS,
                        .bias = m->conv[l].b,
                        .c = c,
                        .relu = true});
  }

  /* LSTM input projection, all windows at once; gates i, o, f, c (ONNX order) */
  const int H = m->hidden, G = m->n_gates;
  for (int w = 0; w < nw; w++) {
    a[w] = s->lstm_x + (size_t)w * m->lstm_in;
    c[w] = s->gates + (size_t)w * G;
  }
  gemm(m, &(vad_gemm){.m = nw,
                      .n = 4 * H,
                      .k = m->lstm_in,
                      .a = a,
                      .b = m->w_t,
                      .ldb = G,
                      .init = INIT_BIAS,
                      .bias = m->bias,
                      .c = c});

  /* the recurrent part, window by window */
  for (int w = 0; w < nw; w++) {
    float *g = s->gates + (size_t)w * G;
    const float *h = s->h;
    gemm(m,
         &(vad_gemm){
             .m = 1, .n = 4 * H, .k = H, .a = &h, .b = m->r_t, .ldb = G, .init = INIT_C, .c = &g});
    lstm_cell(H, g, s->c, s->h);
    float logit = m->out_b;
    for (int j = 0; j < H; j++)
      logit += (s->h[j] > 0.0f ? s->h[j] : 0.0f) * m->out_w[j];
    probs[w] = sigmoidf(logit);
  }
}

float vs_vad_process_window(const vs_vad_model *m, vs_vad_state *s, const float *samples512) {
  float *x = s->padded + m->pad_left;
  memcpy(x, s->context, sizeof s->context);
  memcpy(x + VS_VAD_CONTEXT, samples512, sizeof(float) * VS_VAD_WINDOW);
  memcpy(s->context, samples512 + VS_VAD_WINDOW - VS_VAD_CONTEXT, sizeof s->context);
  reflect_pad(m, s->padded);
  float p;
  forward_block(m, s, 1, &p);
  return p;
}

/* Windows per block in vs_vad_probabilities: enough rows for the products to run at full speed
 * and to read each weight matrix once per 64 windows; the block's activations (~1 MB) stay in
 * L2. */
#define VAD_BLOCK 64

bool vs_vad_probabilities(const vs_vad_model *m, const float *audio, size_t n, float **probs,
                          size_t *n_probs, GError **err) {
  if (!audio && n) VS_FAIL(err, VS_ERROR_INTERNAL, false, "VAD: NULL audio with %zu samples", n);
  const size_t W = VS_VAD_WINDOW, C = VS_VAD_CONTEXT;
  const size_t nw = n / W + 1; /* np.pad by W - n % W: always at least one sample of padding */
  float *out = g_new(float, nw);
  vs_vad_state *s = state_new(m, nw < VAD_BLOCK ? (int)nw : VAD_BLOCK);
  for (size_t w0 = 0; w0 < nw; w0 += (size_t)s->block) {
    const int nb = nw - w0 < (size_t)s->block ? (int)(nw - w0) : s->block;
    for (int b = 0; b < nb; b++) {
      const size_t w = w0 + (size_t)b;
      float *pad = s->padded + (size_t)b * m->padded_len, *x = pad + m->pad_left;
      /* x = [tail of window w-1 | window w], zero beyond the audio */
      if (w * W >= C && w * W + W <= n)
        memcpy(x, audio + w * W - C, sizeof(float) * (C + W));
      else
        for (size_t j = 0; j < C + W; j++) {
          ptrdiff_t src = (ptrdiff_t)(w * W + j) - (ptrdiff_t)C;
          x[j] = src >= 0 && (size_t)src < n ? audio[src] : 0.0f;
        }
      /* faster-whisper writes the zero context of window 0 through a view of the last window's
       * tail, so that window sees its own last 64 samples as zeros */
      if (w == nw - 1)
        for (size_t j = W; j < C + W; j++)
          x[j] = 0.0f;
      reflect_pad(m, pad);
    }
    forward_block(m, s, nb, out + w0);
  }
  vs_vad_state_free(s);
  *probs = out;
  *n_probs = nw;
  return true;
}

/* ------------------------------------------------------------------------------------------ */
/* faster-whisper's get_speech_timestamps and collect_chunks                                   */

vs_vad_options vs_vad_default_options(void) {
  return (vs_vad_options){.threshold = 0.5,
                          .neg_threshold = -1.0,
                          .min_speech_duration_ms = 0,
                          .max_speech_duration_s = INFINITY,
                          .min_silence_duration_ms = 2000,
                          .speech_pad_ms = 400};
}

vs_vad_options vs_vad_batched_options(double chunk_length_s) {
  vs_vad_options o = vs_vad_default_options();
  o.max_speech_duration_s = chunk_length_s;
  o.min_silence_duration_ms = 160;
  return o;
}

typedef struct {
  int64_t start, end;
} seg64;

static int64_t floordiv2(int64_t v) {
  return v >= 0 ? v / 2 : -((-v + 1) / 2);
}

bool vs_vad_segments_from_probs(const float *probs, size_t n_probs, size_t n,
                                const vs_vad_options *opt, vs_vad_segment **segs, size_t *n_segs,
                                GError **err) {
  if (!(opt->threshold >= 0.0 && opt->threshold <= 1.0) || opt->neg_threshold > 1.0 ||
      opt->min_speech_duration_ms < 0 || opt->min_silence_duration_ms < 0 ||
      opt->speech_pad_ms < 0 || !(opt->max_speech_duration_s > 0.0))
    VS_FAIL(err, VS_ERROR_CONFIG, false,
            "VAD options out of range (threshold %g, neg_threshold %g, min_speech %d ms, max "
            "speech %g s, min_silence %d ms, pad %d ms)",
            opt->threshold, opt->neg_threshold, opt->min_speech_duration_ms,
            opt->max_speech_duration_s, opt->min_silence_duration_ms, opt->speech_pad_ms);
  const double sr = VS_VAD_SAMPLE_RATE;
  const int64_t W = VS_VAD_WINDOW;
  const double min_speech = sr * opt->min_speech_duration_ms / 1000;
  const double pad = sr * opt->speech_pad_ms / 1000;
  const double max_speech = sr * opt->max_speech_duration_s - W - 2 * pad;
  const double min_silence = sr * opt->min_silence_duration_ms / 1000;
  const double min_silence_at_max = sr * 98 / 1000;
  double neg = opt->neg_threshold;
  if (neg < 0) neg = fmax(opt->threshold - 0.15, 0.01);
  const float thr_f = (float)opt->threshold, neg_f = (float)neg;

  GArray *out = g_array_new(false, false, sizeof(seg64));
  bool triggered = false, have_cur = false;
  seg64 cur = {0, 0};
  int64_t temp_end = 0, prev_end = 0, next_start = 0;
  for (size_t i = 0; i < n_probs; i++) {
    const float p = probs[i];
    const int64_t pos = W * (int64_t)i;
    if (p >= thr_f && temp_end) {
      temp_end = 0;
      if (next_start < prev_end) next_start = pos;
    }
    if (p >= thr_f && !triggered) {
      triggered = true;
      cur.start = pos;
      have_cur = true;
      continue;
    }
    if (triggered && (double)(pos - cur.start) > max_speech) {
      if (prev_end) {
        cur.end = prev_end;
        g_array_append_val(out, cur);
        have_cur = false;
        /* silence already reached before the cut and no speech since: stop here */
        if (next_start < prev_end)
          triggered = false;
        else {
          cur.start = next_start;
          have_cur = true;
        }
        prev_end = next_start = temp_end = 0;
      } else {
        cur.end = pos;
        g_array_append_val(out, cur);
        have_cur = false;
        prev_end = next_start = temp_end = 0;
        triggered = false;
        continue;
      }
    }
    if (p < neg_f && triggered) {
      if (!temp_end) temp_end = pos;
      if ((double)(pos - temp_end) > min_silence_at_max) prev_end = temp_end;
      if ((double)(pos - temp_end) < min_silence) continue;
      cur.end = temp_end;
      if ((double)(cur.end - cur.start) > min_speech) g_array_append_val(out, cur);
      have_cur = false;
      prev_end = next_start = temp_end = 0;
      triggered = false;
      continue;
    }
  }
  if (have_cur && (double)((int64_t)n - cur.start) > min_speech) {
    cur.end = (int64_t)n;
    g_array_append_val(out, cur);
  }

  seg64 *sp = (seg64 *)out->data;
  const size_t ns = out->len;
  for (size_t i = 0; i < ns; i++) {
    if (i == 0) sp[i].start = (int64_t)fmax(0.0, (double)sp[i].start - pad);
    if (i != ns - 1) {
      const int64_t silence = sp[i + 1].start - sp[i].end;
      if ((double)silence < 2 * pad) {
        sp[i].end += floordiv2(silence);
        sp[i + 1].start = MAX(0, sp[i + 1].start - floordiv2(silence));
      } else {
        sp[i].end = (int64_t)fmin((double)n, (double)sp[i].end + pad);
        sp[i + 1].start = (int64_t)fmax(0.0, (double)sp[i + 1].start - pad);
      }
    } else {
      sp[i].end = (int64_t)fmin((double)n, (double)sp[i].end + pad);
    }
  }
  *n_segs = ns;
  *segs = NULL;
  if (ns) {
    *segs = g_new(vs_vad_segment, ns);
    for (size_t i = 0; i < ns; i++)
      (*segs)[i] = (vs_vad_segment){(size_t)sp[i].start, (size_t)sp[i].end};
  }
  g_array_unref(out);
  return true;
}

bool vs_vad_speech_segments(const vs_vad_model *m, const float *audio, size_t n,
                            const vs_vad_options *opt, vs_vad_segment **segs, size_t *n_segs,
                            GError **err) {
  float *probs = NULL;
  size_t np = 0;
  if (!vs_vad_probabilities(m, audio, n, &probs, &np, err)) return false;
  bool ok = vs_vad_segments_from_probs(probs, np, n, opt, segs, n_segs, err);
  g_free(probs);
  return ok;
}

vs_vad_chunk_list *vs_vad_chunks(const vs_vad_segment *segs, size_t n_segs, double max_duration_s,
                                 GError **err) {
  if (!(max_duration_s > 0.0))
    VS_FAIL(err, VS_ERROR_CONFIG, NULL, "VAD chunking: max duration %g s must be positive",
            max_duration_s);
  for (size_t i = 0; i < n_segs; i++)
    if (segs[i].end <= segs[i].start || (i && segs[i].start < segs[i - 1].end))
      VS_FAIL(err, VS_ERROR_INTERNAL, NULL,
              "VAD chunking: segment %zu [%zu, %zu) is empty or overlaps the previous one", i,
              segs[i].start, segs[i].end);
  vs_vad_chunk_list *l = g_new0(vs_vad_chunk_list, 1);
  l->pieces = g_new0(vs_vad_piece, n_segs ? n_segs : 1);
  l->chunks = g_new0(vs_vad_chunk, n_segs ? n_segs : 1);
  l->n_pieces = n_segs;
  const double max_samples = max_duration_s * VS_VAD_SAMPLE_RATE;
  size_t total = 0; /* concatenated speech before the current chunk */
  vs_vad_chunk *cur = NULL;
  for (size_t i = 0; i < n_segs; i++) {
    const size_t len = segs[i].end - segs[i].start;
    if (!cur || (cur->n_pieces && (double)(cur->n_samples + len) > max_samples)) {
      if (cur) total += cur->n_samples;
      cur = &l->chunks[l->n_chunks++];
      cur->speech_offset = total;
      cur->pieces = &l->pieces[i];
    }
    l->pieces[i] = (vs_vad_piece){segs[i].start, segs[i].end, cur->n_samples};
    cur->n_samples += len;
    cur->n_pieces++;
  }
  return l;
}

void vs_vad_chunk_list_free(vs_vad_chunk_list *l) {
  if (!l) return;
  g_free(l->pieces);
  g_free(l->chunks);
  g_free(l);
}

size_t vs_vad_chunk_to_source(const vs_vad_chunk *c, size_t s, bool is_end) {
  for (size_t i = 0; i < c->n_pieces; i++) {
    const vs_vad_piece *p = &c->pieces[i];
    const size_t end = p->chunk_offset + (p->src_end - p->src_start);
    if (s < end || (is_end && s == end))
      return p->src_start + (s > p->chunk_offset ? s - p->chunk_offset : 0);
  }
  return c->n_pieces ? c->pieces[c->n_pieces - 1].src_end : 0;
}
