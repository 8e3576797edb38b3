/* The collector's unit of work: one ResourceSpans of one request, decoded into the SDK's
 * compact span records (sdk/src/pf_record.h), plus (when some exporter forwards OTLP) the
 * ResourceSpans' original protobuf bytes so an unchanged chunk is forwarded without
 * re-encoding. A chunk is immutable once submitted and shared by every exporter on its route
 * through a reference count; its bytes are charged to the memory budget from decode until the
 * last exporter releases it. Internal to the collector. */
#ifndef PC_CHUNK_H
#define PC_CHUNK_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "pf_buf.h"
#include "pf_exporter.h"
#include "pf_record.h"

/* Attribute value types beyond the public ones (profilis_attr_type 1..8), for what OTLP can
 * carry and the SDK never produces. Both keep exactly what arrived. */
enum {
  PF_ATTR_BYTES = 9,     /* value: the raw bytes (AnyValue.bytes_value) */
  PF_ATTR_ANYVALUE = 10, /* value: an encoded AnyValue message (kvlist, mixed or nested array) */
};

#define PC_TENANT_MAX 150

typedef struct pc_chunk {
  _Atomic uint32_t refs;
  char tenant[PC_TENANT_MAX + 1]; /* "" until tenancy (issue 4) assigns one */
  pf_resource resource;           /* attributes in record format */
  uint32_t resource_dropped_attrs;
  pf_scope *scopes; /* n_scopes scopes; records point at them */
  uint32_t n_scopes;
  const pf_span_rec **spans; /* n_spans pointers into `records` */
  uint32_t n_spans;
  pf_buf records;      /* the span records, 8-byte aligned, back to back */
  pf_buf raw;          /* encoded ResourceSpans message (without its field tag), or empty */
  bool modified;       /* a stage changed the spans: raw must not be forwarded */
  uint64_t budget_bytes; /* charged to the memory budget */
  uint64_t received_ns;  /* monotonic time of receipt */
  struct pc_chunk *qnext; /* link in the pipeline's sampler queue (the only queue that links) */
} pc_chunk;

/* Allocates an empty chunk with one reference. Returns NULL on allocation failure. */
pc_chunk *pc_chunk_new(void);
static inline void pc_chunk_ref(pc_chunk *c) { atomic_fetch_add(&c->refs, 1); }
/* Drops a reference; the last one frees the chunk. Returns true when it was freed (the caller
 * then releases c's budget_bytes, read before the call). */
bool pc_chunk_unref(pc_chunk *c);
/* Bytes the chunk holds (records, raw, resource, scopes): what the budget is charged. */
uint64_t pc_chunk_size(const pc_chunk *c);
/* The batch view of a chunk for SDK encoders/exporters (its resource and spans). */
static inline pf_batch pc_chunk_batch(const pc_chunk *c) {
  return (pf_batch){.resource = &c->resource, .spans = c->spans, .n = c->n_spans};
}

#endif
