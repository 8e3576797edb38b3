/* Provider configuration: OpenTelemetry defaults, caller options and OTEL_* environment variables.
 * One declarative table (env_table) names every variable with its type, target field, bounds,
 * default and meaning; the same rows set the defaults (profilis_provider_opts_init), parse and
 * validate the environment, check the caller's values and print the README reference, so the
 * four cannot drift apart. Bad values are logged and ignored, never fatal. */
#include <math.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "pf_config.h"
#include "pf_log.h"
#include "profilis/propagation.h"

typedef enum env_type {
  ENV_BOOL,    /* "true" / "false", case-insensitive */
  ENV_MS,      /* duration: milliseconds as a plain integer */
  ENV_TIMEOUT, /* like ENV_MS, but 0 means "no limit" (stored as UINT32_MAX) */
  ENV_COUNT,   /* plain integer */
  ENV_SIZE,    /* bytes, optionally with a KiB / MiB suffix */
  ENV_RATIO,   /* decimal number in [0, 1] */
  ENV_STRING,  /* copied as is */
  ENV_ENUM,    /* one name out of `choices` */
} env_type;

typedef struct env_choice {
  const char *name;
  int value;
} env_choice;

enum {
  ENV_FILL_DEFAULT = 1u << 0, /* string: `def` replaces NULL in the resolved config */
  ENV_DOC_DEFAULT = 1u << 1,  /* `def` is only documentation (set by code or another module) */
};

typedef struct env_var {
  const char *name;
  const char *alt; /* signal- or model-specific variable that wins over `name`; may be NULL */
  env_type type;
  unsigned flags;
  const char *field;         /* field name in profilis_provider_opts, for messages */
  size_t off, width;         /* the field; width 0 = the variable has no field of its own */
  uint32_t min, max;         /* bounds for the integer types */
  const env_choice *choices; /* ENV_ENUM, ended by a NULL name */
  const char *def;           /* default, written as an environment value */
  const char *doc;
} env_var;

#define FIELD(f) #f, offsetof(profilis_provider_opts, f), sizeof(((profilis_provider_opts *)0)->f)
#define NOFIELD NULL, 0, 0
#define U31 0x7fffffffu

static const env_choice sampler_choices[] = {
    {"always_on", PROFILIS_SAMPLER_ALWAYS_ON},
    {"always_off", PROFILIS_SAMPLER_ALWAYS_OFF},
    {"traceidratio", PROFILIS_SAMPLER_TRACEIDRATIO},
    {"parentbased_always_on", PROFILIS_SAMPLER_PARENTBASED_ALWAYS_ON},
    {"parentbased_always_off", PROFILIS_SAMPLER_PARENTBASED_ALWAYS_OFF},
    {"parentbased_traceidratio", PROFILIS_SAMPLER_PARENTBASED_TRACEIDRATIO},
    {NULL, 0}};
static const env_choice exporter_choices[] = {{"otlp", PROFILIS_EXPORTER_OTLP},
                                              {"console", PROFILIS_EXPORTER_CONSOLE},
                                              {"jsonl", PROFILIS_EXPORTER_JSONL},
                                              {"none", PROFILIS_EXPORTER_NONE},
                                              {NULL, 0}};
static const env_choice policy_choices[] = {
    {"drop", PROFILIS_QUEUE_DROP}, {"block", PROFILIS_QUEUE_BLOCK}, {NULL, 0}};
static const env_choice compression_choices[] = {{"none", 0}, {"gzip", 1}, {NULL, 0}};
static const env_choice protocol_choices[] = {{"grpc", 0}, {NULL, 0}};

