/* Chunks (pc_chunk.h): reference counting and ownership. A chunk owns its resource section,
 * its scopes array (each name/version malloc'd separately), its span pointer array, its record
 * buffer and its raw bytes; the last pc_chunk_unref frees all of them. pc_chunk_size counts
 * allocated capacity, not length, because that is what the process actually holds. */
#include <stdlib.h>

#include "pc_chunk.h"

pc_chunk *pc_chunk_new(void) {
  pc_chunk *c = calloc(1, sizeof *c);
  if (c) atomic_init(&c->refs, 1);
  return c;
}

static void chunk_free(pc_chunk *c) {
  for (uint32_t i = 0; c->scopes && i < c->n_scopes; i++) {
    free(c->scopes[i].name);
    free(c->scopes[i].version);
  }
  free(c->scopes);
  free((void *)c->spans);
  pf_buf_free(&c->resource.attrs);
  pf_buf_free(&c->records);
  pf_buf_free(&c->raw);
  free(c);
}

bool pc_chunk_unref(pc_chunk *c) {
  if (!c) return false;
  if (atomic_fetch_sub_explicit(&c->refs, 1, memory_order_acq_rel) != 1) return false;
  chunk_free(c);
  return true;
}

uint64_t pc_chunk_size(const pc_chunk *c) {
  uint64_t n = sizeof *c + c->records.cap + c->raw.cap + c->resource.attrs.cap;
  n += (uint64_t)c->n_spans * sizeof c->spans[0];
  for (uint32_t i = 0; c->scopes && i < c->n_scopes; i++) {
    n += sizeof c->scopes[i];
    n += c->scopes[i].name ? strlen(c->scopes[i].name) + 1 : 0;
    n += c->scopes[i].version ? strlen(c->scopes[i].version) + 1 : 0;
  }
  return n;
}
