/* Circuit breaker + durable queue in front of one exporter slot (pc_resilient.h). A batch goes
 * straight to the inner exporter while the LMDB queue is empty and the breaker allows; else it
 * is encoded as an ExportTraceServiceRequest (one record per run of equal tenant, pushed in one
 * transaction) and replayed later, oldest first, by decoding each record back into chunks.
 * Replay runs in tick() for a bounded time and, one peeked group at a time, before each new
 * batch, so a backlog drains while traffic keeps arriving and order holds. Counts every span. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <time.h>
#include <unistd.h>

#include "pc_decode.h"
#include "pc_dqueue.h"
#include "pc_resilient.h"
#include "pf_log.h"
#include "pf_wire.h"
#include "profilis/common.h"

#define RS_DEFAULT_TIMEOUT_MS 10000u
#define RS_DEFAULT_MAX_BYTES (1ull << 30)
#define RS_REPLAY_BUDGET_NS 200000000ull /* per tick(): new batches must not starve */
#define RS_PEEK_RECORDS 8u
#define RS_PEEK_BYTES (4ull << 20)
#define RS_OPEN_WAIT_NS 5000000000ull /* a predecessor slot may still hold the directory */
#define RS_OPEN_RETRY_MS 100u
#define RS_KEEP_ENC (8u << 20) /* a larger encoding buffer is released after its batch */
#define RS_LOCK_NAME "profilis-dqueue.lock" /* dqueue.c's lock file (collector-design.md) */

/* One piece of a record's payload: bytes of the encoding buffer (ext NULL; offset, as the
 * buffer may move while it grows) or a chunk's raw bytes. */
typedef struct rs_piece {
  const uint8_t *ext;
  size_t off, len;
} rs_piece;

/* A run of chunks with the same tenant: one queue record. */
typedef struct rs_run {
  const char *tenant;
  uint32_t spans;
  size_t first, n; /* pieces */
} rs_run;

typedef struct rs_exporter {
  pc_exporter base; /* first: the pipeline sees only this */
  pc_exporter *inner;
  const pc_exporter_cfg *cfg;
  char tenant[PC_TENANT_MAX + 1];
  pc_export_counters ctr;
  pc_breaker br;
  bool breaker_on, queue_on;
  bool started, finished;
  pc_dqueue *q;
  char qpath[PATH_MAX];
  /* encoding scratch, kept across batches */
  pf_buf enc;
  rs_piece *pieces;
  size_t n_pieces, cap_pieces;
  rs_run *runs;
  size_t n_runs, cap_runs;
  struct iovec *iov;
  size_t cap_iov;
  pc_dq_input *ins;
  size_t cap_ins;
  pc_dq_batch peek;
  /* read by other threads */
  atomic_bool full;
  atomic_int state;
  _Atomic uint64_t queued_spans;
  /* metrics (NULL without a pc_metrics) */
  pc_series *m_state[PC_BREAKER_N_STATES], *m_trans[PC_BREAKER_N_STATES];
  pc_series *m_records, *m_bytes, *m_spans, *m_corrupt;
  uint64_t trans_seen[PC_BREAKER_N_STATES], corrupt_seen;
  pf_ratelimit rl_fail, rl_drop, rl_corrupt, rl_queue, rl_replay;
} rs_exporter;

static const char *rs_name(const rs_exporter *x) {
  return x->cfg->name ? x->cfg->name : "exporter";
}

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

static bool canceled(const pf_deadline *dl) {
  return dl && dl->cancel && atomic_load_explicit(dl->cancel, memory_order_relaxed);
}

static uint64_t chunk_spans(pc_chunk *const *chunks, size_t n) {
  uint64_t s = 0;
  for (size_t i = 0; i < n; i++) s += chunks[i]->n_spans;
  return s;
}

/* ---- publishing state for other threads and metrics ---- */