/* Rows are applied in order; OTEL_BSP_MAX_QUEUE_SIZE must precede the batch size it bounds. */
static const env_var env_table[] = {
    {"OTEL_SDK_DISABLED", NULL, ENV_BOOL, 0, FIELD(disabled), 0, 0, NULL, "false",
     "`true` turns every span into a no-op"},
    {"OTEL_SERVICE_NAME", NULL, ENV_STRING, ENV_DOC_DEFAULT, FIELD(service_name), 0, 0, NULL,
     "`unknown_service:<process name>`",
     "`service.name` resource attribute; wins over "
     "`OTEL_RESOURCE_ATTRIBUTES`"},
    {"OTEL_RESOURCE_ATTRIBUTES", NULL, ENV_STRING, 0, FIELD(resource_attributes), 0, 0, NULL, NULL,
     "resource attributes `k=v,k2=v2`, percent-encoded; a malformed entry is skipped"},
    {"OTEL_TRACES_SAMPLER", NULL, ENV_ENUM, 0, FIELD(sampler), 0, 0, sampler_choices,
     "parentbased_always_on", "sampler for new spans"},
    {"OTEL_TRACES_SAMPLER_ARG", NULL, ENV_RATIO, 0, FIELD(sampler_ratio), 0, 0, NULL, "1.0",
     "sampling probability of the `traceidratio` samplers"},
    {"OTEL_PROPAGATORS", NULL, ENV_STRING, ENV_FILL_DEFAULT, FIELD(propagators), 0, 0, NULL,
     "tracecontext,baggage", "propagators: `tracecontext`, `baggage` or `none`"},
    {"OTEL_BSP_SCHEDULE_DELAY", NULL, ENV_MS, 0, FIELD(schedule_delay_ms), 0, U31, NULL, "5000",
     "delay between two exports of a partial batch"},
    {"OTEL_BSP_EXPORT_TIMEOUT", NULL, ENV_TIMEOUT, 0, FIELD(export_timeout_ms), 0, U31, NULL,
     "30000", "time allowed for one export, retries included"},
    {"OTEL_BSP_MAX_QUEUE_SIZE", NULL, ENV_COUNT, 0, FIELD(max_queue_size), 1, U31, NULL, "2048",
     "spans waiting for export; more are dropped (or wait, see the queue policy)"},
    {"OTEL_BSP_MAX_EXPORT_BATCH_SIZE", NULL, ENV_COUNT, 0, FIELD(max_export_batch_size), 1, U31,
     NULL, "512", "spans per export; at most the queue size"},
    {"PROFILIS_BSP_MAX_QUEUE_BYTES", NULL, ENV_SIZE, 0, FIELD(max_queue_bytes), 1, UINT32_MAX, NULL,
     "4MiB", "bytes of queued span records"},
    {"PROFILIS_BSP_QUEUE_POLICY", NULL, ENV_ENUM, 0, FIELD(queue_policy), 0, 0, policy_choices,
     "drop", "full queue: `drop` the span, or `block` the caller up to the block timeout"},
    {"PROFILIS_BSP_BLOCK_TIMEOUT", NULL, ENV_MS, 0, FIELD(block_timeout_ms), 0, U31, NULL, "100",
     "longest wait for queue room under the `block` policy"},
    {"OTEL_ATTRIBUTE_COUNT_LIMIT", "OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", ENV_COUNT, 0,
     FIELD(attribute_count_limit), 0, U31, NULL, "128", "attributes per span"},
    {"OTEL_ATTRIBUTE_VALUE_LENGTH_LIMIT", "OTEL_SPAN_ATTRIBUTE_VALUE_LENGTH_LIMIT", ENV_COUNT, 0,
     FIELD(attribute_value_length_limit), 0, U31, NULL, "0",
     "longest string attribute value in bytes; 0 = no limit"},
    {"OTEL_SPAN_EVENT_COUNT_LIMIT", NULL, ENV_COUNT, 0, FIELD(event_count_limit), 0, U31, NULL,
     "128", "events per span"},
    {"OTEL_SPAN_LINK_COUNT_LIMIT", NULL, ENV_COUNT, 0, FIELD(link_count_limit), 0, U31, NULL, "128",
     "links per span"},
    {"OTEL_EVENT_ATTRIBUTE_COUNT_LIMIT", NULL, ENV_COUNT, 0, FIELD(event_attribute_count_limit), 0,
     U31, NULL, "128", "attributes per event"},
    {"OTEL_LINK_ATTRIBUTE_COUNT_LIMIT", NULL, ENV_COUNT, 0, FIELD(link_attribute_count_limit), 0,
     U31, NULL, "128", "attributes per link"},
    {"OTEL_TRACES_EXPORTER", NULL, ENV_ENUM, 0, FIELD(exporter), 0, 0, exporter_choices, "otlp",
     "where spans go (`jsonl` is a Profilis extension)"},
    {"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", ENV_STRING,
     ENV_FILL_DEFAULT, FIELD(endpoint), 0, 0, NULL, "http://localhost:4317",
     "OTLP/gRPC collector; `https://` means TLS"},
    {"OTEL_EXPORTER_OTLP_HEADERS", "OTEL_EXPORTER_OTLP_TRACES_HEADERS", ENV_STRING, 0,
     FIELD(headers), 0, 0, NULL, NULL,
     "gRPC metadata `k=v,k2=v2`, percent-encoded; at most 64 pairs and 8 KiB"},
    {"OTEL_EXPORTER_OTLP_TIMEOUT", "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", ENV_TIMEOUT, 0,
     FIELD(timeout_ms), 0, U31, NULL, "10000", "time allowed for one export request"},
    {"OTEL_EXPORTER_OTLP_COMPRESSION", "OTEL_EXPORTER_OTLP_TRACES_COMPRESSION", ENV_ENUM, 0,
     FIELD(compression_gzip), 0, 0, compression_choices, "none", "request compression"},
    {"OTEL_EXPORTER_OTLP_INSECURE", "OTEL_EXPORTER_OTLP_TRACES_INSECURE", ENV_BOOL, ENV_DOC_DEFAULT,
     FIELD(insecure), 0, 0, NULL, "from the endpoint scheme",
     "`true` disables TLS for an endpoint without `http://` or `https://`"},
    {"OTEL_EXPORTER_OTLP_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CERTIFICATE", ENV_STRING, 0,
     FIELD(certificate), 0, 0, NULL, NULL, "PEM file of CAs that verify the collector"},
    {"OTEL_EXPORTER_OTLP_CLIENT_KEY", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_KEY", ENV_STRING, 0,
     FIELD(client_key), 0, 0, NULL, NULL, "PEM private key for mutual TLS"},
    {"OTEL_EXPORTER_OTLP_CLIENT_CERTIFICATE", "OTEL_EXPORTER_OTLP_TRACES_CLIENT_CERTIFICATE",
     ENV_STRING, 0, FIELD(client_certificate), 0, 0, NULL, NULL, "PEM certificate for mutual TLS"},
    {"OTEL_EXPORTER_OTLP_PROTOCOL", "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", ENV_ENUM, 0, NOFIELD, 0,
     0, protocol_choices, "grpc", "only `grpc` is supported; other values are ignored"},
    {"PROFILIS_JSONL_PATH", NULL, ENV_STRING, ENV_FILL_DEFAULT, FIELD(jsonl_path), 0, 0, NULL,
     "profilis-spans.jsonl", "output file of the `jsonl` exporter"},
};
#define ENV_TABLE_LEN (sizeof env_table / sizeof env_table[0])

