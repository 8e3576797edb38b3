/* The collector's own metrics registry (pc_metrics.h). Families are kept in creation order,
 * each with its series in creation order, in linked lists of individually allocated nodes so a
 * pc_series pointer never moves. Creating a series or rendering takes the one mutex; updates
 * are relaxed atomics on the series and never lock. Rendering follows the Prometheus text
 * exposition format 0.0.4: # HELP and # TYPE once per family, then one line per series. */
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "pc_metrics.h"
#include "pf_log.h"
#include "pf_utf8.h"
#include "profilis/common.h"

typedef struct pc_mseries {
  pc_series s; /* first: the caller's pointer is the node's */
  char *labels;
  pc_gauge_fn fn; /* scrape-time gauge, or NULL */
  void *arg;
  struct pc_mseries *next;
} pc_mseries;

typedef struct pc_family {
  char *name;
  char *help;
  pc_metric_kind kind;
  pc_mseries *head, *tail;
  struct pc_family *next;
} pc_family;

struct pc_metrics {
  pthread_mutex_t mu;
  pc_family *head, *tail;
};

int pc_metrics_new(pc_metrics **out) {
  *out = NULL;
  pc_metrics *m = calloc(1, sizeof *m);
  if (!m) return PROFILIS_ENOMEM;
  pthread_mutex_init(&m->mu, NULL);
  *out = m;
  return 0;
}

static void family_free(pc_family *f) {
  for (pc_mseries *s = f->head, *next; s; s = next) {
    next = s->next;
    free(s->labels);
    free(s);
  }
  free(f->name);
  free(f->help);
  free(f);
}

void pc_metrics_free(pc_metrics *m) {
  if (!m) return;
  for (pc_family *f = m->head, *next; f; f = next) {
    next = f->next;
    family_free(f);
  }
  pthread_mutex_destroy(&m->mu);
  free(m);
}

/* ---- validation: a bad name or label text would break the whole exposition ---- */

