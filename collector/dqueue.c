/* Durable FIFO on LMDB (pc_dqueue.h). Two named databases: "records" (big-endian sequence
 * key -> record) and "meta" (one CRC-checked value: next key, depth, bytes, spans). Every
 * change is one write transaction that updates both, so a crash leaves either the old or the
 * new state. Records are written in place (MDB_RESERVE + MDB_APPEND: no copy, no tree search)
 * and checked with zlib's crc32 whenever they are read. An exclusive flock on a side file keeps
 * a second opener out, in this process or another. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <lmdb.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "pc_dqueue.h"
#include "pf_log.h"
#include "profilis/common.h"

#define REC_MAGIC 0x50445131u  /* "PDQ1" */
#define META_MAGIC 0x5044514du /* "PDQM" */
#define META_VERSION 1u
#define META_SIZE 44u /* magic, version, next_key, depth, bytes, spans, crc */
#define MIN_MAX_BYTES 4096u
#define MAP_HEADROOM (16ull << 20)
#define MAP_ROUND (1ull << 16)
#define MAX_MAPFULL_RETRIES 64
#define LOCK_NAME "profilis-dqueue.lock"

static const char META_KEY[] = "state";

typedef struct dq_state {
  uint64_t next_key, depth, bytes, spans;
} dq_state;

struct pc_dqueue {
  MDB_env *env;
  MDB_dbi recs, meta;
  int lock_fd;
  pc_dqueue_cfg cfg; /* cfg.path points at `path` */
  char *path;
  dq_state st;       /* what the metadata record says after the last commit */
  pc_dq_drop *drops; /* records the transaction in progress dropped */
  size_t n_drops, cap_drops;
  _Atomic uint64_t depth, bytes, spans, next_key, pushed, acked, dropped, dropped_spans, corrupt,
      map_bytes;
};

/* ---- big-endian fields ---- */

static void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8);
  p[3] = (uint8_t)v;
}

static uint32_t get32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put64(uint8_t *p, uint64_t v) {
  put32(p, (uint32_t)(v >> 32));
  put32(p + 4, (uint32_t)v);
}

static uint64_t get64(const uint8_t *p) { return (uint64_t)get32(p) << 32 | get32(p + 4); }

static uint32_t crc(const uint8_t *p, size_t n) {
  return (uint32_t)crc32_z(crc32_z(0, Z_NULL, 0), p, n);
}

/* ---- records ---- */

const char *pc_dq_full_policy_name(pc_dq_full_policy p) {
  static const char *const names[] = {
#define PC__DQ_POLICY_NAME(name, text) text,
      PC_DQ_FULL_POLICY_MAP(PC__DQ_POLICY_NAME)
#undef PC__DQ_POLICY_NAME
  };
  return (unsigned)p < PC_DQ_N_POLICIES ? names[p] : "unknown";
}

int pc_dq_full_policy_parse(const char *s, pc_dq_full_policy *out) {
  for (unsigned i = 0; s && i < PC_DQ_N_POLICIES; i++) {
    if (!strcmp(s, pc_dq_full_policy_name((pc_dq_full_policy)i))) {
      *out = (pc_dq_full_policy)i;
      return 0;
    }
  }
  return PROFILIS_EINVAL;
}

static size_t tenant_len(const pc_dq_input *in) {
  return in->tenant ? strnlen(in->tenant, PC_DQ_TENANT_MAX + 1) : 0;
}

uint64_t pc_dq_record_size(const pc_dq_input *in) {
  size_t tl = tenant_len(in);
  if (tl > PC_DQ_TENANT_MAX || (in->n_parts && !in->parts)) return 0;
  uint64_t pl = 0;
  for (size_t i = 0; i < in->n_parts; i++) {
    pl += in->parts[i].iov_len;
    if (pl > UINT32_MAX) return 0;
  }
  return PC_DQ_HEADER_SIZE + tl + pl;
}