/* ---- small helpers ---- */

static void *field_ptr(profilis_provider_opts *o, const env_var *v) { return (char *)o + v->off; }

/* Integer fields come in several widths (bool, enum, int, uint32_t); store through the width. */
static void store_int(void *p, size_t width, int64_t x) {
  if (width == 1) {
    bool b = x != 0;
    memcpy(p, &b, 1);
  } else if (width == 4) {
    uint32_t u = (uint32_t)x; /* two's complement bits for the signed fields too */
    memcpy(p, &u, 4);
  }
}

static int64_t load_int(const void *p, size_t width, bool is_unsigned) {
  if (width == 1) {
    bool b;
    memcpy(&b, p, 1);
    return b;
  }
  if (is_unsigned) {
    uint32_t u;
    memcpy(&u, p, 4);
    return u;
  }
  int32_t i;
  memcpy(&i, p, 4);
  return i;
}

static bool is_integer_type(env_type t) {
  return t == ENV_MS || t == ENV_TIMEOUT || t == ENV_COUNT || t == ENV_SIZE;
}

/* A value made safe for a log line: printable ASCII only, at most 80 bytes. */
static const char *printable(const char *s, char buf[96]) {
  size_t n = 0;
  for (; *s && n < 80; s++) buf[n++] = (*s >= 0x20 && *s < 0x7f) ? *s : '?';
  if (*s) {
    memcpy(buf + n, "...", 3);
    n += 3;
  }
  buf[n] = '\0';
  return buf;
}