static void publish_breaker(rs_exporter *x) {
  pc_breaker_state st = pc_breaker_state_of(&x->br);
  atomic_store_explicit(&x->state, (int)st, memory_order_relaxed);
  for (int s = 0; s < PC_BREAKER_N_STATES; s++) {
    pc_gauge_set(x->m_state[s], s == (int)st);
    uint64_t t = pc_breaker_transitions(&x->br, (pc_breaker_state)s);
    pc_counter_add(x->m_trans[s], t - x->trans_seen[s]);
    x->trans_seen[s] = t;
  }
}

static void publish_queue(rs_exporter *x) {
  if (!x->q) return;
  pc_dqueue_stats st;
  pc_dqueue_stats_get(x->q, &st);
  atomic_store_explicit(&x->queued_spans, st.spans, memory_order_relaxed);
  pc_gauge_set(x->m_records, (int64_t)st.depth);
  pc_gauge_set(x->m_bytes, (int64_t)st.bytes);
  pc_gauge_set(x->m_spans, (int64_t)st.spans);
  pc_counter_add(x->m_corrupt, st.corrupt - x->corrupt_seen);
  x->corrupt_seen = st.corrupt;
}

static uint64_t queue_depth(const rs_exporter *x) {
  if (!x->q) return 0;
  pc_dqueue_stats st;
  pc_dqueue_stats_get(x->q, &st);
  return st.depth;
}

/* ---- breaker ---- */

/* May a call go now? Counts a half-open probe: follow it with exactly one record(). */
static bool br_allow(rs_exporter *x) {
  if (!x->breaker_on) return true;
  bool ok = pc_breaker_allow(&x->br, pf_mono_ns());
  publish_breaker(x);
  return ok;
}

/* Would br_allow say yes now? Asks without taking a probe. */
static bool br_would_allow(const rs_exporter *x) {
  return !x->breaker_on || pc_breaker_next_probe_ns(&x->br) <= pf_mono_ns();
}

/* An outcome: 0 and EPERMANENT mean the backend answered. */
static void br_record(rs_exporter *x, int rc) {
  if (!x->breaker_on) return;
  pc_breaker_record(&x->br, pf_mono_ns(), rc == 0 || rc == PROFILIS_EPERMANENT);
  publish_breaker(x);
}

static bool retryable(int rc) { return rc != 0 && rc != PROFILIS_EPERMANENT; }

/* ---- counting ---- */

/* Counts the outcome of a delivery attempt that is final (not queued). */
static void count_outcome(rs_exporter *x, int rc, uint64_t spans, uint64_t rejected) {
  if (rc == 0) {
    if (rejected > spans) rejected = spans;
    pc_counter_add(x->ctr.sent, spans - rejected);
    pc_counter_add(x->ctr.failed, rejected);
    pc_counter_add(x->ctr.rejected, rejected);
    if (rejected)
      pf_log_rl(&x->rl_fail, PF_LOG_WARN, "exporter %s: backend rejected %llu of %llu spans",
                rs_name(x), (unsigned long long)rejected, (unsigned long long)spans);
    return;
  }
  pc_counter_add(x->ctr.failed, spans);
  pf_log_rl(&x->rl_fail, PF_LOG_WARN, "exporter %s: %llu spans failed: %s", rs_name(x),
            (unsigned long long)spans, profilis_strerror(rc));
}

/* ---- opening the queue ---- */

static void on_drop(void *arg, const pc_dq_drop *d) {
  rs_exporter *x = arg;
  if (d->reason == PC_DQ_DROP_FULL) {
    pc_counter_add(x->ctr.dropped, d->spans);
    pf_log_rl(&x->rl_drop, PF_LOG_WARN,
              "exporter %s: durable queue full: dropped the oldest record (%u spans, tenant "
              "\"%s\")",
              rs_name(x), d->spans, d->tenant);
  } else { /* counted by profilis_queue_corrupt_records_total through the stats */
    pf_log_rl(&x->rl_corrupt, PF_LOG_ERROR,
              "exporter %s: durable queue: corrupt record %llu deleted", rs_name(x),
              (unsigned long long)d->key);
  }
}

