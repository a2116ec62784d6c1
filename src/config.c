#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "vs_error.h"

struct vs_config {
  char *command;
  const vs_opt_spec *specs;
  size_t n_specs;
  char **values; /* per spec, owned; NULL = unset */
  bool *explicitly_set;
  GPtrArray *positionals;
};

static ptrdiff_t find_spec(const vs_config *cfg, const char *key) {
  for (size_t i = 0; i < cfg->n_specs; i++)
    if (strcmp(cfg->specs[i].key, key) == 0) return (ptrdiff_t)i;
  return -1;
}

static bool parse_bool(const char *v, bool *out) {
  if (!g_ascii_strcasecmp(v, "true") || !strcmp(v, "1") || !g_ascii_strcasecmp(v, "yes") ||
      !g_ascii_strcasecmp(v, "on")) {
    *out = true;
    return true;
  }
  if (!g_ascii_strcasecmp(v, "false") || !strcmp(v, "0") || !g_ascii_strcasecmp(v, "no") ||
      !g_ascii_strcasecmp(v, "off")) {
    *out = false;
    return true;
  }
  return false;
}

static bool choice_ok(const char *choices, const char *v) {
  gchar **parts = g_strsplit(choices, "|", -1);
  bool ok = false;
  for (gchar **p = parts; *p; p++)
    if (strcmp(*p, v) == 0) ok = true;
  g_strfreev(parts);
  return ok;
}

/* Validates `value` against the spec; the message names origin and key. */
static bool validate(const vs_opt_spec *s, const char *value, const char *origin, GError **err) {
  char *end = NULL;
  switch (s->type) {
  case VS_OPT_STRING:
    return true;
  case VS_OPT_INT: {
    errno = 0;
    long long v = strtoll(value, &end, 10);
    if (errno || end == value || *end)
      VS_FAIL(err, VS_ERROR_CONFIG, false, "%s: option '%s': '%s' is not an integer", origin,
              s->key, value);
    if (s->min < s->max && (v < s->min || v > s->max))
      VS_FAIL(err, VS_ERROR_CONFIG, false, "%s: option '%s': %lld is outside [%g, %g]", origin,
              s->key, v, s->min, s->max);
    return true;
  }
  case VS_OPT_DOUBLE: {
    errno = 0;
    double v = g_ascii_strtod(value, &end);
    if (errno || end == value || *end || !isfinite(v))
      VS_FAIL(err, VS_ERROR_CONFIG, false, "%s: option '%s': '%s' is not a number", origin, s->key,
              value);
    if (s->min < s->max && (v < s->min || v > s->max))
      VS_FAIL(err, VS_ERROR_CONFIG, false, "%s: option '%s': %g is outside [%g, %g]", origin,
              s->key, v, s->min, s->max);
    return true;
  }
  case VS_OPT_BOOL: {
    bool b;
    if (!parse_bool(value, &b))
      VS_FAIL(err, VS_ERROR_CONFIG, false, "%s: option '%s': '%s' is not true or false", origin,
              s->key, value);
    return true;
  }
  case VS_OPT_CHOICE:
    if (!choice_ok(s->choices, value))
      VS_FAIL(err, VS_ERROR_CONFIG, false, "%s: option '%s': '%s' is not one of %s", origin,
              s->key, value, s->choices);
    return true;
  }
  return true;
}

vs_config *vs_config_new(const char *command, const vs_opt_spec *specs, size_t n_specs) {
  vs_config *cfg = g_new0(vs_config, 1);
  cfg->command = g_strdup(command);
  cfg->specs = specs;
  cfg->n_specs = n_specs;
  cfg->values = g_new0(char *, n_specs);
  cfg->explicitly_set = g_new0(bool, n_specs);
  cfg->positionals = g_ptr_array_new_with_free_func(g_free);
  for (size_t i = 0; i < n_specs; i++) {
    if (specs[i].default_value) {
      GError *e = NULL;
      if (!validate(&specs[i], specs[i].default_value, "built-in default", &e))
        VS_DIE("bad option table: %s", e->message); /* a programming error, not user input */
      cfg->values[i] = g_strdup(specs[i].default_value);
    }
  }
  return cfg;
}

void vs_config_free(vs_config *cfg) {
  if (!cfg) return;
  for (size_t i = 0; i < cfg->n_specs; i++) g_free(cfg->values[i]);
  g_free(cfg->values);
  g_free(cfg->explicitly_set);
  g_ptr_array_free(cfg->positionals, TRUE);
  g_free(cfg->command);
  g_free(cfg);
}

