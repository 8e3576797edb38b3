/* Durable queue: a crash-safe on-disk FIFO of opaque records in an LMDB database, one per
 * exporter (per tenant route). The pipeline stores encoded batches in it (an
 * ExportTraceServiceRequest's bytes, with the tenant and span count in the record header)
 * while the exporter's breaker is open or its backend is slow, and replays them oldest first.
 *
 * - Keys are a 64-bit sequence number stored big-endian, so LMDB's byte order is FIFO order;
 *   the sequence continues across restarts. Each push, ack and drop is one LMDB transaction
 *   that also rewrites a metadata record (next key, depth, bytes, spans), so the counts can
 *   never disagree with the records after a crash.
 * - A commit is durable (fsync) unless no_sync is set: then a process crash (kill -9) still
 *   loses nothing that was committed, but a machine crash may lose the last commits.
 * - Bounded in bytes: `bytes` counts each record's stored size (header + tenant + payload);
 *   when a push would exceed max_bytes the full policy applies: drop_oldest deletes the oldest
 *   records in the same transaction (each one reported through on_drop), refuse returns
 *   PROFILIS_EFULL. The LMDB map is sized max_bytes * 2 + 16 MiB (or map_bytes). Should the
 *   map fill anyway (a small map_bytes, or pages LMDB cannot recycle yet), the policy applies
 *   to the map too: drop_oldest drops more of the oldest records, refuse returns
 *   PROFILIS_EFULL; and a delete that finds the map full grows it, so the queue can always
 *   drain and an empty queue always takes a record that fits max_bytes.
 * - Every record read is validated (length fields and a CRC32 over the whole record): a corrupt
 *   one is skipped, deleted, counted and reported with reason PC_DQ_DROP_CORRUPT; it never
 *   crashes the reader.
 *
 * Threads: a queue is used by one thread at a time (the exporter thread pushes, peeks and acks;
 * it may hand the queue to another thread between calls). pc_dqueue_stats may be called from
 * any thread (relaxed atomics). A directory is opened by one pc_dqueue at a time, in this
 * process or any other: a second open fails with PROFILIS_EIO (an exclusive lock file). To
 * reopen after a reload, close the old queue first. Internal. */
#ifndef PC_DQUEUE_H
#define PC_DQUEUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

#include "pf_buf.h"

/* What happens when a push does not fit. X-macro: enum suffix, config spelling. */
#define PC_DQ_FULL_POLICY_MAP(X)                                                                   \
  X(DROP_OLDEST, "drop_oldest")                                                                    \
  X(REFUSE, "refuse")

typedef enum pc_dq_full_policy {
#define PC__DQ_POLICY_ENUM(name, text) PC_DQ_##name,
  PC_DQ_FULL_POLICY_MAP(PC__DQ_POLICY_ENUM)
#undef PC__DQ_POLICY_ENUM
      PC_DQ_N_POLICIES
} pc_dq_full_policy;

/* "drop_oldest" / "refuse"; "unknown" for anything else. */
const char *pc_dq_full_policy_name(pc_dq_full_policy p);
/* Parses the config spelling. Returns 0 or PROFILIS_EINVAL. */
int pc_dq_full_policy_parse(const char *s, pc_dq_full_policy *out);

/* Why a record left the queue without being acknowledged. */
typedef enum pc_dq_drop_reason {
  PC_DQ_DROP_FULL = 1, /* drop_oldest made room for a newer record */
  PC_DQ_DROP_CORRUPT,  /* failed validation when read: spans and tenant are unknown (0, "") */
} pc_dq_drop_reason;

#define PC_DQ_TENANT_MAX 150 /* the longest tenant id (Tempo's rule), as PC_TENANT_MAX */

typedef struct pc_dq_drop {
  pc_dq_drop_reason reason;
  uint64_t key;
  uint32_t spans;
  uint64_t bytes;                    /* stored size */
  char tenant[PC_DQ_TENANT_MAX + 1]; /* NUL-terminated */
} pc_dq_drop;

/* Called once per dropped record, after the transaction that dropped it committed, on the
 * thread that called push or peek. */
typedef void (*pc_dq_drop_fn)(void *arg, const pc_dq_drop *d);

typedef struct pc_dqueue_cfg {
  const char *path;       /* directory, created (mode 0700) when missing */
  uint64_t max_bytes;     /* bound on the stored bytes of all records, >= 4096 */
  pc_dq_full_policy full; /* default (0): drop_oldest */
  bool no_sync;           /* MDB_NOSYNC: no fsync per commit (default off: every commit synced) */
  uint64_t map_bytes;     /* LMDB map size; 0 = max_bytes * 2 + 16 MiB */
  pc_dq_drop_fn on_drop;  /* may be NULL */
  void *on_drop_arg;
} pc_dqueue_cfg;

/* ---- record format (exposed for the fuzz target and tests) ----
 * Big-endian header of PC_DQ_HEADER_SIZE bytes, then the tenant, then the payload:
 *   0 magic "PDQ1" | 4 crc32 of bytes 8..end | 8 payload length | 12 spans | 16 time_ns
 *   | 24 tenant length (<= 150) | 25..27 zero */
