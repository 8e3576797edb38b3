/* JSON renderings of a chunk's spans (json_render.c): the JSONL exporter's span-per-line
 * objects and the OTLP/JSON ResourceSpans of the file interchange format. Sans-I/O: text is
 * appended to a pf_buf. A scratch holds what rendering reuses between chunks; one per thread.
 * Internal to the collector. */
#ifndef PC_JSON_RENDER_H
#define PC_JSON_RENDER_H

#include <stdbool.h>
#include <stddef.h>

#include "json_write.h"
#include "pc_chunk.h"

typedef struct pc_json_scratch {
  pf_buf tail;                /* what follows the links in a span line: resource, scope, tenant */
  const pf_scope *tail_scope; /* the scope tail was rendered for (within the current chunk) */
  const pf_scope **seen;      /* scopes already grouped in the chunk being rendered */
  size_t n_seen, cap_seen;
} pc_json_scratch;

/* Appends one line (a JSON object and '\n') per well-formed span of c, with at least trace_id,
 * span_id, parent_span_id, name, kind, start/end_time_unix_nano, duration_ns, status_code,
 * status_message, attributes, events, links, resource, scope and tenant. Returns 0 or
 * PROFILIS_ENOMEM (out then holds a partial line: the caller cuts it back). */
int pc_json_span_lines(pc_json_scratch *s, const pc_chunk *c, pf_buf *out);
/* Appends c as one OTLP/JSON ResourceSpans object (no separator around it). Returns 0 or
 * PROFILIS_ENOMEM. */
int pc_json_otlp_resource_spans(pc_json_scratch *s, const pc_chunk *c, pf_buf *out);
/* True when c holds at least one well-formed span record. */
bool pc_json_has_spans(const pc_chunk *c);
void pc_json_scratch_free(pc_json_scratch *s);

#endif