bool vs_config_set(vs_config *cfg, const char *key, const char *value, const char *origin,
                   GError **err) {
  ptrdiff_t i = find_spec(cfg, key);
  if (i < 0)
    VS_FAIL(err, VS_ERROR_CONFIG, false, "%s: unknown option '%s' for '%s' (see voxshard %s --help)",
            origin, key, cfg->command, cfg->command);
  if (!validate(&cfg->specs[i], value, origin, err)) return false;
  g_free(cfg->values[i]);
  cfg->values[i] = g_strdup(value);
  cfg->explicitly_set[i] = true;
  return true;
}

static bool load_group(vs_config *cfg, GKeyFile *kf, const char *path, const char *group,
                       bool strict, GError **err) {
  if (!g_key_file_has_group(kf, group)) return true;
  gsize n = 0;
  gchar **keys = g_key_file_get_keys(kf, group, &n, NULL);
  bool ok = true;
  for (gsize k = 0; k < n && ok; k++) {
    if (find_spec(cfg, keys[k]) < 0) {
      if (!strict) continue;
      g_set_error(err, VS_ERROR, VS_ERROR_CONFIG,
                  "%s: [%s]: unknown key '%s' (see voxshard %s --help)", path, group, keys[k],
                  cfg->command);
      ok = false;
      break;
    }
    GError *e = NULL;
    gchar *v = g_key_file_get_string(kf, group, keys[k], &e);
    if (!v) {
      g_set_error(err, VS_ERROR, VS_ERROR_CONFIG, "%s: [%s] %s: %s", path, group, keys[k],
                  e->message);
      g_error_free(e);
      ok = false;
      break;
    }
    gchar *origin = g_strdup_printf("%s: [%s]", path, group);
    ok = vs_config_set(cfg, keys[k], g_strstrip(v), origin, err);
    g_free(origin);
    g_free(v);
  }
  g_strfreev(keys);
  return ok;
}

bool vs_config_load_file(vs_config *cfg, const char *path, GError **err) {
  GKeyFile *kf = g_key_file_new();
  GError *e = NULL;
  if (!g_key_file_load_from_file(kf, path, G_KEY_FILE_NONE, &e)) {
    g_set_error(err, VS_ERROR, VS_ERROR_CONFIG, "%s: cannot read config: %s", path, e->message);
    g_error_free(e);
    g_key_file_free(kf);
    return false;
  }
  /* Groups for other commands are fine: one file can serve several jobs. */
  bool ok = load_group(cfg, kf, path, "common", false, err) &&
       load_group(cfg, kf, path, cfg->command, true, err);
  g_key_file_free(kf);
  return ok;
}

bool vs_config_parse_args(vs_config *cfg, int argc, char **argv, bool *want_help, GError **err) {
  *want_help = false;
  /* The file first, so that flags override it whatever their order. */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) break;
    const char *path = NULL;
    if (strncmp(a, "--config=", 9) == 0)
      path = a + 9;
    else if (strcmp(a, "--config") == 0) {
      if (i + 1 >= argc) VS_FAIL(err, VS_ERROR_CONFIG, false, "--config needs a file");
      path = argv[i + 1];
    }
    if (path && !vs_config_load_file(cfg, path, err)) return false;
  }
  bool only_positionals = false;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (only_positionals || a[0] != '-' || strcmp(a, "-") == 0) {
      g_ptr_array_add(cfg->positionals, g_strdup(a));
      continue;
    }
    if (strcmp(a, "--") == 0) {
      only_positionals = true;
      continue;
    }
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      *want_help = true;
      continue;
    }
    if (strncmp(a, "--", 2) != 0)
      VS_FAIL(err, VS_ERROR_CONFIG, false, "unknown flag '%s' (options are --key=value)", a);
    if (strcmp(a, "--config") == 0) {
      i++;
      continue;
    }
    if (strncmp(a, "--config=", 9) == 0) continue;
    const char *body = a + 2;
    const char *eq = strchr(body, '=');
    gchar *key = eq ? g_strndup(body, (gsize)(eq - body)) : g_strdup(body);
    const char *value = eq ? eq + 1 : NULL;
    gchar *origin = g_strdup_printf("flag --%s", key);
    ptrdiff_t s = find_spec(cfg, key);
    bool ok;
    if (s < 0 && !value && g_str_has_prefix(key, "no-") && find_spec(cfg, key + 3) >= 0 &&
        cfg->specs[find_spec(cfg, key + 3)].type == VS_OPT_BOOL) {
      ok = vs_config_set(cfg, key + 3, "false", origin, err);
    } else if (s >= 0 && cfg->specs[s].type == VS_OPT_BOOL && !value) {
      ok = vs_config_set(cfg, key, "true", origin, err);
    } else if (s >= 0 && !value) {
      if (i + 1 >= argc) {
        g_set_error(err, VS_ERROR, VS_ERROR_CONFIG,
                    "%s: missing value", origin);
        ok = false;
      } else {
        ok = vs_config_set(cfg, key, argv[++i], origin, err);
      }
    } else {
      ok = vs_config_set(cfg, key, value ? value : "", origin, err);
    }
    g_free(origin);
    g_free(key);
    if (!ok) return false;
  }
  return true;
}