/* Copies s into dst as one path component ('/' -> '_'). */
static void path_component(char *dst, size_t cap, const char *s) {
  snprintf(dst, cap, "%s", s);
  for (char *p = dst; *p; p++)
    if (*p == '/') *p = '_';
}

/* <queue_directory>/<exporter name>/<tenant or "_">. Returns false when it does not fit. */
static bool queue_path(rs_exporter *x) {
  char name[256], tenant[PC_TENANT_MAX + 1];
  path_component(name, sizeof name, rs_name(x));
  path_component(tenant, sizeof tenant, x->tenant[0] ? x->tenant : "_");
  int n = snprintf(x->qpath, sizeof x->qpath, "%s/%s/%s", x->cfg->queue_directory, name, tenant);
  return n > 0 && (size_t)n < sizeof x->qpath;
}

/* True when another queue holds the directory's lock now. Probing quietly first keeps the
 * wait for a predecessor out of the error log (pc_dqueue_open logs every refusal). */
static bool queue_busy(const char *dir) {
  char lp[PATH_MAX + sizeof RS_LOCK_NAME + 1];
  snprintf(lp, sizeof lp, "%s/%s", dir, RS_LOCK_NAME);
  int fd = open(lp, O_RDWR | O_CLOEXEC);
  if (fd < 0) return false;
  bool busy = flock(fd, LOCK_EX | LOCK_NB) != 0 && errno == EWOULDBLOCK;
  close(fd); /* also releases a lock taken by the probe */
  return busy;
}

static void sleep_ms(uint32_t ms) {
  struct timespec ts = {.tv_sec = ms / 1000u, .tv_nsec = (long)(ms % 1000u) * 1000000L};
  while (nanosleep(&ts, &ts) && errno == EINTR) {
  }
}

/* Opens the queue, waiting up to RS_OPEN_WAIT_NS for a predecessor to let go of it. On failure
 * the slot runs without a queue (logged). */
static void queue_open(rs_exporter *x) {
  if (!x->cfg->queue_directory || !*x->cfg->queue_directory || !queue_path(x)) {
    pf_log(PF_LOG_ERROR, "exporter %s: no usable queue directory: running without a durable queue",
           rs_name(x));
    return;
  }
  pc_dqueue_cfg qc = {.path = x->qpath,
                      .max_bytes =
                          x->cfg->queue_max_bytes ? x->cfg->queue_max_bytes : RS_DEFAULT_MAX_BYTES,
                      .full = (pc_dq_full_policy)x->cfg->queue_full,
                      .no_sync = !x->cfg->queue_fsync,
                      .on_drop = on_drop,
                      .on_drop_arg = x};
  uint64_t until = pf_mono_ns() + RS_OPEN_WAIT_NS;
  int rc;
  /* Only a held lock is worth waiting for; any other failure gets one more try (the lock may
   * have been let go between the probe and the open). */
  for (int tries = 0;; tries++) {
    while (queue_busy(x->qpath) && pf_mono_ns() < until) sleep_ms(RS_OPEN_RETRY_MS);
    rc = pc_dqueue_open(&x->q, &qc);
    if (rc != PROFILIS_EIO || pf_mono_ns() >= until || (tries && !queue_busy(x->qpath))) break;
  }
  if (rc) {
    x->q = NULL;
    pf_log(PF_LOG_ERROR, "exporter %s: cannot open the durable queue %s (%s): running without it",
           rs_name(x), x->qpath, profilis_strerror(rc));
    return;
  }
  publish_queue(x);
  pc_dqueue_stats st;
  pc_dqueue_stats_get(x->q, &st);
  if (st.depth)
    pf_log(PF_LOG_INFO, "exporter %s: durable queue %s holds %llu records (%llu spans) to replay",
           rs_name(x), x->qpath, (unsigned long long)st.depth, (unsigned long long)st.spans);
}

/* First call on the slot's thread (the predecessor is done by then): publish the breaker's
 * state and open the queue. */
