/* JSONL exporter: one JSON object per span per line, appended to a file (O_APPEND, so several
 * processes can share it). A batch is rendered into one reusable buffer and written with as
 * few write() calls as the kernel allows; short writes for lack of space are retried until the
 * deadline, and a batch given up half-written is cut back off the file so that every line
 * stays valid JSON. The file descriptor survives fork() unchanged: appends stay atomic. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "json_write.h"
#include "pf_exporter.h"
#include "pf_log.h"
#include "profilis/common.h"

#define JSONL_DEFAULT_PATH "profilis-spans.jsonl"
#define JSONL_KEEP_BUF (4u << 20) /* a larger buffer is released after its batch */

typedef struct jsonl_exporter {
  pf_exporter base; /* first: the processor sees only this */
  int fd;
  char *path;
  pf_buf text;     /* the batch being written */
  pf_buf resource; /* the resource object, rendered once per batch */
  pf_ratelimit rl;
} jsonl_exporter;

/* ---- rendering ---- */

static void key(pf_json *j, const char *k) { pf_json_lit(j, k); }

static void events_json(pf_json *j, const pf_span_rec *r) {
  size_t off = 0;
  pf_event_view e;
  pf_json_raw(j, "[", 1);
  for (bool first = true; pf_event_next(pf_rec_events(r), r->events_len, &off, &e); first = false) {
    key(j, first ? "{\"name\":" : ",{\"name\":");
    pf_json_str(j, e.name, e.h.name_len);
    key(j, ",\"time_unix_nano\":");
    pf_json_u64(j, e.h.time_ns);
    key(j, ",\"attributes\":");
    pf_json_attrs(j, e.attrs, e.h.attrs_len);
    key(j, ",\"dropped_attributes_count\":");
    pf_json_u64(j, e.h.dropped_attrs);
    pf_json_raw(j, "}", 1);
  }
  pf_json_raw(j, "]", 1);
}

static void links_json(pf_json *j, const pf_span_rec *r) {
  size_t off = 0;
  pf_link_view l;
  pf_json_raw(j, "[", 1);
  for (bool first = true; pf_link_next(pf_rec_links(r), r->links_len, &off, &l); first = false) {
    key(j, first ? "{\"trace_id\":" : ",{\"trace_id\":");
    pf_json_hex(j, l.h.trace_id, 16);
    key(j, ",\"span_id\":");
    pf_json_hex(j, l.h.span_id, 8);
    key(j, ",\"trace_state\":");
    pf_json_str(j, l.tracestate, l.h.tracestate_len);
    key(j, ",\"attributes\":");
    pf_json_attrs(j, l.attrs, l.h.attrs_len);
    key(j, ",\"dropped_attributes_count\":");
    pf_json_u64(j, l.h.dropped_attrs);
    pf_json_raw(j, "}", 1);
  }
  pf_json_raw(j, "]", 1);
}

static void ids_json(pf_json *j, const pf_span_rec *r) {
  key(j, "{\"trace_id\":");
  pf_json_hex(j, r->trace_id, 16);
  key(j, ",\"span_id\":");
  pf_json_hex(j, r->span_id, 8);
  key(j, ",\"parent_span_id\":");
  if (r->has_parent)
    pf_json_hex(j, r->parent_span_id, 8);
  else
    pf_json_raw(j, "\"\"", 2);
}

static void times_json(pf_json *j, const pf_span_rec *r) {
  key(j, ",\"start_time_unix_nano\":");
  pf_json_u64(j, r->start_ns);
  key(j, ",\"end_time_unix_nano\":");
  pf_json_u64(j, r->end_ns);
  key(j, ",\"duration_ns\":");
  pf_json_u64(j, r->end_ns > r->start_ns ? r->end_ns - r->start_ns : 0);
}

static void scope_json(pf_json *j, const pf_scope *s) {
  key(j, ",\"scope\":{\"name\":");
  pf_json_cstr(j, s ? s->name : NULL);
  key(j, ",\"version\":");
  pf_json_cstr(j, s ? s->version : NULL);
  pf_json_raw(j, "}", 1);
}

/* Appends one span as a line; resource_obj is the batch's pre-rendered resource object. */
static int span_line(pf_json *j, const pf_span_rec *r, const pf_buf *resource_obj) {
  ids_json(j, r);
  key(j, ",\"name\":");
  pf_json_str(j, pf_rec_name(r), r->name_len);
  key(j, ",\"kind\":");
  pf_json_u64(j, r->kind);
  times_json(j, r);
  key(j, ",\"status_code\":");
  pf_json_u64(j, r->status_code);
  key(j, ",\"status_message\":");
  pf_json_str(j, pf_rec_status_msg(r), r->status_msg_len);
  key(j, ",\"trace_state\":");
  pf_json_str(j, pf_rec_tracestate(r), r->tracestate_len);
  key(j, ",\"attributes\":");
  pf_json_attrs(j, pf_rec_attrs(r), r->attrs_len);
  key(j, ",\"events\":");
  events_json(j, r);
  key(j, ",\"links\":");
  links_json(j, r);
  key(j, ",\"dropped_attributes_count\":");
  pf_json_u64(j, r->dropped_attrs);
  key(j, ",\"dropped_events_count\":");
  pf_json_u64(j, r->dropped_events);
  key(j, ",\"dropped_links_count\":");
  pf_json_u64(j, r->dropped_links);
  key(j, ",\"resource\":");
  pf_json_raw(j, (const char *)resource_obj->p, resource_obj->len);
  scope_json(j, r->scope);
  return pf_json_raw(j, "}\n", 2);
}