int pc_dq_record_encode(const pc_dq_input *in, uint8_t *dst, size_t cap) {
  uint64_t size = pc_dq_record_size(in);
  if (!size || size > cap) return PROFILIS_EINVAL;
  size_t tl = tenant_len(in);
  put32(dst, REC_MAGIC);
  put32(dst + 8, (uint32_t)(size - PC_DQ_HEADER_SIZE - tl));
  put32(dst + 12, in->spans);
  put64(dst + 16, in->time_ns);
  dst[24] = (uint8_t)tl;
  dst[25] = dst[26] = dst[27] = 0;
  uint8_t *w = dst + PC_DQ_HEADER_SIZE;
  if (tl) memcpy(w, in->tenant, tl);
  w += tl;
  for (size_t i = 0; i < in->n_parts; i++) {
    if (in->parts[i].iov_len) memcpy(w, in->parts[i].iov_base, in->parts[i].iov_len);
    w += in->parts[i].iov_len;
  }
  put32(dst + 4, crc(dst + 8, (size_t)size - 8));
  return 0;
}

int pc_dq_record_decode(const uint8_t *p, size_t n, pc_dq_record *out) {
  if (!p || n < PC_DQ_HEADER_SIZE || get32(p) != REC_MAGIC) return PROFILIS_EPROTO;
  size_t tl = p[24];
  uint64_t pl = get32(p + 8);
  if (tl > PC_DQ_TENANT_MAX || p[25] || p[26] || p[27]) return PROFILIS_EPROTO;
  if ((uint64_t)PC_DQ_HEADER_SIZE + tl + pl != (uint64_t)n) return PROFILIS_EPROTO;
  if (crc(p + 8, n - 8) != get32(p + 4)) return PROFILIS_EPROTO;
  *out = (pc_dq_record){
      .spans = get32(p + 12),
      .time_ns = get64(p + 16),
      .tenant = (const char *)p + PC_DQ_HEADER_SIZE,
      .tenant_len = tl,
      .payload = p + PC_DQ_HEADER_SIZE + tl,
      .payload_len = (size_t)pl,
  };
  return 0;
}

/* ---- metadata and state ---- */

static void meta_encode(const dq_state *s, uint8_t out[META_SIZE]) {
  put32(out, META_MAGIC);
  put32(out + 4, META_VERSION);
  put64(out + 8, s->next_key);
  put64(out + 16, s->depth);
  put64(out + 24, s->bytes);
  put64(out + 32, s->spans);
  put32(out + 40, crc(out, 40));
}

static bool meta_decode(const MDB_val *v, dq_state *s) {
  const uint8_t *p = v->mv_data;
  if (v->mv_size != META_SIZE || get32(p) != META_MAGIC || get32(p + 4) != META_VERSION ||
      get32(p + 40) != crc(p, 40))
    return false;
  *s = (dq_state){get64(p + 8), get64(p + 16), get64(p + 24), get64(p + 32)};
  return s->next_key != 0;
}

static int meta_put(pc_dqueue *q, MDB_txn *txn, const dq_state *s) {
  uint8_t buf[META_SIZE];
  meta_encode(s, buf);
  MDB_val k = {sizeof META_KEY - 1, (void *)META_KEY}, v = {META_SIZE, buf};
  return mdb_put(txn, q->meta, &k, &v, 0);
}

/* Publishes the committed state for pc_dqueue_stats_get. */
static void publish(pc_dqueue *q, const dq_state *s) {
  q->st = *s;
  atomic_store_explicit(&q->depth, s->depth, memory_order_relaxed);
  atomic_store_explicit(&q->bytes, s->bytes, memory_order_relaxed);
  atomic_store_explicit(&q->spans, s->spans, memory_order_relaxed);
  atomic_store_explicit(&q->next_key, s->next_key, memory_order_relaxed);
}

static void count(_Atomic uint64_t *c, uint64_t v) {
  atomic_fetch_add_explicit(c, v, memory_order_relaxed);
}

/* Takes one record out of the counts. A record whose header cannot be read takes 0 spans;
 * an empty queue resets the sums, so a miscount heals itself. */
static void state_remove(dq_state *s, uint64_t bytes, uint32_t spans) {
  s->depth -= s->depth ? 1 : 0;
  s->bytes -= bytes < s->bytes ? bytes : s->bytes;
  s->spans -= spans < s->spans ? spans : s->spans;
  if (!s->depth) s->bytes = s->spans = 0;
}

static int mdb_to_err(pc_dqueue *q, const char *what, int rc) {
  static pf_ratelimit rl;
  if (rc == ENOMEM) return PROFILIS_ENOMEM;
  if (rc == MDB_MAP_FULL) return PROFILIS_EFULL;
  pf_log_rl(&rl, PF_LOG_ERROR, "durable queue %s: %s: %s", q->path, what, mdb_strerror(rc));
  return PROFILIS_EIO;
}