static void start(rs_exporter *x) {
  if (x->started) return;
  x->started = true;
  publish_breaker(x);
  if (x->queue_on && !x->finished) queue_open(x);
}

/* ---- encoding a batch into records ---- */

static int grow(void **p, size_t *cap, size_t need, size_t elem) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 16;
  while (c < need) c *= 2;
  void *np = realloc(*p, c * elem);
  if (!np) return PROFILIS_ENOMEM;
  *p = np;
  *cap = c;
  return 0;
}

static int add_piece(rs_exporter *x, const uint8_t *ext, size_t off, size_t len) {
  if (grow((void **)&x->pieces, &x->cap_pieces, x->n_pieces + 1, sizeof *x->pieces))
    return PROFILIS_ENOMEM;
  x->pieces[x->n_pieces++] = (rs_piece){ext, off, len};
  return 0;
}

/* Unchanged chunks with bytes go as 0x0a <len> <raw> (the raw bytes are not copied), others
 * are encoded from their records. */
static int encode_chunk(rs_exporter *x, const pc_chunk *c) {
  size_t off = x->enc.len;
  if (!c->modified && c->raw.len > 0) {
    uint8_t hdr[11];
    hdr[0] = 0x0a;
    size_t n = (size_t)(pf_put_varint(hdr + 1, c->raw.len) - hdr);
    int rc = pf_buf_append(&x->enc, hdr, n);
    if (!rc) rc = add_piece(x, NULL, off, n);
    if (!rc) rc = add_piece(x, c->raw.p, 0, c->raw.len);
    return rc;
  }
  if (c->n_spans == 0) return 0;
  pf_batch b = pc_chunk_batch(c);
  int rc = pf_otlp_encode_request(&x->enc, &b);
  if (!rc) rc = add_piece(x, NULL, off, x->enc.len - off);
  return rc;
}

/* Splits the batch into runs of equal tenant and encodes them (x->runs, x->pieces). */
static int encode_batch(rs_exporter *x, pc_chunk *const *chunks, size_t n) {
  pf_buf_reset(&x->enc);
  x->n_pieces = x->n_runs = 0;
  for (size_t i = 0; i < n; i++) {
    const pc_chunk *c = chunks[i];
    if (!x->n_runs || strcmp(x->runs[x->n_runs - 1].tenant, c->tenant) != 0) {
      if (grow((void **)&x->runs, &x->cap_runs, x->n_runs + 1, sizeof *x->runs))
        return PROFILIS_ENOMEM;
      x->runs[x->n_runs++] = (rs_run){.tenant = c->tenant, .first = x->n_pieces};
    }
    rs_run *r = &x->runs[x->n_runs - 1];
    int rc = encode_chunk(x, c);
    if (rc) return rc;
    r->spans += c->n_spans;
    r->n = x->n_pieces - r->first;
  }
  return 0;
}

/* Builds the push inputs from the runs (now that the encoding buffer no longer moves). Runs
 * with nothing to deliver are left out. Returns the number of inputs, or -1 (ENOMEM). */
static long build_inputs(rs_exporter *x) {
  if (grow((void **)&x->iov, &x->cap_iov, x->n_pieces + 1, sizeof *x->iov) ||
      grow((void **)&x->ins, &x->cap_ins, x->n_runs + 1, sizeof *x->ins))
    return -1;
  for (size_t i = 0; i < x->n_pieces; i++) {
    const rs_piece *p = &x->pieces[i];
    x->iov[i].iov_base = (void *)(p->ext ? p->ext : x->enc.p + p->off);
    x->iov[i].iov_len = p->len;
  }
  long k = 0;
  uint64_t now = pf_real_ns();
  for (size_t i = 0; i < x->n_runs; i++) {
    const rs_run *r = &x->runs[i];
    if (!r->spans) continue;
    x->ins[k++] = (pc_dq_input){.tenant = r->tenant,
                                .spans = r->spans,
                                .time_ns = now,
                                .parts = x->iov + r->first,
                                .n_parts = r->n};
  }
  return k;
}