static void trim(const char **s, size_t *len) {
  while (*len && (**s == ' ' || **s == '\t')) (*s)++, (*len)--;
  while (*len && ((*s)[*len - 1] == ' ' || (*s)[*len - 1] == '\t')) (*len)--;
}

/* Parses decimal digits only (no sign, no spaces); false on overflow past `max`. */
static bool parse_uint(const char *s, size_t len, uint64_t max, uint64_t *out) {
  if (len == 0) return false;
  uint64_t v = 0;
  for (size_t i = 0; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    uint64_t d = (uint64_t)(s[i] - '0');
    if (d > max || v > (max - d) / 10) return false; /* v * 10 + d would pass max */
    v = v * 10 + d;
  }
  *out = v;
  return true;
}

/* Bytes with an optional KiB/MiB/GiB suffix (case-insensitive, optional space before it). */
static bool parse_size(const char *s, size_t len, uint64_t *out) {
  static const struct {
    const char *suffix;
    uint64_t mult;
  } units[] = {{"kib", 1024u}, {"mib", 1024u * 1024u}, {"gib", 1024u * 1024u * 1024u}};
  uint64_t mult = 1;
  for (size_t i = 0; i < sizeof units / sizeof units[0]; i++) {
    if (len > 3 && strncasecmp(s + len - 3, units[i].suffix, 3) == 0) {
      mult = units[i].mult;
      len -= 3;
      trim(&s, &len);
      break;
    }
  }
  uint64_t v;
  if (!parse_uint(s, len, UINT32_MAX, &v) || v > UINT64_MAX / mult) return false;
  *out = v * mult;
  return true;
}

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

/* Locale-independent decimal: digits, optional fraction, optional exponent ("0.25", "1e-3").
 * strtod would honour the host application's LC_NUMERIC and misread "0.25" under a comma locale.
 * Digits past the 17th only shift the exponent, which is plenty for a probability. */
static bool parse_decimal(const char *s, size_t len, double *out) {
  size_t i = 0, digits = 0;
  uint64_t mant = 0;
  int exp10 = 0;
  bool frac = false;
  for (; i < len && (is_digit(s[i]) || (s[i] == '.' && !frac)); i++) {
    if (s[i] == '.') {
      frac = true;
      continue;
    }
    digits++;
    if (mant < 100000000000000000ull) {
      mant = mant * 10 + (uint64_t)(s[i] - '0');
      exp10 -= frac;
    } else {
      exp10 += !frac;
    }
  }
  if (digits == 0) return false;
  if (i < len && (s[i] == 'e' || s[i] == 'E')) {
    bool neg = i + 1 < len && s[i + 1] == '-';
    i += 1 + (i + 1 < len && (s[i + 1] == '-' || s[i + 1] == '+'));
    uint64_t e;
    if (!parse_uint(s + i, len - i, 400, &e)) return false;
    exp10 += neg ? -(int)e : (int)e;
    i = len;
  }
  if (i != len) return false;
  /* Powers of ten up to 1e22 are exact doubles, so one division rounds correctly. */
  double v = (double)mant, scale = 1.0;
  for (; exp10 > 0; exp10--) v *= 10.0;
  for (; exp10 < 0 && scale < 1e22; exp10++) scale *= 10.0;
  for (; exp10 < 0; exp10++) v /= 10.0;
  *out = v / scale;
  return true;
}

/* ---- parsing one value into its field ---- */

/* Maps an enum name (case-insensitive) to its value. */
static const char *parse_enum(const env_var *v, const char *s, size_t len, uint64_t *out) {
  for (const env_choice *c = v->choices; c->name; c++) {
    if (strlen(c->name) == len && strncasecmp(c->name, s, len) == 0) {
      *out = (uint64_t)c->value;
      return NULL;
    }
  }
  return "unknown or unsupported value";
}

/* Parses a non-string value of row v into *u (integers, booleans, enums) or *d (ratios).
 * Returns NULL, or why the value is unusable. */
