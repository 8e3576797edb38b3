/* Test helper: builds compact span records (pf_record.h) from a plain description, the way the
 * SDK lays them out, so exporter tests need no provider. rb_build() writes one record at the
 * start of a pf_buf (malloc'd, hence aligned for pf_span_rec); keep one pf_buf per record. */
#ifndef PF_TEST_REC_BUILDER_H
#define PF_TEST_REC_BUILDER_H

#include <stdint.h>
#include <string.h>

#include "pf_buf.h"
#include "pf_exporter.h"
#include "pf_record.h"
#include "profilis/common.h"

typedef struct rb_event {
  const char *name;
  uint64_t time_ns;
  const profilis_attr *attrs;
  size_t n_attrs;
  uint32_t dropped_attrs;
} rb_event;

typedef struct rb_link {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint32_t flags;
  const char *tracestate;
  const profilis_attr *attrs;
  size_t n_attrs;
  uint32_t dropped_attrs;
} rb_link;

typedef struct rb_span {
  const char *name; /* NULL = "" */
  size_t name_len;  /* 0 = strlen(name); set it for names with NUL bytes */
  const char *status_msg;
  const char *tracestate;
  uint8_t kind, status_code, trace_flags, has_parent;
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t parent_span_id[8];
  uint64_t start_ns, end_ns;
  const pf_scope *scope;
  const profilis_attr *attrs;
  size_t n_attrs;
  const rb_event *events;
  size_t n_events;
  const rb_link *links;
  size_t n_links;
  uint32_t dropped_attrs, dropped_events, dropped_links;
} rb_span;

static inline size_t rb_len(const char *s) { return s ? strlen(s) : 0; }

/* Appends the attribute entries of attrs[0..n) to b. Returns 0 or a PROFILIS_E* code. */
static inline int rb_attrs(pf_buf *b, const profilis_attr *attrs, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int rc = pf_attr_encode(b, &attrs[i], 0);
    if (rc) return rc;
  }
  return 0;
}

static inline int rb_event_entry(pf_buf *b, const rb_event *ev) {
  pf_buf a = {0};
  int rc = rb_attrs(&a, ev->attrs, ev->n_attrs);
  pf_event_hdr h = {.time_ns = ev->time_ns,
                    .name_len = (uint32_t)rb_len(ev->name),
                    .n_attrs = (uint16_t)ev->n_attrs,
                    .attrs_len = (uint32_t)a.len,
                    .dropped_attrs = ev->dropped_attrs};
  if (!rc) rc = pf_buf_append(b, &h, sizeof h);
  if (!rc && ev->name) rc = pf_buf_append(b, ev->name, h.name_len);
  if (!rc && a.len) rc = pf_buf_append(b, a.p, a.len);
  pf_buf_free(&a);
  return rc;
}

static inline int rb_link_entry(pf_buf *b, const rb_link *lk) {
  pf_buf a = {0};
  int rc = rb_attrs(&a, lk->attrs, lk->n_attrs);
  pf_link_hdr h = {.flags = lk->flags,
                   .tracestate_len = (uint16_t)rb_len(lk->tracestate),
                   .n_attrs = (uint16_t)lk->n_attrs,
                   .attrs_len = (uint32_t)a.len,
                   .dropped_attrs = lk->dropped_attrs};
  memcpy(h.trace_id, lk->trace_id, 16);
  memcpy(h.span_id, lk->span_id, 8);
  if (!rc) rc = pf_buf_append(b, &h, sizeof h);
  if (!rc && lk->tracestate) rc = pf_buf_append(b, lk->tracestate, h.tracestate_len);
  if (!rc && a.len) rc = pf_buf_append(b, a.p, a.len);
  pf_buf_free(&a);
  return rc;
}

/* Lays the sections out after the header: name | status msg | tracestate | attrs | events |
 * links, and fills the header's lengths, counts and size. */
static inline int rb_sections(pf_buf *out, const rb_span *s, pf_span_rec *h) {
  size_t mark;
  int rc = pf_buf_append(out, s->name, h->name_len);
  if (!rc) rc = pf_buf_append(out, s->status_msg, h->status_msg_len);
  if (!rc) rc = pf_buf_append(out, s->tracestate, h->tracestate_len);
  mark = out->len;
  if (!rc) rc = rb_attrs(out, s->attrs, s->n_attrs);
  h->attrs_len = (uint32_t)(out->len - mark);
  mark = out->len;
  for (size_t i = 0; !rc && i < s->n_events; i++) rc = rb_event_entry(out, &s->events[i]);
  h->events_len = (uint32_t)(out->len - mark);
  mark = out->len;
  for (size_t i = 0; !rc && i < s->n_links; i++) rc = rb_link_entry(out, &s->links[i]);
  h->links_len = (uint32_t)(out->len - mark);
  h->size = (uint32_t)out->len;
  return rc;
}

/* Replaces the content of out with the record for s. Returns 0 or a PROFILIS_E* code. */
static inline int rb_build(pf_buf *out, const rb_span *s) {
  pf_span_rec h = {.kind = s->kind,
                   .status_code = s->status_code,
                   .trace_flags = s->trace_flags,
                   .has_parent = s->has_parent,
                   .start_ns = s->start_ns,
                   .end_ns = s->end_ns,
                   .scope = s->scope,
                   .name_len = (uint16_t)(s->name_len ? s->name_len : rb_len(s->name)),
                   .status_msg_len = (uint16_t)rb_len(s->status_msg),
                   .tracestate_len = (uint16_t)rb_len(s->tracestate),
                   .n_attrs = (uint16_t)s->n_attrs,
                   .n_events = (uint16_t)s->n_events,
                   .n_links = (uint16_t)s->n_links,
                   .dropped_attrs = s->dropped_attrs,
                   .dropped_events = s->dropped_events,
                   .dropped_links = s->dropped_links};
  memcpy(h.trace_id, s->trace_id, 16);
  memcpy(h.span_id, s->span_id, 8);
  memcpy(h.parent_span_id, s->parent_span_id, 8);
  pf_buf_reset(out);
  int rc = pf_buf_append(out, &h, sizeof h);
  if (!rc) rc = rb_sections(out, s, &h);
  if (!rc) memcpy(out->p, &h, sizeof h);
  return rc;
}

/* Fills a resource from attrs (for pf_batch.resource). Returns 0 or a PROFILIS_E* code. */
static inline int rb_resource(pf_resource *r, const profilis_attr *attrs, size_t n) {
  memset(r, 0, sizeof *r);
  r->n_attrs = (uint32_t)n;
  return rb_attrs(&r->attrs, attrs, n);
}

/* Fills 16- or 8-byte ids with a recognisable pattern: seed, seed+1, ... */
static inline void rb_id(uint8_t *id, size_t n, uint8_t seed) {
  for (size_t i = 0; i < n; i++) id[i] = (uint8_t)(seed + i);
}

#endif