/* ---- drops ---- */

static int drop_note(pc_dqueue *q, pc_dq_drop_reason why, const MDB_val *k, const MDB_val *v,
                     const pc_dq_record *rec) {
  if (q->n_drops == q->cap_drops) {
    size_t cap = q->cap_drops ? q->cap_drops * 2 : 16;
    pc_dq_drop *d = realloc(q->drops, cap * sizeof *d);
    if (!d) return ENOMEM;
    q->drops = d;
    q->cap_drops = cap;
  }
  pc_dq_drop *d = &q->drops[q->n_drops++];
  *d = (pc_dq_drop){.reason = why, .bytes = v->mv_size};
  if (k->mv_size == 8) d->key = get64(k->mv_data);
  if (rec) {
    d->spans = rec->spans;
    memcpy(d->tenant, rec->tenant, rec->tenant_len);
    d->tenant[rec->tenant_len] = '\0';
  }
  return 0;
}

/* After a commit: counts the drops and tells the caller about each. */
static void drops_report(pc_dqueue *q) {
  for (size_t i = 0; i < q->n_drops; i++) {
    const pc_dq_drop *d = &q->drops[i];
    if (d->reason == PC_DQ_DROP_CORRUPT) {
      count(&q->corrupt, 1);
    } else {
      count(&q->dropped, 1);
      count(&q->dropped_spans, d->spans);
    }
    if (q->cfg.on_drop) q->cfg.on_drop(q->cfg.on_drop_arg, d);
  }
  if (q->n_drops) {
    static pf_ratelimit rl;
    pf_log_rl(&rl, PF_LOG_WARN, "durable queue %s: %zu records dropped (full or corrupt)", q->path,
              q->n_drops);
  }
  q->n_drops = 0;
}

/* Deletes the record under the cursor, noting it as dropped for `why` and taking it out of s.
 * A record that fails validation is noted as corrupt whatever `why` was. */
static int del_current(pc_dqueue *q, MDB_cursor *c, const MDB_val *k, const MDB_val *v,
                       pc_dq_drop_reason why, dq_state *s) {
  pc_dq_record rec;
  bool ok = k->mv_size == 8 && pc_dq_record_decode(v->mv_data, v->mv_size, &rec) == 0;
  int rc = drop_note(q, ok ? why : PC_DQ_DROP_CORRUPT, k, v, ok ? &rec : NULL);
  if (rc) return rc;
  state_remove(s, v->mv_size, ok ? rec.spans : 0);
  return mdb_cursor_del(c, 0);
}

/* Deletes the record under the cursor and moves to the one after it. */
static int del_and_next(MDB_cursor *c, MDB_val *k, MDB_val *v) {
  uint8_t saved[512]; /* LMDB keys are at most 511 bytes */
  MDB_val at = {k->mv_size < sizeof saved ? k->mv_size : sizeof saved, saved};
  memcpy(saved, k->mv_data, at.mv_size);
  int rc = mdb_cursor_del(c, 0);
  if (!rc) rc = mdb_cursor_get(c, &at, v, MDB_SET_RANGE);
  if (!rc) *k = at; /* now the next key, in the map */
  return rc;
}

/* Drops the oldest records until s->bytes <= limit. */
static int drop_until(pc_dqueue *q, MDB_txn *txn, dq_state *s, uint64_t limit) {
  MDB_cursor *c;
  int rc = mdb_cursor_open(txn, q->recs, &c);
  if (rc) return rc;
  MDB_val k, v;
  while (!rc && s->depth && s->bytes > limit) {
    rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
    if (!rc) rc = del_current(q, c, &k, &v, PC_DQ_DROP_FULL, s);
  }
  if (rc == MDB_NOTFOUND) { /* the counts said more than there was */
    *s = (dq_state){.next_key = s->next_key};
    rc = 0;
  }
  mdb_cursor_close(c);
  return rc;
}

/* ---- map size ---- */

static void map_refresh(pc_dqueue *q) {
  MDB_envinfo info;
  if (!mdb_env_info(q->env, &info)) atomic_store(&q->map_bytes, (uint64_t)info.me_mapsize);
}

