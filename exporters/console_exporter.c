/* Console exporter: a human-readable block per span on a stdio stream (stderr by default),
 *   [trace <hex> span <hex> parent <hex>|-] name kind=SERVER 1.234 ms status=ERROR "msg"
 * followed by indented scope/attr/event/link/dropped lines. Values print as JSON (strings
 * quoted and escaped) so no control byte from span data reaches the terminal. A batch is
 * rendered into one buffer, then written with one fwrite and flushed. The resource is shown
 * once, before the first batch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json_write.h"
#include "pf_exporter.h"
#include "pf_log.h"
#include "profilis/common.h"

typedef struct console_exporter {
  pf_exporter base; /* first: the processor sees only this */
  FILE *out;        /* not owned */
  pf_buf text;
  bool resource_shown;
  pf_ratelimit rl;
} console_exporter;

static const char *kind_name(uint8_t k) {
  static const char *const names[] = {"UNSPECIFIED", "INTERNAL", "SERVER",
                                      "CLIENT",      "PRODUCER", "CONSUMER"};
  return k < sizeof names / sizeof names[0] ? names[k] : NULL;
}

/* Writes a signed nanosecond interval as milliseconds with three decimals ("1.234 ms"),
 * without printf's locale-dependent decimal point. */
static void millis(pf_json *j, uint64_t a, uint64_t b) {
  bool neg = b < a;
  uint64_t d = neg ? a - b : b - a;
  char frac[5];
  uint64_t us = (d % 1000000u) / 1000u;
  frac[0] = '.';
  frac[1] = (char)('0' + us / 100);
  frac[2] = (char)('0' + us / 10 % 10);
  frac[3] = (char)('0' + us % 10);
  frac[4] = ' ';
  if (neg) pf_json_raw(j, "-", 1);
  pf_json_u64(j, d / 1000000u);
  pf_json_raw(j, frac, sizeof frac);
  pf_json_lit(j, "ms");
}

/* " key=value key2=value2" for an attribute section. */
static void inline_attrs(pf_json *j, const uint8_t *sec, size_t len) {
  size_t off = 0;
  pf_attr_view a;
  while (pf_attr_next(sec, len, &off, &a)) {
    pf_json_raw(j, " ", 1);
    pf_json_escape(j, a.key, a.key_len);
    pf_json_raw(j, "=", 1);
    pf_json_attr_value(j, &a);
  }
}

static void head_line(pf_json *j, const pf_span_rec *r) {
  pf_json_lit(j, "[trace ");
  char hex[32];
  pf_hex_lower(hex, r->trace_id, 16);
  pf_json_raw(j, hex, 32);
  pf_json_lit(j, " span ");
  pf_hex_lower(hex, r->span_id, 8);
  pf_json_raw(j, hex, 16);
  pf_json_lit(j, " parent ");
  if (r->has_parent) {
    pf_hex_lower(hex, r->parent_span_id, 8);
    pf_json_raw(j, hex, 16);
  } else {
    pf_json_raw(j, "-", 1);
  }
  pf_json_lit(j, "] ");
  pf_json_escape(j, pf_rec_name(r), r->name_len);
  pf_json_lit(j, " kind=");
  const char *k = kind_name(r->kind);
  if (k)
    pf_json_lit(j, k);
  else
    pf_json_u64(j, r->kind);
  pf_json_raw(j, " ", 1);
  millis(j, r->start_ns, r->end_ns);
  static const char *const status[] = {NULL, " status=OK", " status=ERROR"};
  if (r->status_code == 1 || r->status_code == 2) pf_json_lit(j, status[r->status_code]);
  if (r->status_msg_len) {
    pf_json_raw(j, " ", 1);
    pf_json_str(j, pf_rec_status_msg(r), r->status_msg_len);
  }
  pf_json_raw(j, "\n", 1);
}

static void detail_lines(pf_json *j, const pf_span_rec *r) {
  if (r->scope) {
    pf_json_lit(j, "    scope ");
    pf_json_cstr(j, r->scope->name);
    pf_json_raw(j, " ", 1);
    pf_json_cstr(j, r->scope->version);
    pf_json_raw(j, "\n", 1);
  }
  if (r->tracestate_len) {
    pf_json_lit(j, "    tracestate ");
    pf_json_str(j, pf_rec_tracestate(r), r->tracestate_len);
    pf_json_raw(j, "\n", 1);
  }
  size_t off = 0;
  pf_attr_view a;
  while (pf_attr_next(pf_rec_attrs(r), r->attrs_len, &off, &a)) {
    pf_json_lit(j, "    attr ");
    pf_json_escape(j, a.key, a.key_len);
    pf_json_raw(j, "=", 1);
    pf_json_attr_value(j, &a);
    pf_json_raw(j, "\n", 1);
  }
}