static const char *parse_scalar(const env_var *v, const char *s, size_t len, uint64_t *u,
                                double *d) {
  switch (v->type) {
  case ENV_BOOL:
    if (len == 4 && strncasecmp(s, "true", 4) == 0) return *u = 1, NULL;
    if (len == 5 && strncasecmp(s, "false", 5) == 0) return *u = 0, NULL;
    return "expected true or false";
  case ENV_MS:
  case ENV_TIMEOUT:
  case ENV_COUNT:
    if (!parse_uint(s, len, UINT64_MAX, u)) return "expected a non-negative integer";
    return *u < v->min || *u > v->max ? "out of range" : NULL;
  case ENV_SIZE:
    if (!parse_size(s, len, u)) return "expected bytes, optionally with KiB or MiB";
    return *u < v->min || *u > v->max ? "out of range" : NULL;
  case ENV_RATIO:
    if (!parse_decimal(s, len, d) || !(*d >= 0.0 && *d <= 1.0))
      return "expected a number between 0 and 1";
    return NULL;
  case ENV_ENUM: return parse_enum(v, s, len, u);
  case ENV_STRING: break;
  }
  return "not a scalar";
}

/* Parses s (surrounding blanks ignored) for row v and stores it into o's field.
 * Returns NULL, or why the value is unusable (then o is untouched). */
static const char *parse_value(const env_var *v, const char *s, profilis_provider_opts *o) {
  size_t len = strlen(s);
  trim(&s, &len);
  uint64_t u = 0;
  double d = 0;
  const char *why = parse_scalar(v, s, len, &u, &d);
  if (why || !v->width) return why;
  if (v->type == ENV_RATIO)
    memcpy(field_ptr(o, v), &d, sizeof d);
  else
    store_int(field_ptr(o, v), v->width, (int64_t)u);
  return NULL;
}

void profilis_provider_opts_init(profilis_provider_opts *o) {
  if (!o) return;
  memset(o, 0, sizeof *o);
  o->size = (uint32_t)sizeof *o;
  o->use_env = true;
  o->insecure = -1; /* decided by the endpoint scheme unless set */
  for (size_t i = 0; i < ENV_TABLE_LEN; i++) {
    const env_var *v = &env_table[i];
    if (v->width && v->def && v->type != ENV_STRING && !(v->flags & ENV_DOC_DEFAULT))
      (void)parse_value(v, v->def, o); /* the table's defaults always parse */
  }
}

/* ---- owned strings ---- */

/* Points the string field at `off` at a private copy of s (NULL clears it), freeing the copy it
 * replaces. Returns 0 or PROFILIS_ENOMEM. */
static int set_string(pf_config *c, size_t off, const char *s) {
  const char **slot = (const char **)(void *)((char *)&c->o + off);
  char *dup = NULL;
  if (s && !(dup = strdup(s))) return PROFILIS_ENOMEM;
  for (size_t i = 0; i < c->n_owned; i++) {
    if (c->owned[i] != *slot) continue;
    free(c->owned[i]);
    c->owned[i] = dup ? dup : c->owned[--c->n_owned];
    *slot = dup;
    return 0;
  }
  *slot = dup;
  if (!dup) return 0;
  if (c->n_owned == sizeof c->owned / sizeof c->owned[0]) {
    free(dup);
    *slot = NULL;
    return PROFILIS_ENOMEM;
  }
  c->owned[c->n_owned++] = dup;
  return 0;
}

static int own_strings(pf_config *c) {
  for (size_t i = 0; i < ENV_TABLE_LEN; i++) {
    const env_var *v = &env_table[i];
    if (v->type != ENV_STRING || !v->width) continue;
    const char *cur;
    memcpy(&cur, field_ptr(&c->o, v), sizeof cur);
    int rc = set_string(c, v->off, cur);
    if (rc) return rc;
  }
  return 0;
}

/* ---- the caller's values ---- */

/* Starts from the defaults and copies what the caller's struct has (an older caller's smaller
 * struct leaves the newer fields at their defaults). */
static void copy_opts(profilis_provider_opts *dst, const profilis_provider_opts *src) {
  profilis_provider_opts_init(dst);
  if (!src) return;
  size_t n = src->size < sizeof *dst ? src->size : sizeof *dst;
  memcpy(dst, src, n);
  dst->size = (uint32_t)sizeof *dst;
}