static void log_push_failure(rs_exporter *x, int rc, uint64_t spans) {
  const char *why = rc == PROFILIS_EFULL    ? "the durable queue is full (policy refuse)"
                    : rc == PROFILIS_ELIMIT ? "the batch is larger than the queue's max_size"
                                            : profilis_strerror(rc);
  pf_log_rl(&x->rl_queue, PF_LOG_ERROR, "exporter %s: %llu spans failed: cannot queue them: %s",
            rs_name(x), (unsigned long long)spans, why);
}

/* Pushes the batch behind the backlog, counting whatever could not be queued as failed.
 * Returns 0 when every span is queued. */
static int queue_batch(rs_exporter *x, pc_chunk *const *chunks, size_t n, uint64_t spans) {
  int rc = encode_batch(x, chunks, n);
  long k = rc ? -1 : build_inputs(x);
  if (k < 0) rc = PROFILIS_ENOMEM;
  if (!rc && k > 0) rc = pc_dqueue_push_many(x->q, x->ins, (size_t)k, NULL);
  uint64_t lost = rc ? spans : 0;
  if (rc == PROFILIS_ELIMIT && k > 1) { /* together too large: queue what fits one by one */
    lost = 0;
    rc = 0;
    for (long i = 0; i < k; i++) {
      int r = pc_dqueue_push(x->q, &x->ins[i], NULL);
      if (r) lost += x->ins[i].spans, rc = r;
    }
  }
  if (rc == PROFILIS_EFULL)
    atomic_store(&x->full, true);
  else if (!rc)
    atomic_store(&x->full, false);
  if (lost) {
    pc_counter_add(x->ctr.failed, lost);
    log_push_failure(x, rc, lost);
  }
  if (x->enc.cap > RS_KEEP_ENC) pf_buf_free(&x->enc);
  publish_queue(x);
  return rc;
}

/* ---- replay ---- */

/* The inner exporter's deadline: with a queue, one attempt's timeout (the queue and the
 * breaker replace long retries); without one, the exporter's own retry budget as unwrapped
 * (retry.max_elapsed_time for otlp). Never past the caller's. */
static pf_deadline inner_deadline(const rs_exporter *x, const pf_deadline *dl) {
  uint64_t ms = x->cfg->timeout_ms ? x->cfg->timeout_ms : RS_DEFAULT_TIMEOUT_MS;
  if (!x->cfg->queue_enabled &&
      (x->cfg->type == PC_EXPORTER_OTLP || x->cfg->type == PC_EXPORTER_LOADBALANCING) &&
      x->cfg->retry_max_elapsed_ms > ms)
    ms = x->cfg->retry_max_elapsed_ms;
  pf_deadline d = {.at_mono_ns = pf_mono_ns() + ms * 1000000ull, .cancel = NULL};
  if (dl) {
    d.at_mono_ns = min_u64(d.at_mono_ns, dl->at_mono_ns);
    d.cancel = dl->cancel;
  }
  return d;
}

/* What became of a queued record. */
typedef enum rs_replayed {
  RS_DONE, /* delivered, refused for good or undecodable: counted, may be acknowledged */
  RS_STOP, /* not delivered (breaker closed the way, retryable failure, no memory): keep it */
} rs_replayed;

/* Decodes one queued record back into chunks (tenant from the record, budget 0: replayed
 * chunks are not charged to the pipeline) and exports them if the breaker allows. */