/* Grows the map so deletes can proceed when it is full (no transaction may be open). */
static int map_grow(pc_dqueue *q) {
  uint64_t cur = atomic_load(&q->map_bytes);
  uint64_t want = (cur + cur / 4 + (1u << 20) + MAP_ROUND - 1) / MAP_ROUND * MAP_ROUND;
  if (want > SIZE_MAX) return PROFILIS_EFULL;
  int rc = mdb_env_set_mapsize(q->env, (size_t)want);
  if (rc) return mdb_to_err(q, "grow map", rc);
  map_refresh(q);
  pf_log(PF_LOG_WARN, "durable queue %s: map full, grown to %llu bytes", q->path,
         (unsigned long long)want);
  return 0;
}

/* ---- push ---- */

/* Commits a transaction that only rewrites the metadata. LMDB reuses a page freed by
 * transaction N only from transaction N + 2 on (the previous snapshot must survive a crash),
 * so after a full map two of these make what the last deletes freed usable. A full map here
 * grows it. */
static int settle(pc_dqueue *q) {
  bool grown = false;
  for (int i = 0; i < 2; i++) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(q->env, NULL, 0, &txn);
    if (!rc && (rc = meta_put(q, txn, &q->st)) != 0) mdb_txn_abort(txn);
    if (!rc) rc = mdb_txn_commit(txn);
    if (rc == MDB_MAP_FULL && !grown && (rc = map_grow(q)) == 0) {
      grown = true;
      i--; /* once more, with room */
    }
    if (rc) return rc;
  }
  return 0;
}

/* Drops the oldest records until `amount` bytes are gone (or the queue is empty), in a
 * transaction of its own. */
static int drop_txn(pc_dqueue *q, uint64_t amount) {
  dq_state s = q->st;
  MDB_txn *txn;
  q->n_drops = 0;
  int rc = mdb_txn_begin(q->env, NULL, 0, &txn);
  if (rc) return rc;
  rc = drop_until(q, txn, &s, s.bytes > amount ? s.bytes - amount : 0);
  if (!rc) rc = meta_put(q, txn, &s);
  if (rc) {
    mdb_txn_abort(txn);
    q->n_drops = 0;
    return rc;
  }
  rc = mdb_txn_commit(txn);
  if (rc) {
    q->n_drops = 0;
    return rc;
  }
  publish(q, &s);
  drops_report(q);
  return 0;
}

/* Appends the records to txn at s->next_key onwards (written in place: MDB_RESERVE). */
static int append_all(pc_dqueue *q, MDB_txn *txn, const pc_dq_input *in, size_t n, dq_state *s) {
  int rc = 0;
  for (size_t i = 0; !rc && i < n; i++) {
    uint8_t kb[8];
    put64(kb, s->next_key);
    MDB_val k = {8, kb}, v = {(size_t)pc_dq_record_size(&in[i]), NULL};
    rc = mdb_put(txn, q->recs, &k, &v, MDB_RESERVE | MDB_APPEND);
    if (rc) break;
    pc_dq_record_encode(&in[i], v.mv_data, v.mv_size); /* sizes were checked by the caller */
    s->next_key++;
    s->depth++;
    s->bytes += v.mv_size;
    s->spans += in[i].spans;
  }
  return rc;
}

/* One push attempt: applies the full policy to the bound, appends, commits. Returns 0,
 * PROFILIS_EFULL (refused by policy), or an LMDB code (MDB_MAP_FULL...). */
static int push_txn(pc_dqueue *q, const pc_dq_input *in, size_t n, uint64_t size) {
  dq_state s = q->st;
  MDB_txn *txn;
  q->n_drops = 0;
  int rc = mdb_txn_begin(q->env, NULL, 0, &txn);
  if (rc) return rc;
  uint64_t limit = q->cfg.max_bytes - size;
  if (s.bytes > limit) {
    if (q->cfg.full == PC_DQ_REFUSE) {
      mdb_txn_abort(txn);
      return PROFILIS_EFULL;
    }
    rc = drop_until(q, txn, &s, limit);
  }
  if (!rc) rc = append_all(q, txn, in, n, &s);
  if (!rc) rc = meta_put(q, txn, &s);
  if (rc) {
    mdb_txn_abort(txn);
    q->n_drops = 0; /* the transaction that dropped them was aborted */
    return rc;
  }
  rc = mdb_txn_commit(txn);
  if (rc) {
    q->n_drops = 0;
    return rc;
  }
  publish(q, &s);
  drops_report(q);
  return 0;
}

