/* Invariants the OTLP decoder fuzz targets check on every chunk a decode returns: records fit
 * their size; the SDK encoder's re-encoding decodes again, with nothing rejected, to the very
 * same records (decode is a fixed point of encode . decode); kept raw bytes decode to the same
 * records too; and the JSON writer renders every attribute section as JSON our own parser
 * accepts. */
#ifndef PF_FUZZ_DECODE_CHECK_H
#define PF_FUZZ_DECODE_CHECK_H

#include <stdio.h>
#include <stdlib.h>

#include "fuzz_check.h"
#include "../unit/collector/decode_fixtures.h"
#include "json_parse.h"
#include "json_write.h"

/* Decodes `0x0a len body` (one ResourceSpans) and checks it gives the same chunk as c. */
static void check_resource_spans(const pc_chunk *c, const uint8_t *body, size_t n, bool wrap) {
  pf_buf req = {0};
  if (wrap) {
    uint8_t hdr[11] = {0x0a}, *p = hdr + 1;
    for (uint64_t v = n;; v >>= 7) {
      *p++ = (uint8_t)(v < 0x80 ? v : (v & 0x7f) | 0x80);
      if (v < 0x80) break;
    }
    CHECK(pf_buf_append(&req, hdr, (size_t)(p - hdr)) == 0);
  }
  CHECK(pf_buf_append(&req, body, n) == 0);
  pc_decode_result r;
  CHECK(pc_decode_otlp_proto(req.p ? req.p : (const uint8_t *)"", req.len, NULL, &r) == 0);
  CHECK(r.rejected == 0 && r.n_chunks == 1 && r.n_spans == c->n_spans);
  CHECK(chunks_equal(c, r.chunks[0]));
  pc_decode_result_free(&r);
  pf_buf_free(&req);
}

static void check_json_valid(const pf_buf *text) {
  pc_json j;
  pc_json_init(&j, text->p, text->len, 200);
  CHECK(pc_json_skip(&j) == 0 && pc_json_end(&j) == 0);
}

static void check_chunk(const pc_chunk *c) {
  CHECK(c->n_spans > 0 && c->budget_bytes == pc_chunk_size(c));
  pf_buf text = {0};
  pf_json j = pf_json_on(&text);
  pf_json_attrs(&j, c->resource.attrs.p, c->resource.attrs.len);
  CHECK(j.err == 0);
  check_json_valid(&text);
  for (uint32_t i = 0; i < c->n_spans; i++) {
    const pf_span_rec *r = c->spans[i];
    CHECK(((uintptr_t)r & 7) == 0 && pf_rec_sections_fit(r));
    CHECK(r->scope >= c->scopes && r->scope < c->scopes + c->n_scopes);
    pf_buf_reset(&text);
    pf_json_attrs(&j, pf_rec_attrs(r), r->attrs_len);
    CHECK(j.err == 0);
    check_json_valid(&text);
  }
  pf_buf_free(&text);
  pf_buf enc = {0};
  pf_batch b = pc_chunk_batch(c);
  CHECK(pf_otlp_encode_request(&enc, &b) == 0);
  check_resource_spans(c, enc.p, enc.len, false);
  pf_buf_free(&enc);
  if (c->raw.len) {
    CHECK(!c->modified);
    check_resource_spans(c, c->raw.p, c->raw.len, true);
  }
}

static void check_result(int rc, pc_decode_result *r) {
  CHECK(rc == 0 || rc == PROFILIS_EPROTO);
  if (rc) {
    CHECK(r->n_chunks == 0 && !r->chunks && r->message[0]);
    return;
  }
  uint64_t spans = 0;
  for (size_t i = 0; i < r->n_chunks; i++) {
    check_chunk(r->chunks[i]);
    spans += r->chunks[i]->n_spans;
  }
  CHECK(spans == r->n_spans);
  CHECK((r->rejected > 0) == (r->message[0] != 0));
}

#endif
