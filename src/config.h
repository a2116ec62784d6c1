/* Job settings: a table of options per command, filled from defaults, then a GKeyFile .ini
 * (`--config FILE`, group named after the command, plus an optional [common] group), then
 * command-line flags. An unknown key or a bad value is an error that names the file (or the
 * flag), the group and the key.
 *
 * Flags: --key=value, --key value, --flag / --no-flag for booleans. Everything that is not an
 * option is a positional argument, kept in order.
 */
#ifndef VS_CONFIG_H
#define VS_CONFIG_H

#include <glib.h>
#include <stdbool.h>
#include <stddef.h>

typedef enum {
  VS_OPT_STRING,
  VS_OPT_INT,
  VS_OPT_DOUBLE,
  VS_OPT_BOOL,
  VS_OPT_CHOICE, /* one of `choices`, written "a|b|c" */
} vs_opt_type;

typedef struct {
  const char *key;           /* "shard-seconds": same spelling in .ini files and as --flag */
  vs_opt_type type;
  const char *default_value; /* text form; NULL = unset (get_string returns NULL) */
  const char *help;
  const char *choices;       /* VS_OPT_CHOICE only */
  double min, max;           /* numbers: checked when min < max */
} vs_opt_spec;

typedef struct vs_config vs_config;

vs_config *vs_config_new(const char *command, const vs_opt_spec *specs, size_t n_specs);
void vs_config_free(vs_config *cfg);

/* Reads group [common] (keys this command does not know there are skipped) and group
 * [<command>] (every key must be known) from a GKeyFile. */
bool vs_config_load_file(vs_config *cfg, const char *path, GError **err);

/* Parses argv[1..argc): handles --config first wherever it stands, then applies flags in order.
 * Sets *want_help when --help/-h is given. */
bool vs_config_parse_args(vs_config *cfg, int argc, char **argv, bool *want_help, GError **err);

/* A command's first step: parses argv; on --help prints the help and sets *exit_code 0, on a
 * bad option prints "voxshard COMMAND: message" and sets *exit_code 2. Returns true when the
 * command should go on. */
bool vs_config_parse_or_help(vs_config *cfg, int argc, char **argv, const char *usage,
                             const char *summary, int *exit_code);

/* Sets one option from its text form, as a flag would; `origin` names the source in errors. */
bool vs_config_set(vs_config *cfg, const char *key, const char *value, const char *origin,
                   GError **err);

const char *vs_config_get_string(const vs_config *cfg, const char *key);
long vs_config_get_int(const vs_config *cfg, const char *key);
double vs_config_get_double(const vs_config *cfg, const char *key);
bool vs_config_get_bool(const vs_config *cfg, const char *key);
/* Whether the value came from a file or a flag rather than the default. */
bool vs_config_is_set(const vs_config *cfg, const char *key);

size_t vs_config_n_positionals(const vs_config *cfg);
const char *vs_config_positional(const vs_config *cfg, size_t i);

/* "key = value" lines of the effective settings, for logs and job summaries. */
char *vs_config_dump(const vs_config *cfg);

void vs_config_print_help(const vs_config *cfg, const char *usage, const char *summary);

#endif