static rs_replayed replay_record(rs_exporter *x, const pc_dq_record *rec, const pf_deadline *dl) {
  pc_decode_opts opts = {.keep_raw = x->cfg->type != PC_EXPORTER_JSONL};
  pc_decode_result res;
  int rc = pc_decode_otlp_proto(rec->payload, rec->payload_len, &opts, &res);
  if (rc == PROFILIS_ENOMEM) return RS_STOP;
  if (rc) {
    pf_log_rl(&x->rl_replay, PF_LOG_ERROR,
              "exporter %s: queued record does not decode (%s): %u spans failed", rs_name(x),
              res.message, rec->spans);
    pc_counter_add(x->ctr.failed, rec->spans);
    return RS_DONE;
  }
  uint64_t spans = res.n_spans, rejected = 0;
  /* Spans the decoder left out (none for records this module wrote) count as failed. */
  uint64_t lost = rec->spans > spans ? rec->spans - spans : 0;
  if (!res.n_chunks) {
    pc_counter_add(x->ctr.failed, lost);
    pc_decode_result_free(&res);
    return RS_DONE;
  }
  if (!br_allow(x)) {
    pc_decode_result_free(&res);
    return RS_STOP;
  }
  size_t tl = rec->tenant_len < PC_TENANT_MAX ? rec->tenant_len : PC_TENANT_MAX;
  for (size_t i = 0; i < res.n_chunks; i++) {
    memcpy(res.chunks[i]->tenant, rec->tenant, tl);
    res.chunks[i]->tenant[tl] = '\0';
    res.chunks[i]->budget_bytes = 0;
  }
  pf_deadline d = inner_deadline(x, dl);
  rc = x->inner->export_chunks(x->inner, res.chunks, res.n_chunks, &d, &rejected);
  pc_decode_result_free(&res);
  br_record(x, rc);
  if (retryable(rc)) return RS_STOP;
  count_outcome(x, rc, spans, rejected);
  pc_counter_add(x->ctr.failed, lost);
  return RS_DONE;
}

/* Replays oldest first while the breaker allows, for up to budget_ns and max_groups peeked
 * groups (acknowledged per group: one commit each). Returns true when the queue is empty. */
static bool replay(rs_exporter *x, uint64_t budget_ns, unsigned max_groups, const pf_deadline *dl) {
  uint64_t t0 = pf_mono_ns();
  for (unsigned g = 0; g < max_groups; g++) {
    if (!queue_depth(x)) break;
    if (canceled(dl) || pf_mono_ns() - t0 >= budget_ns || !br_would_allow(x)) break;
    int rc = pc_dqueue_peek(x->q, RS_PEEK_RECORDS, RS_PEEK_BYTES, &x->peek);
    if (rc || !x->peek.n) {
      publish_queue(x); /* corrupt records may have gone */
      if (rc)
        pf_log_rl(&x->rl_replay, PF_LOG_ERROR, "exporter %s: durable queue read: %s", rs_name(x),
                  profilis_strerror(rc));
      break;
    }
    uint64_t ack = 0;
    size_t done = 0;
    while (done < x->peek.n) {
      if (done && (canceled(dl) || pf_mono_ns() - t0 >= budget_ns)) break;
      if (replay_record(x, &x->peek.items[done].rec, dl) != RS_DONE) break;
      ack = x->peek.items[done++].key;
    }
    if (done) {
      rc = pc_dqueue_ack(x->q, ack);
      if (rc)
        pf_log_rl(&x->rl_replay, PF_LOG_ERROR, "exporter %s: durable queue ack: %s", rs_name(x),
                  profilis_strerror(rc));
      else
        atomic_store(&x->full, false); /* a replay freed room */
    }
    publish_queue(x);
    if (done < x->peek.n) break;
  }
  if (queue_depth(x)) return false;
  if (x->peek.data.cap) pc_dq_batch_free(&x->peek); /* a backlog is over: give its memory back */
  return true;
}

/* ---- the exporter interface ---- */