/* Checks one caller-supplied field against its row; puts back the default when it is invalid. */
static void check_field(profilis_provider_opts *o, const env_var *v,
                        const profilis_provider_opts *defaults) {
  bool ok = true;
  if (v->type == ENV_RATIO) {
    double d;
    memcpy(&d, field_ptr(o, v), sizeof d);
    ok = d >= 0.0 && d <= 1.0; /* also false for NaN */
  } else if (is_integer_type(v->type)) {
    int64_t x = load_int(field_ptr(o, v), v->width, true);
    ok = v->type == ENV_TIMEOUT || (x >= v->min && x <= v->max); /* any u32 is a timeout */
  } else if (v->type == ENV_ENUM) {
    int64_t x = load_int(field_ptr(o, v), v->width, false);
    const env_choice *c = v->choices;
    while (c->name && c->value != x) c++;
    ok = c->name != NULL;
  }
  if (ok) return;
  pf_log(PF_LOG_WARN, "ignoring invalid provider option %s; using the default", v->field);
  memcpy(field_ptr(o, v), (const char *)defaults + v->off, v->width);
}

static void check_opts(profilis_provider_opts *o) {
  profilis_provider_opts d;
  profilis_provider_opts_init(&d);
  for (size_t i = 0; i < ENV_TABLE_LEN; i++)
    if (env_table[i].width && env_table[i].type != ENV_STRING && env_table[i].type != ENV_BOOL)
      check_field(o, &env_table[i], &d);
  if (o->insecure < -1 || o->insecure > 1) o->insecure = -1;
}

/* ---- the environment ---- */

/* Rules that involve more than one row. Returns NULL when the value may stay. */
static const char *cross_check(const env_var *v, const profilis_provider_opts *o) {
  if (v->off == offsetof(profilis_provider_opts, max_export_batch_size) &&
      o->max_export_batch_size > o->max_queue_size)
    return "larger than OTEL_BSP_MAX_QUEUE_SIZE";
  return NULL;
}

/* Applies one variable. Returns 0 (also for an ignored bad value) or PROFILIS_ENOMEM. */
static int apply_var(pf_config *c, const env_var *v, const char *name,
                     const char *(*getenv_fn)(const char *)) {
  const char *s = getenv_fn(name);
  if (!s || !*s) return 0; /* empty means unset */
  if (v->type == ENV_STRING) return v->width ? set_string(c, v->off, s) : 0;
  profilis_provider_opts trial = c->o;
  const char *why = parse_value(v, s, &trial);
  if (!why) why = cross_check(v, &trial);
  if (!why) {
    if (v->width) memcpy(field_ptr(&c->o, v), field_ptr(&trial, v), v->width);
    return 0;
  }
  char buf[96];
  pf_log(PF_LOG_WARN, "ignoring %s=\"%s\": %s", name, printable(s, buf), why);
  return 0;
}

static int apply_env(pf_config *c, const char *(*getenv_fn)(const char *)) {
  for (size_t i = 0; i < ENV_TABLE_LEN; i++) {
    const env_var *v = &env_table[i];
    int rc = apply_var(c, v, v->name, getenv_fn);
    if (!rc && v->alt) rc = apply_var(c, v, v->alt, getenv_fn);
    if (rc) return rc;
  }
  return 0;
}

/* ---- resolution ---- */

static int fill_string_defaults(pf_config *c) {
  for (size_t i = 0; i < ENV_TABLE_LEN; i++) {
    const env_var *v = &env_table[i];
    const char *cur;
    if (!(v->flags & ENV_FILL_DEFAULT)) continue;
    memcpy(&cur, field_ptr(&c->o, v), sizeof cur);
    if (cur && *cur) continue;
    int rc = set_string(c, v->off, v->def);
    if (rc) return rc;
  }
  return 0;
}

/* Rules across fields that the caller may also have broken. */
static void finish_numbers(profilis_provider_opts *o) {
  if (o->max_export_batch_size > o->max_queue_size) {
    pf_log(PF_LOG_INFO, "export batch size %u lowered to the queue size %u",
           o->max_export_batch_size, o->max_queue_size);
    o->max_export_batch_size = o->max_queue_size;
  }
  for (size_t i = 0; i < ENV_TABLE_LEN; i++) { /* OTel: a timeout of 0 means no limit */
    const env_var *v = &env_table[i];
    if (v->type == ENV_TIMEOUT && v->width && load_int(field_ptr(o, v), v->width, true) == 0)
      store_int(field_ptr(o, v), v->width, UINT32_MAX);
  }
}

static const char *real_getenv(const char *name) { return getenv(name); }

