/* Test helper: collector chunks (pc_chunk.h) built by hand from rec_builder.h records, without
 * the decoder, so exporter and span metrics tests control every byte. Include after cmocka.h.
 * The chunk lives inside a tchunk (no reference counting: tests own it and call tc_free). */
#ifndef PC_TEST_CHUNK_BUILDER_H
#define PC_TEST_CHUNK_BUILDER_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "pc_chunk.h"
#include "rec_builder.h"

typedef struct tchunk {
  pc_chunk c;
  pf_buf *recs; /* one buffer per record */
  const pf_span_rec **ptrs;
  size_t n, cap;
} tchunk;

/* An empty chunk with these resource attributes (and tenant, NULL for none). */
static inline void tc_init(tchunk *t, const profilis_attr *res, size_t n_res, const char *tenant) {
  memset(t, 0, sizeof *t);
  assert_int_equal(rb_resource(&t->c.resource, res, n_res), 0);
  if (tenant) snprintf(t->c.tenant, sizeof t->c.tenant, "%s", tenant);
}

/* Appends the record for s. */
static inline void tc_add(tchunk *t, const rb_span *s) {
  if (t->n == t->cap) {
    t->cap = t->cap ? t->cap * 2 : 8;
    t->recs = (pf_buf *)realloc(t->recs, t->cap * sizeof *t->recs);
    t->ptrs = (const pf_span_rec **)realloc(t->ptrs, t->cap * sizeof *t->ptrs);
    assert_non_null(t->recs);
    assert_non_null(t->ptrs);
  }
  memset(&t->recs[t->n], 0, sizeof t->recs[t->n]);
  assert_int_equal(rb_build(&t->recs[t->n], s), 0);
  t->n++;
  for (size_t i = 0; i < t->n; i++) t->ptrs[i] = (const pf_span_rec *)t->recs[i].p;
  t->c.spans = t->ptrs;
  t->c.n_spans = (uint32_t)t->n;
}

/* Appends an attribute entry of any type (PF_ATTR_BYTES, PF_ATTR_ANYVALUE...) to a section. */
static inline void tc_raw_attr(pf_buf *sec, uint8_t type, const char *key, const void *val,
                               size_t len) {
  pf_attr_hdr h = {.type = type, .key_len = (uint16_t)strlen(key), .val_len = (uint32_t)len};
  assert_int_equal(pf_buf_append(sec, &h, sizeof h), 0);
  assert_int_equal(pf_buf_append(sec, key, h.key_len), 0);
  assert_int_equal(pf_buf_append(sec, val, len), 0);
}

/* Adds a raw attribute entry to the last span, which must have no events and no links (its
 * attribute section is then the record's tail). */
static inline void tc_last_raw_attr(tchunk *t, uint8_t type, const char *key, const void *val,
                                    size_t len) {
  pf_buf *b = &t->recs[t->n - 1];
  pf_span_rec h;
  memcpy(&h, b->p, sizeof h);
  assert_int_equal(h.events_len + h.links_len, 0);
  size_t before = b->len;
  tc_raw_attr(b, type, key, val, len);
  h.attrs_len += (uint32_t)(b->len - before);
  h.n_attrs++;
  h.size = (uint32_t)b->len;
  memcpy(b->p, &h, sizeof h);
  t->ptrs[t->n - 1] = (const pf_span_rec *)b->p;
}

static inline void tc_free(tchunk *t) {
  for (size_t i = 0; i < t->n; i++) pf_buf_free(&t->recs[i]);
  free(t->recs);
  free(t->ptrs);
  pf_buf_free(&t->c.resource.attrs);
  pf_buf_free(&t->c.raw);
}

#endif