static int rs_export(pc_exporter *e, pc_chunk *const *chunks, size_t n, const pf_deadline *dl,
                     uint64_t *rejected) {
  rs_exporter *x = (rs_exporter *)e;
  uint64_t spans = chunk_spans(chunks, n);
  *rejected = 0;
  start(x);
  bool cancel = canceled(dl);
  /* A backlog first gets one group replayed, so the queue drains while traffic flows. */
  bool empty = !x->q || cancel || replay(x, RS_REPLAY_BUDGET_NS, 1, dl);
  if (x->q && (cancel || !empty)) return queue_batch(x, chunks, n, spans);
  if (!br_allow(x)) {
    if (x->q) return queue_batch(x, chunks, n, spans);
    pc_counter_add(x->ctr.failed, spans);
    pf_log_rl(&x->rl_fail, PF_LOG_WARN, "exporter %s: circuit breaker open: %llu spans failed",
              rs_name(x), (unsigned long long)spans);
    return PROFILIS_ERETRYABLE;
  }
  pf_deadline d = inner_deadline(x, dl);
  int rc = x->inner->export_chunks(x->inner, chunks, n, &d, rejected);
  br_record(x, rc);
  if (retryable(rc) && x->q) return queue_batch(x, chunks, n, spans);
  if (retryable(rc) && canceled(dl)) {
    pc_counter_add(x->ctr.dropped, spans); /* the drain deadline passed; nowhere to keep it */
    return rc;
  }
  count_outcome(x, rc, spans, *rejected);
  return rc;
}

static void rs_tick(pc_exporter *e) {
  rs_exporter *x = (rs_exporter *)e;
  start(x);
  if (x->q) replay(x, RS_REPLAY_BUDGET_NS, UINT32_MAX, NULL);
  if (x->inner->tick) x->inner->tick(x->inner);
}

/* A backlog is replayed as soon as the breaker lets a call through; else the inner
 * exporter's own work. */
static uint64_t rs_next_tick(pc_exporter *e) {
  rs_exporter *x = (rs_exporter *)e;
  if (!x->started) return 0; /* opens the durable queue */
  if (queue_depth(x)) {
    uint64_t probe = x->breaker_on ? pc_breaker_next_probe_ns(&x->br) : 0;
    return probe == UINT64_MAX ? 0 : probe;
  }
  if (!x->inner->tick) return PC_TICK_NONE;
  return x->inner->next_tick ? x->inner->next_tick(x->inner) : 0;
}

static void rs_finish(pc_exporter *e) {
  rs_exporter *x = (rs_exporter *)e;
  if (x->inner->finish) x->inner->finish(x->inner);
  x->finished = true;
  if (x->q) {
    publish_queue(x);
    pc_dqueue_close(x->q); /* frees the directory for a successor slot */
    x->q = NULL;
  }
}

static void rs_destroy(pc_exporter *e) {
  rs_exporter *x = (rs_exporter *)e;
  if (!x) return;
  if (x->q) pc_dqueue_close(x->q);
  if (x->inner) x->inner->destroy(x->inner);
  pf_buf_free(&x->enc);
  free(x->pieces);
  free(x->runs);
  free(x->iov);
  free(x->ins);
  pc_dq_batch_free(&x->peek);
  free(x);
}

/* ---- construction ---- */

static uint64_t fnv1a(uint64_t h, const char *s) {
  for (; s && *s; s++) h = (h ^ (uint8_t)*s) * 0x100000001b3ull;
  return h;
}

/* The breaker settings; zero where zero means nothing keeps the default. */
static void breaker_cfg(const pc_exporter_cfg *c, const char *tenant, pc_breaker_cfg *b) {
  pc_breaker_cfg_default(b);
  b->failure_threshold = c->breaker_failures;
  b->failure_ratio = c->breaker_failure_ratio;
  b->jitter = c->breaker_jitter;
  if (c->breaker_min_calls) b->min_calls = c->breaker_min_calls;
  if (c->breaker_window_ms) b->window_ms = c->breaker_window_ms;
  b->window_buckets = 10;
  if (c->breaker_open_ms) b->open_ms = c->breaker_open_ms;
  if (c->breaker_open_max_ms) b->open_max_ms = c->breaker_open_max_ms;
  if (b->open_max_ms < b->open_ms) b->open_max_ms = b->open_ms;
  b->open_multiplier = 2.0;
  if (c->breaker_probes) b->half_open_probes = c->breaker_probes;
  if (c->breaker_close_after) b->close_after = c->breaker_close_after;
  b->seed = fnv1a(fnv1a(0xcbf29ce484222325ull, tenant), c->name) ^ 0x9e3779b97f4a7c15ull;
}