#define PC_DQ_HEADER_SIZE 28u

typedef struct pc_dq_input {
  const char *tenant;        /* NUL-terminated, <= 150 bytes; NULL means "" */
  uint32_t spans;            /* reported back if the record is dropped */
  uint64_t time_ns;          /* the caller's timestamp, e.g. when it was queued */
  const struct iovec *parts; /* the payload, in pieces that are concatenated */
  size_t n_parts;
} pc_dq_input;

/* A decoded record; tenant and payload point into the bytes it was decoded from. */
typedef struct pc_dq_record {
  uint32_t spans;
  uint64_t time_ns;
  const char *tenant; /* not NUL-terminated */
  size_t tenant_len;
  const uint8_t *payload;
  size_t payload_len;
} pc_dq_record;

/* Stored size of a record, or 0 when it cannot be stored (tenant over 150 bytes, payload over
 * 4 GiB - 1). */
uint64_t pc_dq_record_size(const pc_dq_input *in);
/* Writes the record (pc_dq_record_size bytes) into dst. Returns 0 or PROFILIS_EINVAL (it does
 * not fit in cap, or cannot be stored). */
int pc_dq_record_encode(const pc_dq_input *in, uint8_t *dst, size_t cap);
/* Validates and decodes n bytes. Any input is safe. Returns 0 or PROFILIS_EPROTO. */
int pc_dq_record_decode(const uint8_t *p, size_t n, pc_dq_record *out);

/* ---- the queue ---- */

typedef struct pc_dqueue pc_dqueue;

/* Opens (or creates) the queue in cfg->path and finds every record left by a previous run;
 * the key sequence continues. cfg is copied. Returns 0, PROFILIS_EINVAL (bad settings),
 * PROFILIS_ENOMEM, or PROFILIS_EIO (cannot create or open the database, or it is in use;
 * reason logged). */
int pc_dqueue_open(pc_dqueue **out, const pc_dqueue_cfg *cfg);
void pc_dqueue_close(pc_dqueue *q);

/* Appends one record. On success *key_out (may be NULL) gets its key, and records dropped to
 * make room were reported to on_drop. Returns 0; PROFILIS_EFULL (policy refuse and the bound
 * is reached, or the map is full and nothing is left to drop); PROFILIS_ELIMIT (the record is
 * larger than max_bytes, or cannot be stored: nothing dropped); PROFILIS_EINVAL; PROFILIS_EIO;
 * PROFILIS_ENOMEM. On error nothing was added, and nothing dropped unless the map was full
 * under drop_oldest (those drops were reported). */
int pc_dqueue_push(pc_dqueue *q, const pc_dq_input *in, uint64_t *key_out);

/* Appends n records in one transaction (one commit, one fsync: cheaper per record), all or
 * nothing, with keys *first_key, *first_key + 1, ... The bound applies to their total size.
 * Returns as pc_dqueue_push. */
int pc_dqueue_push_many(pc_dqueue *q, const pc_dq_input *in, size_t n, uint64_t *first_key);

/* One record of a peek. rec points into the batch's own buffer. */
typedef struct pc_dq_item {
  uint64_t key;
  pc_dq_record rec;
} pc_dq_item;

/* Caller-owned result of peek, reused across calls (zero-initialize it; free it when done). */
typedef struct pc_dq_batch {
  pc_dq_item *items;
  size_t n, cap;
  pf_buf data;
} pc_dq_batch;
void pc_dq_batch_free(pc_dq_batch *b);

/* Copies the oldest valid records into out (emptied first): at most max_records, and no more
 * than max_bytes of payload once it holds one (0 = no byte limit). Corrupt records met on the
 * way are deleted and reported. The records stay queued until acked. Returns 0 (out->n may be
 * 0: the queue is empty), PROFILIS_ENOMEM or PROFILIS_EIO. */
int pc_dqueue_peek(pc_dqueue *q, size_t max_records, uint64_t max_bytes, pc_dq_batch *out);

/* Deletes every record with a key <= upto_key (after they were exported). Acking keys that are
 * already gone is a no-op. Returns 0 or PROFILIS_EIO. */
int pc_dqueue_ack(pc_dqueue *q, uint64_t upto_key);

typedef struct pc_dqueue_stats {
  uint64_t depth, bytes, spans; /* records queued now, their stored bytes and span count */
  uint64_t next_key;            /* the key the next push gets */
  uint64_t pushed, acked;       /* records, since open */
  uint64_t dropped_records, dropped_spans; /* full policy drops, since open */
  uint64_t corrupt;                        /* corrupt records deleted, since open */
  uint64_t map_bytes;                      /* current LMDB map size */
} pc_dqueue_stats;

/* A consistent-enough snapshot for metrics; any thread. */
void pc_dqueue_stats_get(const pc_dqueue *q, pc_dqueue_stats *out);

#endif