static void event_link_lines(pf_json *j, const pf_span_rec *r) {
  size_t off = 0;
  pf_event_view e;
  while (pf_event_next(pf_rec_events(r), r->events_len, &off, &e)) {
    pf_json_lit(j, "    event ");
    if (e.h.time_ns >= r->start_ns) pf_json_raw(j, "+", 1);
    millis(j, r->start_ns, e.h.time_ns);
    pf_json_raw(j, " ", 1);
    pf_json_str(j, e.name, e.h.name_len);
    inline_attrs(j, e.attrs, e.h.attrs_len);
    pf_json_raw(j, "\n", 1);
  }
  off = 0;
  pf_link_view l;
  char hex[32];
  while (pf_link_next(pf_rec_links(r), r->links_len, &off, &l)) {
    pf_json_lit(j, "    link trace ");
    pf_hex_lower(hex, l.h.trace_id, 16);
    pf_json_raw(j, hex, 32);
    pf_json_lit(j, " span ");
    pf_hex_lower(hex, l.h.span_id, 8);
    pf_json_raw(j, hex, 16);
    if (l.h.tracestate_len) {
      pf_json_lit(j, " tracestate=");
      pf_json_str(j, l.tracestate, l.h.tracestate_len);
    }
    inline_attrs(j, l.attrs, l.h.attrs_len);
    pf_json_raw(j, "\n", 1);
  }
}

static void dropped_line(pf_json *j, const pf_span_rec *r) {
  if (!r->dropped_attrs && !r->dropped_events && !r->dropped_links) return;
  pf_json_lit(j, "    dropped attributes=");
  pf_json_u64(j, r->dropped_attrs);
  pf_json_lit(j, " events=");
  pf_json_u64(j, r->dropped_events);
  pf_json_lit(j, " links=");
  pf_json_u64(j, r->dropped_links);
  pf_json_raw(j, "\n", 1);
}

static int render(console_exporter *x, const pf_batch *b) {
  pf_buf_reset(&x->text);
  pf_json j = pf_json_on(&x->text);
  if (!x->resource_shown && b->resource) {
    pf_json_lit(&j, "resource");
    inline_attrs(&j, b->resource->attrs.p, b->resource->attrs.len);
    pf_json_raw(&j, "\n", 1);
  }
  for (size_t i = 0; i < b->n; i++) {
    const pf_span_rec *r = b->spans[i];
    if (!pf_rec_sections_fit(r)) continue;
    head_line(&j, r);
    detail_lines(&j, r);
    event_link_lines(&j, r);
    dropped_line(&j, r);
  }
  return j.err;
}

static int console_export(pf_exporter *e, const pf_batch *b, const pf_deadline *dl,
                          uint64_t *rejected) {
  console_exporter *x = (console_exporter *)e;
  if (rejected) *rejected = 0;
  if (render(x, b)) {
    pf_log_rl(&x->rl, PF_LOG_WARN, "console: out of memory rendering %zu spans", b->n);
    return PROFILIS_ERETRYABLE;
  }
  size_t n = x->text.len ? fwrite(x->text.p, 1, x->text.len, x->out) : 0;
  if (fflush(x->out) != 0 || n != x->text.len) {
    clearerr(x->out);
    pf_log_rl(&x->rl, PF_LOG_WARN, "console: write failed");
    return PROFILIS_EPERMANENT;
  }
  x->resource_shown = x->resource_shown || b->resource;
  return 0;
}

static void console_destroy(pf_exporter *e) {
  console_exporter *x = (console_exporter *)e;
  if (!x) return;
  if (x->out) fflush(x->out);
  pf_buf_free(&x->text);
  free(x);
}

int pf_console_exporter_new(pf_exporter **out, const pf_config *cfg) {
  console_exporter *x = calloc(1, sizeof *x);
  if (!x) return PROFILIS_ENOMEM;
  x->base.name = "console";
  x->base.export_batch = console_export;
  x->base.destroy = console_destroy;
  x->out = cfg && cfg->o.console_stream ? cfg->o.console_stream : stderr;
  *out = &x->base;
  return 0;
}