static bool name_char(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

static bool valid_metric_name(const char *s) {
  if (!s || !*s) return false;
  for (size_t i = 0; s[i]; i++)
    if (!name_char(s[i], i == 0)) return false;
  return true;
}

/* Checks `k="v",k2="v2"` (values escaped, well-formed UTF-8). Returns true for "". */
static bool valid_labels(const char *s) {
  size_t i = 0, n = strlen(s);
  if (pf_utf8_fixed_len((const uint8_t *)s, n) != n) return false;
  while (i < n) {
    size_t k = i;
    while (i < n && name_char(s[i], i == k) && s[i] != ':') i++;
    if (i == k || i + 1 >= n || s[i] != '=' || s[i + 1] != '"') return false;
    for (i += 2; i < n && s[i] != '"'; i++) {
      if (s[i] == '\n') return false;
      if (s[i] == '\\' && (i + 1 >= n || !strchr("\\\"n", s[++i]))) return false;
    }
    if (i >= n) return false; /* unterminated value */
    i++;
    if (i < n && s[i++] != ',') return false;
  }
  return true;
}

/* ---- lookup and creation (under m->mu) ---- */

static pc_family *family_find(pc_metrics *m, const char *name) {
  for (pc_family *f = m->head; f; f = f->next)
    if (strcmp(f->name, name) == 0) return f;
  return NULL;
}

static pc_family *family_add(pc_metrics *m, pc_metric_kind kind, const char *name,
                             const char *help) {
  pc_family *f = calloc(1, sizeof *f);
  if (!f) return NULL;
  f->kind = kind;
  f->name = strdup(name);
  f->help = strdup(help ? help : "");
  if (!f->name || !f->help) {
    family_free(f);
    return NULL;
  }
  if (m->tail)
    m->tail->next = f;
  else
    m->head = f;
  m->tail = f;
  return f;
}

static pc_mseries *series_find(pc_family *f, const char *labels) {
  for (pc_mseries *s = f->head; s; s = s->next)
    if (strcmp(s->labels, labels) == 0) return s;
  return NULL;
}

static pc_mseries *series_add(pc_family *f, const char *labels) {
  pc_mseries *s = calloc(1, sizeof *s);
  if (!s) return NULL;
  s->labels = strdup(labels);
  if (!s->labels) {
    free(s);
    return NULL;
  }
  if (f->tail)
    f->tail->next = s;
  else
    f->head = s;
  f->tail = s;
  return s;
}

/* Finds or creates the family and series; NULL on a bad name, a kind clash or no memory. */
static pc_mseries *get_locked(pc_metrics *m, pc_metric_kind kind, const char *name,
                              const char *help, const char *labels) {
  if (!valid_metric_name(name) || !valid_labels(labels)) {
    pf_log(PF_LOG_ERROR, "metrics: invalid metric %s{%s}", name ? name : "(null)", labels);
    return NULL;
  }
  pc_family *f = family_find(m, name);
  if (f && f->kind != kind) {
    pf_log(PF_LOG_ERROR, "metrics: %s registered twice with different types", name);
    return NULL;
  }
  if (!f && !(f = family_add(m, kind, name, help))) return NULL;
  pc_mseries *s = series_find(f, labels);
  return s ? s : series_add(f, labels);
}

pc_series *pc_metrics_series(pc_metrics *m, pc_metric_kind kind, const char *name, const char *help,
                             const char *labels) {
  if (!m) return NULL;
  pthread_mutex_lock(&m->mu);
  pc_mseries *s = get_locked(m, kind, name, help, labels ? labels : "");
  pthread_mutex_unlock(&m->mu);
  return s ? &s->s : NULL;
}

int pc_metrics_gauge_fn(pc_metrics *m, const char *name, const char *help, const char *labels,
                        pc_gauge_fn fn, void *arg) {
  if (!m || !fn) return PROFILIS_EINVAL;
  pthread_mutex_lock(&m->mu);
  pc_mseries *s = get_locked(m, PC_GAUGE, name, help, labels ? labels : "");
  if (s) {
    s->fn = fn;
    s->arg = arg;
  }
  pthread_mutex_unlock(&m->mu);
  return s ? 0 : PROFILIS_EINVAL;
}

/* ---- rendering ---- */

/* HELP text escapes only backslash and line feed. */
static int put_help(pf_buf *out, const char *s) {
  int rc = 0;
  for (const char *p = s; *p && !rc; p++) {
    if (*p == '\\')
      rc = pf_buf_append(out, "\\\\", 2);
    else if (*p == '\n')
      rc = pf_buf_append(out, "\\n", 2);
    else
      rc = pf_buf_append(out, p, 1);
  }
  return rc;
}

static int render_family(pc_family *f, pf_buf *out) {
  int rc = pf_buf_printf(out, "# HELP %s ", f->name);
  if (!rc) rc = put_help(out, f->help);
  if (!rc)
    rc = pf_buf_printf(out, "\n# TYPE %s %s\n", f->name,
                       f->kind == PC_COUNTER ? "counter" : "gauge");
  for (pc_mseries *s = f->head; s && !rc; s = s->next) {
    rc = pf_buf_puts(out, f->name);
    if (!rc && s->labels[0]) rc = pf_buf_printf(out, "{%s}", s->labels);
    if (rc) break;
    if (f->kind == PC_COUNTER)
      rc = pf_buf_printf(
          out, " %llu\n",
          (unsigned long long)atomic_load_explicit(&s->s.value, memory_order_relaxed));
    else {
      long long v = (long long)(s->fn ? s->fn(s->arg)
                                      : atomic_load_explicit(&s->s.gauge, memory_order_relaxed));
      if (f->kind == PC_GAUGE_MILLI)
        rc = pf_buf_printf(out, " %s%lld.%03lld\n", v < 0 ? "-" : "", llabs(v / 1000),
                           llabs(v % 1000));
      else
        rc = pf_buf_printf(out, " %lld\n", v);
    }
  }
  return rc;
}

int pc_metrics_render(pc_metrics *m, pf_buf *out) {
  int rc = 0;
  pthread_mutex_lock(&m->mu);
  for (pc_family *f = m->head; f && !rc; f = f->next) rc = render_family(f, out);
  pthread_mutex_unlock(&m->mu);
  return rc;
}

/* ---- label values ---- */

/* Bytes one source byte (or well-formed sequence) at s becomes, written to tmp. */
static size_t escape_one(const uint8_t *s, size_t n, size_t *used, char tmp[4]) {
  uint8_t c = s[0];
  *used = 1;
  if (c == '\\' || c == '"' || c == '\n') {
    tmp[0] = '\\';
    tmp[1] = c == '\n' ? 'n' : (char)c;
    return 2;
  }
  if (c > 0 && c < 0x80) {
    tmp[0] = (char)c;
    return 1;
  }
  size_t bad = 1, len = c ? pf_utf8_seq(s, n, &bad) : 0;
  if (len == 0) { /* ill-formed (or NUL, which would end the C string): U+FFFD */
    *used = bad;
    memcpy(tmp, "\xEF\xBF\xBD", 3);
    return 3;
  }
  *used = len;
  memcpy(tmp, s, len);
  return len;
}

void pc_label_escape(char *dst, size_t cap, const char *s, size_t n) {
  if (cap == 0) return;
  size_t o = 0;
  const uint8_t *p = (const uint8_t *)s;
  for (size_t i = 0; i < n;) {
    char tmp[4];
    size_t used, w = escape_one(p + i, n - i, &used, tmp);
    if (o + w > cap - 1) break; /* never split an escape or a character */
    memcpy(dst + o, tmp, w);
    o += w;
    i += used;
  }
  dst[o] = '\0';
}