static pc_series *series(pc_metrics *m, pc_metric_kind k, const char *name, const char *help,
                         const char *labels) {
  return m ? pc_metrics_series(m, k, name, help, labels) : NULL;
}

static void register_metrics(rs_exporter *x, pc_metrics *m) {
  char en[512], tn[2 * PC_TENANT_MAX + 8], base[1100], labels[1200];
  const char *name = rs_name(x);
  pc_label_escape(en, sizeof en, name, strlen(name));
  pc_label_escape(tn, sizeof tn, x->tenant, strlen(x->tenant));
  snprintf(base, sizeof base, "exporter=\"%s\",tenant=\"%s\"", en, tn);
  for (int s = 0; s < PC_BREAKER_N_STATES; s++) {
    snprintf(labels, sizeof labels, "%s,state=\"%s\"", base,
             pc_breaker_state_name((pc_breaker_state)s));
    x->m_state[s] =
        series(m, PC_GAUGE, "profilis_breaker_state",
               "Circuit breaker state of an exporter: 1 for the current state.", labels);
    x->m_trans[s] = series(m, PC_COUNTER, "profilis_breaker_transitions_total",
                           "Times an exporter's circuit breaker entered each state.", labels);
  }
  if (!x->queue_on) return;
  x->m_records = series(m, PC_GAUGE, "profilis_queue_records",
                        "Batches waiting in an exporter's durable queue.", base);
  x->m_bytes = series(m, PC_GAUGE, "profilis_queue_bytes",
                      "Stored bytes of the records in an exporter's durable queue.", base);
  x->m_spans = series(m, PC_GAUGE, "profilis_queue_spans",
                      "Spans waiting in an exporter's durable queue.", base);
  x->m_corrupt = series(m, PC_COUNTER, "profilis_queue_corrupt_records_total",
                        "Durable queue records found corrupt when read (deleted).", base);
}

int pc_resilient_new(pc_exporter **out, pc_exporter *inner, const pc_exporter_cfg *cfg,
                     const char *tenant, pc_metrics *m, const pc_export_counters *counters) {
  *out = NULL;
  rs_exporter *x = calloc(1, sizeof *x);
  if (!x) {
    inner->destroy(inner);
    return PROFILIS_ENOMEM;
  }
  x->base = (pc_exporter){.cfg = cfg,
                          .export_chunks = rs_export,
                          .tick = rs_tick,
                          .next_tick = rs_next_tick,
                          .destroy = rs_destroy,
                          .finish = rs_finish,
                          .self_counting = true};
  x->inner = inner;
  x->cfg = cfg;
  snprintf(x->tenant, sizeof x->tenant, "%s", tenant ? tenant : "");
  if (counters) x->ctr = *counters;
  x->breaker_on = cfg->breaker_enabled;
  x->queue_on = cfg->queue_enabled;
  pc_breaker_cfg bc;
  breaker_cfg(cfg, x->tenant, &bc);
  if (pc_breaker_init(&x->br, &bc))
    pf_log(PF_LOG_WARN, "exporter %s: breaker settings out of range: using the defaults",
           rs_name(x));
  atomic_init(&x->full, false);
  atomic_init(&x->state, (int)pc_breaker_state_of(&x->br));
  atomic_init(&x->queued_spans, 0);
  register_metrics(x, m);
  *out = &x->base;
  return 0;
}

bool pc_resilient_full(const pc_exporter *e) {
  return atomic_load(&((const rs_exporter *)e)->full);
}

pc_breaker_state pc_resilient_state(const pc_exporter *e) {
  return (pc_breaker_state)atomic_load_explicit(&((const rs_exporter *)e)->state,
                                                memory_order_relaxed);
}

uint64_t pc_resilient_queued_spans(const pc_exporter *e) {
  return atomic_load_explicit(&((const rs_exporter *)e)->queued_spans, memory_order_relaxed);
}