/* The map (not the bound) is full. Makes pages reusable and, for drop_oldest, frees about
 * twice as much as the previous round (round >= 0) in a transaction of its own. Returns 0 to
 * try again, PROFILIS_EFULL, or another error (an LMDB code). */
static int map_full_round(pc_dqueue *q, uint64_t size, int round, bool *grown) {
  if (q->cfg.full == PC_DQ_REFUSE || !q->st.depth) {
    /* One settle per push: enough to recycle pages an ack freed; past that it is full. The
     * empty queue grows the map once, as the record can only fit that way. */
    if (round == 0) {
      int rc = settle(q);
      return rc == MDB_MAP_FULL ? PROFILIS_EFULL : rc;
    }
    if (q->cfg.full == PC_DQ_REFUSE || *grown || map_grow(q)) return PROFILIS_EFULL;
    *grown = true;
    return 0;
  }
  uint64_t amount = round < 32 ? size << round : UINT64_MAX;
  int rc = drop_txn(q, amount);
  if (rc == MDB_MAP_FULL && !*grown && map_grow(q) == 0) { /* deletes need pages too */
    *grown = true;
    rc = drop_txn(q, amount);
  }
  if (!rc) rc = settle(q);
  return rc == MDB_MAP_FULL ? PROFILIS_EFULL : rc;
}

int pc_dqueue_push_many(pc_dqueue *q, const pc_dq_input *in, size_t n, uint64_t *first_key) {
  if (!q || (!in && n)) return PROFILIS_EINVAL;
  uint64_t size = 0, first = q->st.next_key;
  for (size_t i = 0; i < n; i++) {
    uint64_t one = pc_dq_record_size(&in[i]);
    if (!one) return PROFILIS_ELIMIT;
    size += one;
    if (size > q->cfg.max_bytes) return PROFILIS_ELIMIT;
  }
  if (!n) return 0;
  int rc = push_txn(q, in, n, size);
  bool grown = false;
  for (int round = 0; rc == MDB_MAP_FULL && round < MAX_MAPFULL_RETRIES; round++) {
    rc = map_full_round(q, size, round, &grown);
    if (!rc) rc = push_txn(q, in, n, size);
  }
  if (rc == MDB_MAP_FULL) rc = PROFILIS_EFULL;
  if (rc) return rc < 0 ? rc : mdb_to_err(q, "push", rc);
  count(&q->pushed, n);
  if (first_key) *first_key = first;
  return 0;
}

int pc_dqueue_push(pc_dqueue *q, const pc_dq_input *in, uint64_t *key_out) {
  if (!in) return PROFILIS_EINVAL;
  return pc_dqueue_push_many(q, in, 1, key_out);
}

/* ---- peek ---- */

void pc_dq_batch_free(pc_dq_batch *b) {
  if (!b) return;
  free(b->items);
  pf_buf_free(&b->data);
  memset(b, 0, sizeof *b);
}

/* Appends a valid record's tenant and payload to out; pointers are fixed up at the end. */
static int batch_add(pc_dq_batch *out, uint64_t key, const pc_dq_record *rec) {
  if (out->n == out->cap) {
    size_t cap = out->cap ? out->cap * 2 : 8;
    pc_dq_item *it = realloc(out->items, cap * sizeof *it);
    if (!it) return PROFILIS_ENOMEM;
    out->items = it;
    out->cap = cap;
  }
  if (pf_buf_append(&out->data, rec->tenant, rec->tenant_len) ||
      pf_buf_append(&out->data, rec->payload, rec->payload_len))
    return PROFILIS_ENOMEM;
  out->items[out->n++] = (pc_dq_item){.key = key, .rec = *rec};
  return 0;
}

/* Points every item's tenant and payload at the batch's buffer (laid out in item order). */
static void batch_fixup(pc_dq_batch *out) {
  size_t off = 0;
  for (size_t i = 0; i < out->n; i++) {
    pc_dq_record *r = &out->items[i].rec;
    r->tenant = (const char *)out->data.p + off;
    off += r->tenant_len;
    r->payload = out->data.p + off;
    off += r->payload_len;
  }
}

/* Walks from the oldest record, copying valid ones and deleting corrupt ones. Returns 0, a
 * PROFILIS_E* code, or an LMDB code. */
