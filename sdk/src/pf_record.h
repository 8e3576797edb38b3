/* The compact span record: what an ended span becomes in the export queue, and what every
 * exporter reads. One contiguous block: a fixed header, then the sections in this order:
 * name | status message | tracestate | attributes | events | links.
 *
 * Attribute entry:  u8 type | u8 0 | u16 key_len | u32 val_len | key | value
 *   STRING: the bytes; BOOL: 1 byte; INT: int64 LE; DOUBLE: IEEE-754 LE;
 *   STRING_ARRAY: repeated (u32 len | bytes); BOOL_ARRAY: n bytes; INT/DOUBLE_ARRAY: n x 8 bytes.
 * Event entry:      pf_event_hdr | name | attributes
 * Link entry:       pf_link_hdr | tracestate | attributes
 * Integers are host order (records never leave the process). Readers use the iterators below,
 * which bounds-check every length so a corrupt record ends iteration instead of overrunning. */
#ifndef PF_RECORD_H
#define PF_RECORD_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "profilis/trace.h"

struct pf_scope;

typedef struct pf_span_rec {
  uint32_t size; /* whole record, header included */
  uint8_t kind;
  uint8_t status_code;
  uint8_t trace_flags;
  uint8_t has_parent;
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint8_t parent_span_id[8];
  uint64_t start_ns;
  uint64_t end_ns;
  const struct pf_scope *scope; /* owned by the provider, outlives every record */
  uint16_t name_len;
  uint16_t status_msg_len;
  uint16_t tracestate_len;
  uint16_t n_attrs;
  uint16_t n_events;
  uint16_t n_links;
  uint32_t attrs_len;
  uint32_t events_len;
  uint32_t links_len;
  uint32_t dropped_attrs;
  uint32_t dropped_events;
  uint32_t dropped_links;
} pf_span_rec;

typedef struct pf_attr_hdr {
  uint8_t type; /* profilis_attr_type */
  uint8_t zero;
  uint16_t key_len;
  uint32_t val_len;
} pf_attr_hdr;

typedef struct pf_event_hdr {
  uint64_t time_ns;
  uint32_t name_len;
  uint16_t n_attrs;
  uint16_t zero;
  uint32_t attrs_len;
  uint32_t dropped_attrs;
} pf_event_hdr;

typedef struct pf_link_hdr {
  uint8_t trace_id[16];
  uint8_t span_id[8];
  uint32_t flags;
  uint16_t tracestate_len;
  uint16_t n_attrs;
  uint32_t attrs_len;
  uint32_t dropped_attrs;
} pf_link_hdr;

/* Section pointers of a record. */
static inline const char *pf_rec_name(const pf_span_rec *r) { return (const char *)(r + 1); }
static inline const char *pf_rec_status_msg(const pf_span_rec *r) {
  return pf_rec_name(r) + r->name_len;
}
static inline const char *pf_rec_tracestate(const pf_span_rec *r) {
  return pf_rec_status_msg(r) + r->status_msg_len;
}
static inline const uint8_t *pf_rec_attrs(const pf_span_rec *r) {
  return (const uint8_t *)pf_rec_tracestate(r) + r->tracestate_len;
}
static inline const uint8_t *pf_rec_events(const pf_span_rec *r) {
  return pf_rec_attrs(r) + r->attrs_len;
}
static inline const uint8_t *pf_rec_links(const pf_span_rec *r) {
  return pf_rec_events(r) + r->events_len;
}
/* True when the sections fit inside r->size; exporters skip a record that fails this. */
static inline bool pf_rec_sections_fit(const pf_span_rec *r) {
  uint64_t need = (uint64_t)sizeof *r + r->name_len + r->status_msg_len + r->tracestate_len +
                  r->attrs_len + r->events_len + r->links_len;
  return need <= r->size;
}

/* One decoded attribute; key/value point into the record. */
typedef struct pf_attr_view {
  profilis_attr_type type;
  const char *key;
  size_t key_len;
  const uint8_t *val;
  size_t val_len;
} pf_attr_view;

/* Iterates attribute entries in [p, p+len). Returns true and fills *out, advancing *off. */
static inline bool pf_attr_next(const uint8_t *p, size_t len, size_t *off, pf_attr_view *out) {
  pf_attr_hdr h;
  if (*off + sizeof h > len) return false;
  memcpy(&h, p + *off, sizeof h);
  size_t need = sizeof h + (size_t)h.key_len + (size_t)h.val_len;
  if (need > len - *off) return false;
  out->type = (profilis_attr_type)h.type;
  out->key = (const char *)p + *off + sizeof h;
  out->key_len = h.key_len;
  out->val = p + *off + sizeof h + h.key_len;
  out->val_len = h.val_len;
  *off += need;
  return true;
}

typedef struct pf_event_view {
  pf_event_hdr h;
  const char *name;
  const uint8_t *attrs;
} pf_event_view;

static inline bool pf_event_next(const uint8_t *p, size_t len, size_t *off, pf_event_view *out) {
  if (*off + sizeof out->h > len) return false;
  memcpy(&out->h, p + *off, sizeof out->h);
  size_t need = sizeof out->h + (size_t)out->h.name_len + (size_t)out->h.attrs_len;
  if (need > len - *off) return false;
  out->name = (const char *)p + *off + sizeof out->h;
  out->attrs = p + *off + sizeof out->h + out->h.name_len;
  *off += need;
  return true;
}

typedef struct pf_link_view {
  pf_link_hdr h;
  const char *tracestate;
  const uint8_t *attrs;
} pf_link_view;

static inline bool pf_link_next(const uint8_t *p, size_t len, size_t *off, pf_link_view *out) {
  if (*off + sizeof out->h > len) return false;
  memcpy(&out->h, p + *off, sizeof out->h);
  size_t need = sizeof out->h + (size_t)out->h.tracestate_len + (size_t)out->h.attrs_len;
  if (need > len - *off) return false;
  out->tracestate = (const char *)p + *off + sizeof out->h;
  out->attrs = p + *off + sizeof out->h + out->h.tracestate_len;
  *off += need;
  return true;
}

/* Scalar readers for attribute values (unaligned-safe). */
static inline int64_t pf_rd_i64(const uint8_t *p) {
  int64_t v;
  memcpy(&v, p, 8);
  return v;
}
static inline double pf_rd_f64(const uint8_t *p) {
  double v;
  memcpy(&v, p, 8);
  return v;
}
static inline uint32_t pf_rd_u32(const uint8_t *p) {
  uint32_t v;
  memcpy(&v, p, 4);
  return v;
}

/* Appends one attribute entry to an attribute section (used by the SDK and by the resource
 * builder). Returns 0, PROFILIS_EINVAL or PROFILIS_ENOMEM. value_length_limit 0 = none. */
struct pf_buf;
int pf_attr_encode(struct pf_buf *b, const profilis_attr *a, uint32_t value_length_limit);
/* Same, for a caller that already knows strlen(a->key) (a->key must not be NULL). */
int pf_attr_encode_klen(struct pf_buf *b, const profilis_attr *a, size_t key_len,
                        uint32_t value_length_limit);
/* Appends n bytes of text, repairing ill-formed UTF-8 (U+FFFD). Returns 0 or PROFILIS_ENOMEM. */
int pf_buf_append_text(struct pf_buf *b, const char *s, size_t n);
/* Removes the entry with this key from a section, if present. Returns true when removed. */
bool pf_attr_remove(struct pf_buf *b, const char *key, size_t key_len);

#endif