int pf_config_resolve(pf_config *out, const profilis_provider_opts *opts) {
  return pf_config_resolve_with(out, opts, real_getenv);
}

int pf_config_resolve_with(pf_config *c, const profilis_provider_opts *opts,
                           const char *(*getenv_fn)(const char *name)) {
  if (!c) return PROFILIS_EINVAL;
  memset(c, 0, sizeof *c);
  if (opts && opts->size < offsetof(profilis_provider_opts, use_env) + sizeof opts->use_env)
    return PROFILIS_EINVAL; /* not initialised with profilis_provider_opts_init */
  copy_opts(&c->o, opts);
  check_opts(&c->o);
  int rc = own_strings(c);
  if (!rc && c->o.use_env && getenv_fn) rc = apply_env(c, getenv_fn);
  if (!rc) rc = fill_string_defaults(c);
  if (!rc && c->o.headers) rc = pf_parse_kv_list(c->o.headers, &c->headers, &c->n_headers);
  if (rc) goto fail;
  finish_numbers(&c->o);
  if (profilis_propagators_parse(c->o.propagators, &c->propagators) != 0)
    c->propagators = PROFILIS_PROPAGATOR_TRACECONTEXT | PROFILIS_PROPAGATOR_BAGGAGE;
  pf_sampler_prepare(c);
  return 0;
fail:
  pf_config_free(c);
  return rc;
}

void pf_config_free(pf_config *c) {
  if (!c) return;
  for (size_t i = 0; i < c->n_owned; i++) free(c->owned[i]);
  pf_free_kv_list(c->headers, c->n_headers);
  memset(c, 0, sizeof *c);
}

/* ---- "k=v,k2=v2" lists ---- */

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

/* Percent-decodes s[0..len) into a new NUL-terminated string. Returns NULL (*bad set) for a
 * broken escape or an encoded NUL, NULL (*bad clear) when out of memory. */
static char *pct_decode(const char *s, size_t len, bool *bad) {
  char *out = malloc(len + 1);
  size_t n = 0;
  *bad = false;
  if (!out) return NULL;
  for (size_t i = 0; i < len; i++) {
    if (s[i] != '%') {
      out[n++] = s[i];
      continue;
    }
    int hi = i + 2 < len ? hexval(s[i + 1]) : -1;
    int lo = i + 2 < len ? hexval(s[i + 2]) : -1;
    if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
      free(out);
      *bad = true;
      return NULL;
    }
    out[n++] = (char)(hi * 16 + lo);
    i += 2;
  }
  out[n] = '\0';
  return out;
}

static bool is_token_char(unsigned char ch) {
  return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '-' || ch == '_' ||
         ch == '.';
}

/* gRPC metadata: lowercase keys of [a-z0-9-_.], values without control characters (a decoded
 * CR or LF must never reach the transport). Lowercases the key in place. */
static bool header_ok(char *key, const char *value) {
  for (char *p = key; *p; p++) {
    if (*p >= 'A' && *p <= 'Z') *p = (char)(*p - 'A' + 'a');
    if (!is_token_char((unsigned char)*p)) return false;
  }
  for (const unsigned char *p = (const unsigned char *)value; *p; p++)
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f) return false;
  return true;
}

typedef struct kv_list {
  pf_header *items;
  size_t n, cap, bytes;
} kv_list;

static int kv_push(kv_list *l, char *key, char *value) {
  if (l->n == l->cap) {
    size_t cap = l->cap ? l->cap * 2 : 8;
    pf_header *p = realloc(l->items, cap * sizeof *p);
    if (!p) return PROFILIS_ENOMEM;
    l->items = p;
    l->cap = cap;
  }
  l->items[l->n++] = (pf_header){key, value};
  return 0;
}