static int peek_walk(pc_dqueue *q, MDB_txn *txn, size_t max_records, uint64_t max_bytes,
                     pc_dq_batch *out, dq_state *s) {
  MDB_cursor *c;
  int rc = mdb_cursor_open(txn, q->recs, &c);
  if (rc) return rc;
  MDB_val k, v;
  uint64_t payload = 0;
  rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
  while (!rc && out->n < max_records) {
    pc_dq_record rec;
    if (k.mv_size != 8 || pc_dq_record_decode(v.mv_data, v.mv_size, &rec)) {
      rc = drop_note(q, PC_DQ_DROP_CORRUPT, &k, &v, NULL);
      state_remove(s, v.mv_size, 0);
      if (!rc) rc = del_and_next(c, &k, &v);
      continue;
    }
    if (max_bytes && out->n && payload + rec.payload_len > max_bytes) break;
    payload += rec.payload_len;
    rc = batch_add(out, get64(k.mv_data), &rec);
    if (!rc) rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(c);
  return rc == MDB_NOTFOUND ? 0 : rc;
}

static int peek_once(pc_dqueue *q, size_t max_records, uint64_t max_bytes, pc_dq_batch *out) {
  dq_state s = q->st;
  MDB_txn *txn;
  out->n = 0;
  pf_buf_reset(&out->data);
  q->n_drops = 0;
  int rc = mdb_txn_begin(q->env, NULL, 0, &txn);
  if (rc) return rc;
  rc = peek_walk(q, txn, max_records, max_bytes, out, &s);
  if (rc || !q->n_drops) { /* nothing to write: no commit, no fsync */
    mdb_txn_abort(txn);
    return rc;
  }
  rc = meta_put(q, txn, &s);
  if (rc) {
    mdb_txn_abort(txn);
    return rc;
  }
  rc = mdb_txn_commit(txn);
  if (!rc) publish(q, &s);
  return rc;
}

int pc_dqueue_peek(pc_dqueue *q, size_t max_records, uint64_t max_bytes, pc_dq_batch *out) {
  if (!q || !out) return PROFILIS_EINVAL;
  int rc = peek_once(q, max_records, max_bytes, out);
  if (rc == MDB_MAP_FULL && (rc = map_grow(q)) == 0) rc = peek_once(q, max_records, max_bytes, out);
  if (rc) {
    out->n = 0;
    q->n_drops = 0;
    return rc < 0 ? rc : mdb_to_err(q, "peek", rc);
  }
  batch_fixup(out);
  drops_report(q);
  return 0;
}

/* ---- ack ---- */

static int ack_once(pc_dqueue *q, uint64_t upto_key, uint64_t *n) {
  dq_state s = q->st;
  MDB_txn *txn;
  MDB_cursor *c;
  MDB_val k, v;
  *n = 0;
  int rc = mdb_txn_begin(q->env, NULL, 0, &txn);
  if (rc) return rc;
  rc = mdb_cursor_open(txn, q->recs, &c);
  while (!rc && !(rc = mdb_cursor_get(c, &k, &v, MDB_FIRST))) {
    if (k.mv_size != 8 || get64(k.mv_data) > upto_key) break; /* odd keys: peek's business */
    pc_dq_record rec;
    uint32_t spans = pc_dq_record_decode(v.mv_data, v.mv_size, &rec) ? 0 : rec.spans;
    state_remove(&s, v.mv_size, spans);
    rc = mdb_cursor_del(c, 0);
    if (!rc) ++*n;
  }
  if (rc == MDB_NOTFOUND) rc = 0;
  if (!rc && *n) rc = meta_put(q, txn, &s);
  if (rc || !*n) {
    mdb_txn_abort(txn); /* also closes the cursor */
    return rc;
  }
  rc = mdb_txn_commit(txn);
  if (!rc) publish(q, &s);
  return rc;
}

int pc_dqueue_ack(pc_dqueue *q, uint64_t upto_key) {
  if (!q) return PROFILIS_EINVAL;
  uint64_t n = 0;
  int rc = ack_once(q, upto_key, &n);
  if (rc == MDB_MAP_FULL && (rc = map_grow(q)) == 0) rc = ack_once(q, upto_key, &n);
  if (rc) return rc < 0 ? rc : mdb_to_err(q, "ack", rc);
  count(&q->acked, n);
  return 0;
}

/* ---- open / close ---- */

/* mkdir -p with mode 0700. */
static int make_dirs(const char *path) {
  char buf[PATH_MAX];
  size_t n = strlen(path);
  if (!n || n >= sizeof buf) return PROFILIS_EINVAL;
  memcpy(buf, path, n + 1);
  for (size_t i = 1; i <= n; i++) {
    if (buf[i] != '/' && buf[i] != '\0') continue;
    char c = buf[i];
    buf[i] = '\0';
    if (mkdir(buf, 0700) && errno != EEXIST) return PROFILIS_EIO;
    buf[i] = c;
  }
  struct stat st;
  return stat(path, &st) == 0 && S_ISDIR(st.st_mode) ? 0 : PROFILIS_EIO;
}

static int take_lock(pc_dqueue *q) {
  char lp[PATH_MAX];
  if (snprintf(lp, sizeof lp, "%s/%s", q->path, LOCK_NAME) >= (int)sizeof lp)
    return PROFILIS_EINVAL;
  q->lock_fd = open(lp, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (q->lock_fd < 0) {
    pf_log(PF_LOG_ERROR, "durable queue %s: cannot open %s: %s", q->path, lp, strerror(errno));
    return PROFILIS_EIO;
  }
  if (flock(q->lock_fd, LOCK_EX | LOCK_NB)) {
    pf_log(PF_LOG_ERROR, "durable queue %s: in use by another queue or process", q->path);
    return PROFILIS_EIO;
  }
  return 0;
}

static uint64_t map_size_for(const pc_dqueue_cfg *cfg) {
  uint64_t m = cfg->map_bytes;
  if (!m)
    m = cfg->max_bytes > (UINT64_MAX - MAP_HEADROOM) / 4 ? UINT64_MAX / 2
                                                         : cfg->max_bytes * 2 + MAP_HEADROOM;
  m = (m + MAP_ROUND - 1) / MAP_ROUND * MAP_ROUND;
  return m > SIZE_MAX ? (uint64_t)SIZE_MAX / MAP_ROUND * MAP_ROUND : m;
}

static int env_open(pc_dqueue *q) {
  int rc = mdb_env_create(&q->env);
  if (rc) {
    q->env = NULL;
    return mdb_to_err(q, "create environment", rc);
  }
  unsigned flags = MDB_NOTLS | (q->cfg.no_sync ? MDB_NOSYNC : 0);
  rc = mdb_env_set_maxdbs(q->env, 2);
  if (!rc) rc = mdb_env_set_mapsize(q->env, (size_t)map_size_for(&q->cfg));
  if (!rc) rc = mdb_env_open(q->env, q->path, flags, 0600);
  if (rc) return mdb_to_err(q, "open", rc);
  map_refresh(q);
  return 0;
}

/* Recomputes the counts from the records: the metadata record was missing, damaged or out of
 * step. Keys that cannot be ours are deleted as corrupt. */
static int rebuild(pc_dqueue *q, MDB_txn *txn, dq_state *s) {
  MDB_cursor *c;
  MDB_val k, v;
  uint64_t next = s->next_key ? s->next_key : 1;
  *s = (dq_state){0};
  int rc = mdb_cursor_open(txn, q->recs, &c);
  if (!rc) rc = mdb_cursor_get(c, &k, &v, MDB_FIRST);
  while (!rc) {
    pc_dq_record rec;
    if (k.mv_size != 8) {
      rc = drop_note(q, PC_DQ_DROP_CORRUPT, &k, &v, NULL);
      if (!rc) rc = del_and_next(c, &k, &v);
      continue;
    }
    s->depth++;
    s->bytes += v.mv_size;
    s->spans += pc_dq_record_decode(v.mv_data, v.mv_size, &rec) ? 0 : rec.spans;
    if (get64(k.mv_data) >= next) next = get64(k.mv_data) + 1;
    rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
  }
  mdb_cursor_close(c);
  s->next_key = next;
  return rc == MDB_NOTFOUND ? 0 : rc;
}

/* True when the metadata record agrees with what the database holds. */
static bool meta_consistent(pc_dqueue *q, MDB_txn *txn, const dq_state *s) {
  MDB_stat st;
  MDB_cursor *c;
  MDB_val k, v;
  if (mdb_stat(txn, q->recs, &st) || st.ms_entries != s->depth) return false;
  if (mdb_cursor_open(txn, q->recs, &c)) return false;
  int rc = mdb_cursor_get(c, &k, &v, MDB_LAST);
  bool ok = rc == MDB_NOTFOUND || (rc == 0 && k.mv_size == 8 && get64(k.mv_data) < s->next_key);
  mdb_cursor_close(c);
  return ok;
}

static int load_state(pc_dqueue *q) {
  MDB_txn *txn;
  dq_state s = {.next_key = 1};
  int rc = mdb_txn_begin(q->env, NULL, 0, &txn);
  if (rc) return mdb_to_err(q, "begin", rc);
  rc = mdb_dbi_open(txn, "records", MDB_CREATE, &q->recs);
  if (!rc) rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &q->meta);
  MDB_val k = {sizeof META_KEY - 1, (void *)META_KEY}, v;
  if (!rc) {
    rc = mdb_get(txn, q->meta, &k, &v);
    bool found = rc == 0, have = found && meta_decode(&v, &s);
    rc = rc == MDB_NOTFOUND ? 0 : rc;
    if (!rc && !(have && meta_consistent(q, txn, &s))) {
      rc = rebuild(q, txn, &s);
      if (!rc && (found || s.depth)) /* not a new queue: say so */
        pf_log(PF_LOG_WARN, "durable queue %s: metadata out of step, counts rebuilt: %llu records",
               q->path, (unsigned long long)s.depth);
    }
  }
  if (!rc) rc = meta_put(q, txn, &s);
  if (!rc)
    rc = mdb_txn_commit(txn); /* also keeps the database handles */
  else
    mdb_txn_abort(txn);
  if (rc) {
    q->n_drops = 0;
    return mdb_to_err(q, "load", rc);
  }
  publish(q, &s);
  drops_report(q);
  return 0;
}

int pc_dqueue_open(pc_dqueue **out, const pc_dqueue_cfg *cfg) {
  *out = NULL;
  if (!cfg || !cfg->path || !*cfg->path || cfg->max_bytes < MIN_MAX_BYTES ||
      (unsigned)cfg->full >= PC_DQ_N_POLICIES)
    return PROFILIS_EINVAL;
  pc_dqueue *q = calloc(1, sizeof *q);
  if (!q) return PROFILIS_ENOMEM;
  q->lock_fd = -1;
  q->cfg = *cfg;
  q->path = strdup(cfg->path);
  int rc = q->path ? 0 : PROFILIS_ENOMEM;
  q->cfg.path = q->path;
  if (!rc && make_dirs(q->path)) {
    pf_log(PF_LOG_ERROR, "durable queue %s: cannot create the directory: %s", q->path,
           strerror(errno));
    rc = PROFILIS_EIO;
  }
  if (!rc) rc = take_lock(q);
  if (!rc) rc = env_open(q);
  if (!rc) rc = load_state(q);
  if (rc) {
    pc_dqueue_close(q);
    return rc;
  }
  *out = q;
  return 0;
}

void pc_dqueue_close(pc_dqueue *q) {
  if (!q) return;
  if (q->env) mdb_env_close(q->env);
  if (q->lock_fd >= 0) close(q->lock_fd); /* releases the lock */
  free(q->drops);
  free(q->path);
  free(q);
}

void pc_dqueue_stats_get(const pc_dqueue *q, pc_dqueue_stats *out) {
  pc_dqueue *m = (pc_dqueue *)q; /* atomics are read-only here */
  *out = (pc_dqueue_stats){
      .depth = atomic_load_explicit(&m->depth, memory_order_relaxed),
      .bytes = atomic_load_explicit(&m->bytes, memory_order_relaxed),
      .spans = atomic_load_explicit(&m->spans, memory_order_relaxed),
      .next_key = atomic_load_explicit(&m->next_key, memory_order_relaxed),
      .pushed = atomic_load_explicit(&m->pushed, memory_order_relaxed),
      .acked = atomic_load_explicit(&m->acked, memory_order_relaxed),
      .dropped_records = atomic_load_explicit(&m->dropped, memory_order_relaxed),
      .dropped_spans = atomic_load_explicit(&m->dropped_spans, memory_order_relaxed),
      .corrupt = atomic_load_explicit(&m->corrupt, memory_order_relaxed),
      .map_bytes = atomic_load_explicit(&m->map_bytes, memory_order_relaxed),
  };
}