static const char *raw(const vs_config *cfg, const char *key) {
  ptrdiff_t i = find_spec(cfg, key);
  if (i < 0) VS_DIE("option '%s' is not in the table of '%s'", key, cfg->command);
  return cfg->values[i];
}

const char *vs_config_get_string(const vs_config *cfg, const char *key) { return raw(cfg, key); }

long vs_config_get_int(const vs_config *cfg, const char *key) {
  const char *v = raw(cfg, key);
  return v ? strtol(v, NULL, 10) : 0;
}

double vs_config_get_double(const vs_config *cfg, const char *key) {
  const char *v = raw(cfg, key);
  return v ? g_ascii_strtod(v, NULL) : 0.0;
}

bool vs_config_get_bool(const vs_config *cfg, const char *key) {
  const char *v = raw(cfg, key);
  bool b = false;
  return v && parse_bool(v, &b) && b;
}

bool vs_config_is_set(const vs_config *cfg, const char *key) {
  ptrdiff_t i = find_spec(cfg, key);
  return i >= 0 && cfg->explicitly_set[i];
}

size_t vs_config_n_positionals(const vs_config *cfg) { return cfg->positionals->len; }

const char *vs_config_positional(const vs_config *cfg, size_t i) {
  return i < cfg->positionals->len ? g_ptr_array_index(cfg->positionals, i) : NULL;
}

char *vs_config_dump(const vs_config *cfg) {
  GString *s = g_string_new(NULL);
  for (size_t i = 0; i < cfg->n_specs; i++)
    g_string_append_printf(s, "%s = %s\n", cfg->specs[i].key,
                           cfg->values[i] ? cfg->values[i] : "");
  return g_string_free(s, FALSE);
}

void vs_config_print_help(const vs_config *cfg, const char *usage, const char *summary) {
  printf("usage: %s\n\n%s\n\noptions (also settable as keys in [%s] of a --config .ini file):\n",
         usage, summary, cfg->command);
  printf("  %-28s %s\n", "--config FILE", "read settings from a GKeyFile .ini; flags override it");
  for (size_t i = 0; i < cfg->n_specs; i++) {
    const vs_opt_spec *s = &cfg->specs[i];
    gchar *flag = s->type == VS_OPT_BOOL ? g_strdup_printf("--[no-]%s", s->key)
                  : s->type == VS_OPT_CHOICE ? g_strdup_printf("--%s=%s", s->key, s->choices)
                                             : g_strdup_printf("--%s=VALUE", s->key);
    printf("  %-28s %s", flag, s->help);
    if (s->default_value && s->default_value[0]) printf(" [default: %s]", s->default_value);
    printf("\n");
    g_free(flag);
  }
  printf("  %-28s %s\n", "--help", "this text");
}

bool vs_config_parse_or_help(vs_config *cfg, int argc, char **argv, const char *usage,
                             const char *summary, int *exit_code) {
  GError *err = NULL;
  bool help = false;
  if (!vs_config_parse_args(cfg, argc, argv, &help, &err)) {
    fprintf(stderr, "voxshard %s: %s\n", cfg->command, err->message);
    g_clear_error(&err);
    *exit_code = 2;
    return false;
  }
  if (help) {
    vs_config_print_help(cfg, usage, summary);
    *exit_code = 0;
    return false;
  }
  return true;
}