/* Decodes and checks one "k=v" member. Returns 0 (pair added or skipped) or PROFILIS_ENOMEM. */
static int kv_member(kv_list *l, const char *m, size_t len, size_t index, const pf_kv_opts *ko) {
  const char *eq = memchr(m, '=', len);
  const char *ks = m, *vs = eq ? eq + 1 : NULL;
  size_t kl = eq ? (size_t)(eq - m) : len, vl = eq ? len - kl - 1 : 0;
  trim(&ks, &kl);
  if (vs) trim(&vs, &vl);
  bool bad = !eq || kl == 0;
  char *key = NULL, *value = NULL;
  if (!bad && !(key = pct_decode(ks, kl, &bad)) && !bad) return PROFILIS_ENOMEM;
  if (!bad && !(value = pct_decode(vs, vl, &bad)) && !bad) goto oom;
  if (!bad && ko->header && !header_ok(key, value)) bad = true;
  if (!bad && (l->n >= ko->max_pairs || l->bytes + strlen(key) + strlen(value) > ko->max_bytes)) {
    pf_log(PF_LOG_WARN, "%s: entry %zu and later ones dropped: over %zu entries or %zu bytes",
           ko->what, index + 1, ko->max_pairs, ko->max_bytes);
    goto skip;
  }
  if (bad) {
    /* Header values may carry credentials: name the entry, never print its value. */
    pf_log(PF_LOG_WARN, "%s: skipping malformed entry %zu", ko->what, index + 1);
    goto skip;
  }
  if (kv_push(l, key, value)) goto oom;
  l->bytes += strlen(key) + strlen(value);
  return 0;
oom:
  free(key);
  free(value);
  return PROFILIS_ENOMEM;
skip:
  free(key);
  free(value);
  return 0;
}

int pf_parse_kv_list_ex(const char *s, const pf_kv_opts *ko, pf_header **out, size_t *n_out) {
  kv_list l = {0};
  size_t index = 0;
  *out = NULL;
  *n_out = 0;
  if (!s) return 0;
  for (const char *p = s;; index++) {
    const char *end = strchr(p, ',');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    const char *t = p;
    size_t tl = len;
    trim(&t, &tl);
    if (tl && kv_member(&l, t, tl, index, ko)) goto oom;
    if (!end) break;
    p = end + 1;
  }
  *out = l.items;
  *n_out = l.n;
  return 0;
oom:
  pf_free_kv_list(l.items, l.n);
  return PROFILIS_ENOMEM;
}

int pf_parse_kv_list(const char *s, pf_header **out, size_t *n_out) {
  static const pf_kv_opts headers = {
      .what = "OTEL_EXPORTER_OTLP_HEADERS", .header = true, .max_pairs = 64, .max_bytes = 8192};
  return pf_parse_kv_list_ex(s, &headers, out, n_out);
}

void pf_free_kv_list(pf_header *h, size_t n) {
  for (size_t i = 0; i < n; i++) {
    free(h[i].key);
    free(h[i].value);
  }
  free(h);
}

/* ---- documentation ---- */

static void write_type(FILE *f, const env_var *v) {
  switch (v->type) {
  case ENV_BOOL: fputs("boolean", f); break;
  case ENV_MS: fputs("duration (ms)", f); break;
  case ENV_TIMEOUT: fputs("timeout (ms, 0 = none)", f); break;
  case ENV_COUNT: fprintf(f, "integer >= %u", v->min); break;
  case ENV_SIZE: fputs("bytes (or KiB, MiB)", f); break;
  case ENV_RATIO: fputs("number 0..1", f); break;
  case ENV_STRING: fputs("string", f); break;
  case ENV_ENUM:
    for (const env_choice *c = v->choices; c->name; c++)
      fprintf(f, "%s`%s`", c == v->choices ? "" : ", ", c->name);
    break;
  }
}

void pf_config_write_env_doc(FILE *f) {
  fputs("| Variable | Type | Default | Meaning |\n|---|---|---|---|\n", f);
  for (size_t i = 0; i < ENV_TABLE_LEN; i++) {
    const env_var *v = &env_table[i];
    fprintf(f, "| `%s`", v->name);
    if (v->alt) fprintf(f, "<br>`%s`", v->alt);
    fputs(" | ", f);
    write_type(f, v);
    if (v->def)
      fprintf(f, (v->flags & ENV_DOC_DEFAULT) ? " | %s | " : " | `%s` | ", v->def);
    else
      fputs(" | (none) | ", f);
    fputs(v->doc, f);
    if (v->alt) fprintf(f, "; `%s` wins when both are set", v->alt);
    fputs(" |\n", f);
  }
  fputs("\nEmpty values count as unset. A value that does not parse, or is out of range, is "
        "logged as a warning and ignored.\n",
        f);
}