static int render_batch(jsonl_exporter *x, const pf_batch *b) {
  pf_buf_reset(&x->text);
  pf_buf_reset(&x->resource);
  pf_json rj = pf_json_on(&x->resource);
  if (b->resource)
    pf_json_attrs(&rj, b->resource->attrs.p, b->resource->attrs.len);
  else
    pf_json_raw(&rj, "{}", 2);
  if (rj.err) return rj.err;
  pf_json j = pf_json_on(&x->text);
  for (size_t i = 0; i < b->n && !j.err; i++)
    if (pf_rec_sections_fit(b->spans[i])) span_line(&j, b->spans[i], &x->resource);
  return j.err;
}

/* ---- writing ---- */

static bool write_retryable(int err) {
  return err == ENOSPC || err == EDQUOT || err == EAGAIN || err == EWOULDBLOCK;
}

/* Removes the `done` bytes just appended, if nobody appended after them (a shared file). */
static void undo_partial(jsonl_exporter *x, size_t done) {
  struct stat st;
  off_t end = lseek(x->fd, 0, SEEK_CUR);
  if (end < 0 || fstat(x->fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size != end) return;
  if (ftruncate(x->fd, end - (off_t)done) != 0)
    pf_log_rl(&x->rl, PF_LOG_WARN, "jsonl: could not cut a partial batch off %s: %s", x->path,
              strerror(errno));
}

/* Writes buf fully, waiting out full disks until the deadline. Returns 0, PROFILIS_EPERMANENT,
 * PROFILIS_ECANCELED or PROFILIS_ERETRYABLE. */
static int write_all(jsonl_exporter *x, const uint8_t *p, size_t len, const pf_deadline *dl) {
  size_t done = 0;
  uint32_t backoff_ms = 10;
  int rc = 0;
  while (done < len) {
    ssize_t w = write(x->fd, p + done, len - done);
    if (w > 0) {
      done += (size_t)w;
      continue;
    }
    int err = w < 0 ? errno : ENOSPC; /* a zero-byte write means no room */
    if (err == EINTR) continue;
    if (!write_retryable(err)) {
      pf_log_rl(&x->rl, PF_LOG_ERROR, "jsonl: write to %s failed: %s", x->path, strerror(err));
      rc = PROFILIS_EPERMANENT;
      break;
    }
    if (!dl || pf_deadline_expired(dl)) {
      pf_log_rl(&x->rl, PF_LOG_WARN, "jsonl: write to %s failed: %s; giving up on the batch",
                x->path, strerror(err));
      rc = (dl && dl->cancel && atomic_load(dl->cancel)) ? PROFILIS_ECANCELED : PROFILIS_ERETRYABLE;
      break;
    }
    atomic_fetch_add(&x->base.retries, 1);
    pf_sleep_ms(dl, backoff_ms);
    backoff_ms = backoff_ms >= 500 ? 1000 : backoff_ms * 2;
  }
  if (rc && done) undo_partial(x, done);
  return rc;
}

static int jsonl_export(pf_exporter *e, const pf_batch *b, const pf_deadline *dl,
                        uint64_t *rejected) {
  jsonl_exporter *x = (jsonl_exporter *)e;
  if (rejected) *rejected = 0;
  int rc = render_batch(x, b);
  if (rc) {
    pf_log_rl(&x->rl, PF_LOG_WARN, "jsonl: out of memory rendering a batch of %zu spans", b->n);
    rc = PROFILIS_ERETRYABLE;
  } else {
    rc = write_all(x, x->text.p, x->text.len, dl);
  }
  if (x->text.cap > JSONL_KEEP_BUF) pf_buf_free(&x->text);
  return rc;
}

static void jsonl_destroy(pf_exporter *e) {
  jsonl_exporter *x = (jsonl_exporter *)e;
  if (!x) return;
  if (x->fd >= 0) close(x->fd);
  pf_buf_free(&x->text);
  pf_buf_free(&x->resource);
  free(x->path);
  free(x);
}

int pf_jsonl_exporter_new(pf_exporter **out, const pf_config *cfg) {
  const char *path =
      cfg && cfg->o.jsonl_path && *cfg->o.jsonl_path ? cfg->o.jsonl_path : JSONL_DEFAULT_PATH;
  int rc = PROFILIS_ENOMEM;
  jsonl_exporter *x = calloc(1, sizeof *x);
  if (!x) goto fail;
  x->fd = -1;
  x->base.name = "jsonl";
  x->base.export_batch = jsonl_export;
  x->base.destroy = jsonl_destroy;
  x->path = strdup(path);
  if (!x->path) goto fail;
  x->fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (x->fd < 0) {
    pf_log(PF_LOG_ERROR, "jsonl: cannot open %s: %s", path, strerror(errno));
    rc = PROFILIS_EIO;
    goto fail;
  }
  *out = &x->base;
  return 0;
fail:
  jsonl_destroy(x ? &x->base : NULL);
  return rc;
}
