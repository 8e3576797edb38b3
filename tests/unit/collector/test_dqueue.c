/* Durable queue (collector/dqueue.c) on a real LMDB database in a temporary directory: record
 * format and validation, FIFO order, byte bounds under both full policies with exact drop
 * counts, reopen continuity, corrupt records planted directly through LMDB, a deliberately
 * small map, and a throughput measurement (printed, never asserted) with batch-sized records. */
#define _GNU_SOURCE
#include <ftw.h>
#include <lmdb.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "pc_dqueue.h"
#include "profilis/common.h"

/* ---- helpers ---- */

typedef struct drops {
  size_t n, n_corrupt;
  uint64_t keys[4096];
  uint64_t spans;
  char last_tenant[PC_DQ_TENANT_MAX + 1];
} drops;

static void on_drop(void *arg, const pc_dq_drop *d) {
  drops *x = arg;
  if (d->reason == PC_DQ_DROP_CORRUPT) {
    x->n_corrupt++;
    return;
  }
  if (x->n < sizeof x->keys / sizeof *x->keys) x->keys[x->n] = d->key;
  x->n++;
  x->spans += d->spans;
  snprintf(x->last_tenant, sizeof x->last_tenant, "%s", d->tenant);
}

/* Fixtures: each queue test gets a fresh directory in *state, removed (with everything the
 * test left in it) even when an assertion failed. */
static int rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st, (void)flag, (void)ftw;
  return remove(path);
}

static int dir_setup(void **state) {
  char *d = strdup("/tmp/pc_dqueue_XXXXXX");
  if (!d || !mkdtemp(d)) return -1;
  *state = d;
  return 0;
}

static int dir_teardown(void **state) {
  nftw(*state, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
  free(*state);
  return 0;
}

/* Payload of record `seq`: its number, then bytes derived from it; n >= 8. */
static void fill_payload(uint8_t *p, size_t n, uint64_t seq) {
  memcpy(p, &seq, 8);
  for (size_t i = 8; i < n; i++) p[i] = (uint8_t)(seq * 131 + i * 7);
}

static void check_payload(const pc_dq_record *r, uint64_t seq, size_t n) {
  assert_int_equal(r->payload_len, n);
  uint64_t got;
  memcpy(&got, r->payload, 8);
  assert_int_equal(got, seq);
  for (size_t i = 8; i < n; i++)
    if (r->payload[i] != (uint8_t)(seq * 131 + i * 7))
      fail_msg("record %llu byte %zu differs", (unsigned long long)seq, i);
}

static int push_seq(pc_dqueue *q, uint64_t seq, size_t n, uint32_t spans, uint64_t *key) {
  uint8_t *buf = malloc(n);
  assert_non_null(buf);
  fill_payload(buf, n, seq);
  /* Three pieces (one empty) to exercise the concatenation. */
  struct iovec parts[3] = {{buf, n / 3}, {buf + n / 3, 0}, {buf + n / 3, n - n / 3}};
  pc_dq_input in = {
      .tenant = "acme", .spans = spans, .time_ns = seq * 1000, .parts = parts, .n_parts = 3};
  int rc = pc_dqueue_push(q, &in, key);
  free(buf);
  return rc;
}

/* Stored size of a record pushed by push_seq. */
static uint64_t rec_size(size_t n) { return PC_DQ_HEADER_SIZE + 4 + n; }

static pc_dqueue *open_q(const char *dir, uint64_t max_bytes, pc_dq_full_policy full, drops *d) {
  pc_dqueue *q = NULL;
  pc_dqueue_cfg cfg = {.path = dir,
                       .max_bytes = max_bytes,
                       .full = full,
                       .no_sync = true,
                       .on_drop = on_drop,
                       .on_drop_arg = d};
  assert_int_equal(pc_dqueue_open(&q, &cfg), 0);
  return q;
}

static pc_dqueue_stats stats(pc_dqueue *q) {
  pc_dqueue_stats s;
  pc_dqueue_stats_get(q, &s);
  return s;
}

/* Peeks everything and returns the keys in order (up to cap). */
static size_t all_keys(pc_dqueue *q, uint64_t *keys, size_t cap) {
  pc_dq_batch b = {0};
  assert_int_equal(pc_dqueue_peek(q, cap, 0, &b), 0);
  for (size_t i = 0; i < b.n; i++) keys[i] = b.items[i].key;
  size_t n = b.n;
  pc_dq_batch_free(&b);
  return n;
}

/* ---- record format ---- */

static void test_record_roundtrip(void **state) {
  (void)state;
  uint8_t payload[300], buf[512];
  fill_payload(payload, sizeof payload, 77);
  struct iovec parts[2] = {{payload, 100}, {payload + 100, 200}};
  pc_dq_input in = {
      .tenant = "tenant-1", .spans = 512, .time_ns = 123456789, .parts = parts, .n_parts = 2};
  uint64_t size = pc_dq_record_size(&in);
  assert_int_equal(size, PC_DQ_HEADER_SIZE + 8 + 300);
  assert_int_equal(pc_dq_record_encode(&in, buf, size - 1), PROFILIS_EINVAL);
  assert_int_equal(pc_dq_record_encode(&in, buf, sizeof buf), 0);
  pc_dq_record r;
  assert_int_equal(pc_dq_record_decode(buf, size, &r), 0);
  assert_int_equal(r.spans, 512);
  assert_int_equal(r.time_ns, 123456789);
  assert_int_equal(r.tenant_len, 8);
  assert_memory_equal(r.tenant, "tenant-1", 8);
  check_payload(&r, 77, 300);
  /* Every single bit flipped anywhere is caught. */
  for (size_t i = 0; i < size; i++) {
    for (int bit = 0; bit < 8; bit++) {
      buf[i] ^= (uint8_t)(1u << bit);
      if (pc_dq_record_decode(buf, size, &r) != PROFILIS_EPROTO)
        fail_msg("flip of byte %zu bit %d accepted", i, bit);
      buf[i] ^= (uint8_t)(1u << bit);
    }
  }
  /* Every truncation and an extension too. */
  for (size_t n = 0; n < size; n++)
    assert_int_equal(pc_dq_record_decode(buf, n, &r), PROFILIS_EPROTO);
  assert_int_equal(pc_dq_record_decode(buf, size + 1, &r), PROFILIS_EPROTO);
  assert_int_equal(pc_dq_record_decode(NULL, 0, &r), PROFILIS_EPROTO);
}

static void test_record_limits(void **state) {
  (void)state;
  char tenant[PC_DQ_TENANT_MAX + 2];
  memset(tenant, 't', sizeof tenant);
  tenant[PC_DQ_TENANT_MAX] = '\0';
  pc_dq_input in = {.tenant = tenant};
  assert_int_equal(pc_dq_record_size(&in), PC_DQ_HEADER_SIZE + PC_DQ_TENANT_MAX);
  tenant[PC_DQ_TENANT_MAX] = 't';
  tenant[PC_DQ_TENANT_MAX + 1] = '\0';
  assert_int_equal(pc_dq_record_size(&in), 0); /* 151 bytes */
  in = (pc_dq_input){.tenant = NULL};          /* an empty record is fine */
  assert_int_equal(pc_dq_record_size(&in), PC_DQ_HEADER_SIZE);
  uint8_t buf[PC_DQ_HEADER_SIZE];
  pc_dq_record r;
  assert_int_equal(pc_dq_record_encode(&in, buf, sizeof buf), 0);
  assert_int_equal(pc_dq_record_decode(buf, sizeof buf, &r), 0);
  assert_int_equal(r.payload_len, 0);
  assert_int_equal(r.tenant_len, 0);
  /* Payload lengths that add up past 4 GiB - 1 (never read: only the lengths count). */
  struct iovec big[2] = {{buf, 0x80000000u}, {buf, 0x80000000u}};
  in = (pc_dq_input){.parts = big, .n_parts = 2};
  assert_int_equal(pc_dq_record_size(&in), 0);
  in = (pc_dq_input){.parts = NULL, .n_parts = 1};
  assert_int_equal(pc_dq_record_size(&in), 0);
}

static void test_policy_names(void **state) {
  (void)state;
  pc_dq_full_policy p = PC_DQ_REFUSE;
  assert_string_equal(pc_dq_full_policy_name(PC_DQ_DROP_OLDEST), "drop_oldest");
  assert_string_equal(pc_dq_full_policy_name(PC_DQ_REFUSE), "refuse");
  assert_string_equal(pc_dq_full_policy_name(PC_DQ_N_POLICIES), "unknown");
  assert_int_equal(pc_dq_full_policy_parse("drop_oldest", &p), 0);
  assert_int_equal(p, PC_DQ_DROP_OLDEST);
  assert_int_equal(pc_dq_full_policy_parse("refuse", &p), 0);
  assert_int_equal(p, PC_DQ_REFUSE);
  assert_int_equal(pc_dq_full_policy_parse("Refuse", &p), PROFILIS_EINVAL);
  assert_int_equal(pc_dq_full_policy_parse(NULL, &p), PROFILIS_EINVAL);
}

/* ---- the queue ---- */

static void test_open_rules(void **state) {
  const char *dir = *state;
  pc_dqueue *q = NULL, *q2 = NULL;
  pc_dqueue_cfg cfg = {.path = dir, .max_bytes = 1 << 20};
  pc_dqueue_cfg bad = cfg;
  bad.max_bytes = 100;
  assert_int_equal(pc_dqueue_open(&q, &bad), PROFILIS_EINVAL);
  bad = cfg, bad.path = "";
  assert_int_equal(pc_dqueue_open(&q, &bad), PROFILIS_EINVAL);
  bad = cfg, bad.full = PC_DQ_N_POLICIES;
  assert_int_equal(pc_dqueue_open(&q, &bad), PROFILIS_EINVAL);
  assert_int_equal(pc_dqueue_open(&q, NULL), PROFILIS_EINVAL);
  assert_null(q);
  assert_int_equal(pc_dqueue_open(&q, &cfg), 0);
  /* A second queue on the same directory is refused while the first is open. */
  assert_int_equal(pc_dqueue_open(&q2, &cfg), PROFILIS_EIO);
  assert_null(q2);
  pc_dqueue_close(q);
  assert_int_equal(pc_dqueue_open(&q2, &cfg), 0);
  pc_dqueue_stats s = stats(q2);
  assert_int_equal(s.depth, 0);
  assert_int_equal(s.next_key, 1);
  assert_true(s.map_bytes >= 2 * (1 << 20));
  pc_dqueue_close(q2);
  /* A nested path that does not exist yet is created. */
  char nested[256];
  snprintf(nested, sizeof nested, "%s/a/b", dir);
  cfg.path = nested;
  assert_int_equal(pc_dqueue_open(&q, &cfg), 0);
  pc_dqueue_close(q);
  /* A path that is a file is not a directory. */
  char file[300];
  snprintf(file, sizeof file, "%s/data.mdb", nested);
  cfg.path = file;
  assert_int_equal(pc_dqueue_open(&q, &cfg), PROFILIS_EIO);
}

static void test_fifo_order(void **state) {
  const char *dir = *state;
  drops d = {0};
  pc_dqueue *q = open_q(dir, 64 << 20, PC_DQ_REFUSE, &d);
  uint64_t bytes = 0, spans = 0;
  for (uint64_t i = 1; i <= 100; i++) {
    uint64_t key = 0;
    size_t n = 8 + (size_t)(i * 37 % 5000);
    assert_int_equal(push_seq(q, i, n, (uint32_t)i, &key), 0);
    assert_int_equal(key, i);
    bytes += rec_size(n);
    spans += i;
  }
  pc_dqueue_stats s = stats(q);
  assert_int_equal(s.depth, 100);
  assert_int_equal(s.bytes, bytes);
  assert_int_equal(s.spans, spans);
  assert_int_equal(s.next_key, 101);
  assert_int_equal(s.pushed, 100);
  pc_dq_batch b = {0};
  uint64_t want = 1;
  while (want <= 100) {
    assert_int_equal(pc_dqueue_peek(q, 7, 0, &b), 0);
    assert_true(b.n == 7 || (want > 94 && b.n == 101 - want));
    for (size_t i = 0; i < b.n; i++, want++) {
      assert_int_equal(b.items[i].key, want);
      assert_int_equal(b.items[i].rec.spans, want);
      assert_int_equal(b.items[i].rec.time_ns, want * 1000);
      assert_memory_equal(b.items[i].rec.tenant, "acme", 4);
      check_payload(&b.items[i].rec, want, 8 + (size_t)(want * 37 % 5000));
    }
    /* Peeking again without an ack returns the same records. */
    pc_dq_batch again = {0};
    assert_int_equal(pc_dqueue_peek(q, 7, 0, &again), 0);
    assert_int_equal(again.n, b.n);
    assert_int_equal(again.items[0].key, b.items[0].key);
    pc_dq_batch_free(&again);
    assert_int_equal(pc_dqueue_ack(q, b.items[b.n - 1].key), 0);
  }
  s = stats(q);
  assert_int_equal(s.depth, 0);
  assert_int_equal(s.bytes, 0);
  assert_int_equal(s.spans, 0);
  assert_int_equal(s.acked, 100);
  assert_int_equal(pc_dqueue_peek(q, 7, 0, &b), 0);
  assert_int_equal(b.n, 0);
  pc_dq_batch_free(&b);
  assert_int_equal(d.n + d.n_corrupt, 0);
  pc_dqueue_close(q);
}

static void test_peek_limits_and_ack(void **state) {
  const char *dir = *state;
  drops d = {0};
  pc_dqueue *q = open_q(dir, 64 << 20, PC_DQ_REFUSE, &d);
  for (uint64_t i = 1; i <= 10; i++) assert_int_equal(push_seq(q, i, 1000, 1, NULL), 0);
  pc_dq_batch b = {0};
  assert_int_equal(pc_dqueue_peek(q, 100, 2500, &b), 0); /* payload bytes: 2 fit, not 3 */
  assert_int_equal(b.n, 2);
  assert_int_equal(pc_dqueue_peek(q, 100, 10, &b), 0); /* always at least one */
  assert_int_equal(b.n, 1);
  assert_int_equal(pc_dqueue_peek(q, 0, 0, &b), 0);
  assert_int_equal(b.n, 0);
  assert_int_equal(pc_dqueue_ack(q, 0), 0); /* nothing has key 0 */
  assert_int_equal(stats(q).depth, 10);
  assert_int_equal(pc_dqueue_ack(q, 3), 0);
  assert_int_equal(stats(q).depth, 7);
  assert_int_equal(pc_dqueue_ack(q, 3), 0); /* again: no-op */
  assert_int_equal(stats(q).depth, 7);
  assert_int_equal(pc_dqueue_peek(q, 1, 0, &b), 0);
  assert_int_equal(b.items[0].key, 4);
  assert_int_equal(pc_dqueue_ack(q, UINT64_MAX), 0);
  assert_int_equal(stats(q).depth, 0);
  assert_int_equal(stats(q).acked, 10);
  pc_dq_batch_free(&b);
  pc_dqueue_close(q);
}

static void test_full_refuse(void **state) {
  const char *dir = *state;
  drops d = {0};
  const size_t n = 1000;
  pc_dqueue *q = open_q(dir, 10 * rec_size(n), PC_DQ_REFUSE, &d);
  for (uint64_t i = 1; i <= 10; i++) assert_int_equal(push_seq(q, i, n, 5, NULL), 0);
  assert_int_equal(stats(q).bytes, 10 * rec_size(n)); /* exactly at the bound */
  uint64_t key = 99;
  assert_int_equal(push_seq(q, 11, n, 5, &key), PROFILIS_EFULL);
  assert_int_equal(key, 99);
  assert_int_equal(push_seq(q, 11, 8, 5, &key), PROFILIS_EFULL); /* even a tiny one */
  pc_dqueue_stats s = stats(q);
  assert_int_equal(s.depth, 10);
  assert_int_equal(s.next_key, 11);
  assert_int_equal(s.dropped_records, 0);
  assert_int_equal(d.n, 0);
  assert_int_equal(pc_dqueue_ack(q, 1), 0);
  assert_int_equal(push_seq(q, 11, n, 5, &key), 0);
  assert_int_equal(key, 11);
  /* Larger than the whole bound: refused as a limit, whatever the policy. */
  assert_int_equal(push_seq(q, 12, 11 * n, 5, &key), PROFILIS_ELIMIT);
  uint64_t keys[32];
  size_t k = all_keys(q, keys, 32);
  assert_int_equal(k, 10);
  for (size_t i = 0; i < k; i++) assert_int_equal(keys[i], i + 2);
  pc_dqueue_close(q);
}

static void test_full_drop_oldest(void **state) {
  const char *dir = *state;
  drops d = {0};
  const size_t n = 1000;
  pc_dqueue *q = open_q(dir, 10 * rec_size(n), PC_DQ_DROP_OLDEST, &d);
  for (uint64_t i = 1; i <= 25; i++) {
    assert_int_equal(push_seq(q, i, n, (uint32_t)(100 + i), NULL), 0);
    assert_int_equal(d.n, i > 10 ? i - 10 : 0); /* exactly one per push once full */
  }
  uint64_t want_spans = 0;
  for (uint64_t i = 1; i <= 15; i++) {
    assert_int_equal(d.keys[i - 1], i); /* oldest first */
    want_spans += 100 + i;
  }
  assert_int_equal(d.spans, want_spans);
  assert_string_equal(d.last_tenant, "acme");
  pc_dqueue_stats s = stats(q);
  assert_int_equal(s.dropped_records, 15);
  assert_int_equal(s.dropped_spans, want_spans);
  assert_int_equal(s.depth, 10);
  assert_int_equal(s.bytes, 10 * rec_size(n));
  /* A record five times the size drops exactly five. */
  size_t big = 5 * rec_size(n) - PC_DQ_HEADER_SIZE - 4;
  assert_int_equal(push_seq(q, 26, big, 1, NULL), 0);
  assert_int_equal(d.n, 20);
  assert_int_equal(d.keys[19], 20);
  uint64_t keys[32];
  size_t k = all_keys(q, keys, 32);
  assert_int_equal(k, 6);
  for (size_t i = 0; i < k; i++) assert_int_equal(keys[i], 21 + i);
  /* One as large as the bound drops everything else. */
  assert_int_equal(push_seq(q, 27, 10 * rec_size(n) - PC_DQ_HEADER_SIZE - 4, 1, NULL), 0);
  assert_int_equal(d.n, 26);
  assert_int_equal(stats(q).depth, 1);
  assert_int_equal(push_seq(q, 28, 11 * n, 1, NULL), PROFILIS_ELIMIT);
  assert_int_equal(d.n, 26); /* nothing dropped for a record that can never fit */
  assert_int_equal(stats(q).depth, 1);
  pc_dqueue_close(q);
}

static void test_push_many(void **state) {
  const char *dir = *state;
  drops d = {0};
  const size_t n = 1000;
  pc_dqueue *q = open_q(dir, 10 * rec_size(n), PC_DQ_DROP_OLDEST, &d);
  uint8_t buf[3][1000];
  struct iovec parts[3];
  pc_dq_input in[3];
  for (int i = 0; i < 3; i++) {
    fill_payload(buf[i], n, 100 + (uint64_t)i);
    parts[i] = (struct iovec){buf[i], n};
    in[i] = (pc_dq_input){.tenant = "acme", .spans = 2, .parts = &parts[i], .n_parts = 1};
  }
  uint64_t first = 0;
  assert_int_equal(pc_dqueue_push_many(q, in, 0, &first), 0); /* nothing: fine */
  assert_int_equal(first, 0);
  for (int round = 0; round < 4; round++) {
    assert_int_equal(pc_dqueue_push_many(q, in, 3, &first), 0);
    assert_int_equal(first, 1 + 3 * (uint64_t)round);
  }
  /* 12 records against a bound of 10: the last push dropped the two oldest. */
  assert_int_equal(d.n, 2);
  assert_int_equal(stats(q).depth, 10);
  pc_dq_batch b = {0};
  assert_int_equal(pc_dqueue_peek(q, 100, 0, &b), 0);
  assert_int_equal(b.n, 10);
  for (size_t i = 0; i < b.n; i++) {
    assert_int_equal(b.items[i].key, 3 + i);
    check_payload(&b.items[i].rec, 100 + (3 + i - 1) % 3, n);
  }
  pc_dq_batch_free(&b);
  /* All or nothing: one bad record (tenant too long) refuses the lot. */
  char tenant[200];
  memset(tenant, 'x', sizeof tenant - 1);
  tenant[sizeof tenant - 1] = '\0';
  in[1].tenant = tenant;
  assert_int_equal(pc_dqueue_push_many(q, in, 3, &first), PROFILIS_ELIMIT);
  assert_int_equal(stats(q).next_key, 13);
  assert_int_equal(pc_dqueue_push_many(q, NULL, 3, &first), PROFILIS_EINVAL);
  pc_dqueue_close(q);
}

static void test_reopen_continuity(void **state) {
  const char *dir = *state;
  for (int sync = 0; sync < 2; sync++) {
    pc_dqueue *q = NULL;
    pc_dqueue_cfg cfg = {.path = dir, .max_bytes = 64 << 20, .no_sync = !sync};
    assert_int_equal(pc_dqueue_open(&q, &cfg), 0);
    uint64_t base = stats(q).next_key - 1; /* 0, then 50 */
    for (uint64_t i = 1; i <= 50; i++) assert_int_equal(push_seq(q, base + i, 200, 3, NULL), 0);
    assert_int_equal(pc_dqueue_ack(q, base + 20), 0);
    pc_dqueue_close(q);
    assert_int_equal(pc_dqueue_open(&q, &cfg), 0);
    pc_dqueue_stats s = stats(q);
    assert_int_equal(s.depth, 30);
    assert_int_equal(s.next_key, base + 51);
    assert_int_equal(s.spans, 90);
    assert_int_equal(s.bytes, 30 * rec_size(200));
    pc_dq_batch b = {0};
    assert_int_equal(pc_dqueue_peek(q, 100, 0, &b), 0);
    assert_int_equal(b.n, 30);
    for (size_t i = 0; i < b.n; i++) {
      assert_int_equal(b.items[i].key, base + 21 + i);
      check_payload(&b.items[i].rec, base + 21 + i, 200);
    }
    pc_dq_batch_free(&b);
    uint64_t key;
    assert_int_equal(push_seq(q, base + 51, 200, 3, &key), 0);
    assert_int_equal(key, base + 51);
    assert_int_equal(pc_dqueue_ack(q, UINT64_MAX), 0);
    /* Empty queue: the sequence still continues after a reopen. */
    pc_dqueue_close(q);
    assert_int_equal(pc_dqueue_open(&q, &cfg), 0);
    assert_int_equal(stats(q).next_key, base + 52);
    assert_int_equal(pc_dqueue_ack(q, base + 51), 0);
    pc_dqueue_close(q);
    /* Next round starts at base + 51: keep payload numbering equal to keys. */
    q = NULL;
    assert_int_equal(pc_dqueue_open(&q, &cfg), 0);
    assert_int_equal(push_seq(q, base + 52, 8, 0, &key), 0);
    assert_int_equal(pc_dqueue_ack(q, key), 0);
    pc_dqueue_close(q);
  }
}

/* ---- corruption, planted directly through LMDB ---- */

typedef struct raw_db {
  MDB_env *env;
  MDB_txn *txn;
  MDB_dbi recs, meta;
} raw_db;

static void raw_open(raw_db *r, const char *dir) {
  assert_int_equal(mdb_env_create(&r->env), 0);
  assert_int_equal(mdb_env_set_maxdbs(r->env, 2), 0);
  assert_int_equal(mdb_env_open(r->env, dir, MDB_NOTLS, 0600), 0);
  assert_int_equal(mdb_txn_begin(r->env, NULL, 0, &r->txn), 0);
  assert_int_equal(mdb_dbi_open(r->txn, "records", 0, &r->recs), 0);
  assert_int_equal(mdb_dbi_open(r->txn, "meta", 0, &r->meta), 0);
}

static void raw_close(raw_db *r) {
  assert_int_equal(mdb_txn_commit(r->txn), 0);
  mdb_env_close(r->env);
}

static MDB_val key_of(uint64_t k, uint8_t buf[8]) {
  for (int i = 0; i < 8; i++) buf[i] = (uint8_t)(k >> (56 - 8 * i));
  return (MDB_val){8, buf};
}

/* Applies edit() to a copy of record k's bytes and stores the result (maybe resized). */
static void raw_edit(raw_db *r, uint64_t k, size_t new_len, void (*edit)(uint8_t *, size_t)) {
  uint8_t kb[8];
  MDB_val key = key_of(k, kb), v;
  assert_int_equal(mdb_get(r->txn, r->recs, &key, &v), 0);
  size_t len = new_len ? new_len : v.mv_size;
  uint8_t *copy = calloc(1, len > v.mv_size ? len : v.mv_size);
  assert_non_null(copy);
  memcpy(copy, v.mv_data, v.mv_size);
  edit(copy, len);
  MDB_val nv = {len, copy};
  assert_int_equal(mdb_put(r->txn, r->recs, &key, &nv, 0), 0);
  free(copy);
}

static void flip_payload(uint8_t *p, size_t n) { p[n - 3] ^= 0x40; }
static void break_magic(uint8_t *p, size_t n) { (void)n, p[0] = 'X'; }
static void no_change(uint8_t *p, size_t n) { (void)p, (void)n; }
static void huge_tenant_len(uint8_t *p, size_t n) { (void)n, p[24] = 0xff; }

static void test_corrupt_records(void **state) {
  const char *dir = *state;
  drops d = {0};
  pc_dqueue *q = open_q(dir, 64 << 20, PC_DQ_REFUSE, &d);
  for (uint64_t i = 1; i <= 12; i++) assert_int_equal(push_seq(q, i, 500, 10, NULL), 0);
  pc_dqueue_close(q);

  raw_db r;
  raw_open(&r, dir);
  raw_edit(&r, 3, 0, flip_payload);    /* same size, bad CRC */
  raw_edit(&r, 6, 100, no_change);     /* truncated */
  raw_edit(&r, 8, 0, break_magic);     /* bad magic */
  raw_edit(&r, 9, 0, huge_tenant_len); /* length fields out of range */
  raw_edit(&r, 11, 10, no_change);     /* shorter than a header */
  raw_close(&r);

  q = open_q(dir, 64 << 20, PC_DQ_REFUSE, &d);
  assert_int_equal(stats(q).depth, 12); /* not looked at until read */
  pc_dq_batch b = {0};
  assert_int_equal(pc_dqueue_peek(q, 4, 0, &b), 0);
  /* 1 2 [3] 4 5: four valid ones, the corrupt one on the way deleted. */
  assert_int_equal(b.n, 4);
  static const uint64_t first[] = {1, 2, 4, 5};
  for (size_t i = 0; i < 4; i++) {
    assert_int_equal(b.items[i].key, first[i]);
    check_payload(&b.items[i].rec, first[i], 500);
  }
  assert_int_equal(d.n_corrupt, 1);
  assert_int_equal(stats(q).corrupt, 1);
  assert_int_equal(stats(q).depth, 11);
  assert_int_equal(pc_dqueue_ack(q, 5), 0);
  assert_int_equal(pc_dqueue_peek(q, 100, 0, &b), 0);
  static const uint64_t rest[] = {7, 10, 12};
  assert_int_equal(b.n, 3);
  for (size_t i = 0; i < 3; i++) {
    assert_int_equal(b.items[i].key, rest[i]);
    check_payload(&b.items[i].rec, rest[i], 500);
  }
  assert_int_equal(d.n_corrupt, 5);
  pc_dqueue_stats s = stats(q);
  assert_int_equal(s.corrupt, 5);
  assert_int_equal(s.depth, 3);
  assert_int_equal(s.dropped_records, 0); /* corrupt is not "dropped for space" */
  pc_dqueue_close(q);

  /* The deletions were committed: a reopen sees the same three. */
  q = open_q(dir, 64 << 20, PC_DQ_REFUSE, &d);
  assert_int_equal(stats(q).depth, 3);
  uint64_t keys[8];
  assert_int_equal(all_keys(q, keys, 8), 3);
  assert_int_equal(keys[2], 12);
  assert_int_equal(pc_dqueue_ack(q, 12), 0);
  s = stats(q);
  assert_int_equal(s.depth, 0);
  assert_int_equal(s.bytes, 0);
  pc_dq_batch_free(&b);
  pc_dqueue_close(q);
}

/* A damaged metadata record and a key that cannot be ours: the counts are rebuilt on open. */
static void test_corrupt_meta_and_keys(void **state) {
  const char *dir = *state;
  drops d = {0};
  pc_dqueue *q = open_q(dir, 64 << 20, PC_DQ_REFUSE, &d);
  for (uint64_t i = 1; i <= 6; i++) assert_int_equal(push_seq(q, i, 300, 7, NULL), 0);
  pc_dqueue_close(q);

  raw_db r;
  raw_open(&r, dir);
  MDB_val mk = {5, "state"}, junk = {5, "junk!"};
  assert_int_equal(mdb_put(r.txn, r.meta, &mk, &junk, 0), 0);
  MDB_val odd = {3, "odd"}, val = {4, "data"};
  assert_int_equal(mdb_put(r.txn, r.recs, &odd, &val, 0), 0);
  raw_close(&r);

  q = open_q(dir, 64 << 20, PC_DQ_REFUSE, &d);
  pc_dqueue_stats s = stats(q);
  assert_int_equal(s.depth, 6);
  assert_int_equal(s.next_key, 7);
  assert_int_equal(s.spans, 42);
  assert_int_equal(s.bytes, 6 * rec_size(300));
  assert_int_equal(s.corrupt, 1); /* the odd key */
  uint64_t keys[8], key;
  assert_int_equal(all_keys(q, keys, 8), 6);
  for (size_t i = 0; i < 6; i++) assert_int_equal(keys[i], i + 1);
  assert_int_equal(push_seq(q, 7, 300, 7, &key), 0);
  assert_int_equal(key, 7);
  pc_dqueue_close(q);

  /* A missing metadata record: the sequence still moves past the last key instead of
   * starting over and colliding with it. */
  raw_open(&r, dir);
  assert_int_equal(mdb_del(r.txn, r.meta, &mk, NULL), 0);
  raw_close(&r);
  q = open_q(dir, 64 << 20, PC_DQ_REFUSE, &d);
  assert_int_equal(stats(q).next_key, 8);
  assert_int_equal(stats(q).depth, 7);
  pc_dqueue_close(q);
}

/* ---- a map smaller than the bound ---- */

static void test_map_full(void **state) {
  const char *dir = *state;
  drops d = {0};
  pc_dqueue *q = NULL;
  pc_dqueue_cfg cfg = {.path = dir,
                       .max_bytes = 64 << 20,
                       .full = PC_DQ_REFUSE,
                       .no_sync = true,
                       .map_bytes = 256 << 10,
                       .on_drop = on_drop,
                       .on_drop_arg = &d};
  assert_int_equal(pc_dqueue_open(&q, &cfg), 0);
  uint64_t ok = 0, key;
  int rc = 0;
  for (uint64_t i = 1; i <= 200 && rc == 0; i++) {
    rc = push_seq(q, i, 8000, 1, &key);
    if (rc == 0) ok++;
  }
  printf("map-full: %llu records of 8000 bytes fit a %u KiB map\n", (unsigned long long)ok, 256);
  assert_int_equal(rc, PROFILIS_EFULL); /* the map filled long before max_bytes */
  assert_true(ok > 5 && ok < 40);
  assert_int_equal(stats(q).depth, ok);
  assert_int_equal(d.n, 0);
  /* Still consistent and readable; acking makes room again. */
  uint64_t keys[64];
  assert_int_equal(all_keys(q, keys, 64), ok);
  for (size_t i = 0; i < ok; i++) assert_int_equal(keys[i], i + 1);
  assert_int_equal(pc_dqueue_ack(q, ok), 0);
  assert_int_equal(push_seq(q, ok + 1, 8000, 1, &key), 0);
  assert_int_equal(key, ok + 1);
  pc_dqueue_close(q);

  /* drop_oldest: every push succeeds, the oldest go, and each one is reported. */
  cfg.full = PC_DQ_DROP_OLDEST;
  assert_int_equal(pc_dqueue_open(&q, &cfg), 0);
  assert_int_equal(pc_dqueue_ack(q, UINT64_MAX), 0);
  uint64_t first = stats(q).next_key;
  for (uint64_t i = 0; i < 200; i++) assert_int_equal(push_seq(q, first + i, 8000, 1, &key), 0);
  pc_dqueue_stats s = stats(q);
  printf("map-full, drop_oldest: %zu of 200 dropped, %llu queued, map %llu bytes\n", d.n,
         (unsigned long long)s.depth, (unsigned long long)s.map_bytes);
  /* Dropping made the room: the map did not simply keep growing. */
  assert_int_equal(s.map_bytes, 256 << 10);
  assert_int_equal(s.depth + d.n, 200);
  assert_int_equal(s.dropped_records, d.n);
  assert_true(d.n >= 150);
  size_t k = all_keys(q, keys, 64);
  assert_int_equal(k, s.depth);
  for (size_t i = 0; i < k; i++) assert_int_equal(keys[i], first + 200 - k + i);
  for (size_t i = 0; i < d.n; i++) assert_int_equal(d.keys[i], first + i);
  pc_dqueue_close(q);
}

/* ---- throughput (printed; the figure goes in the design note) ---- */

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Writes RECORDS batch-sized records, `group` per commit, then replays them: peek `group`,
 * ack them with one commit. */
static void measure(const char *base, bool sync, size_t group) {
  enum { SPANS = 512, SPAN_BYTES = 200, RECORDS = 600 };
  char dir[300];
  snprintf(dir, sizeof dir, "%s/%s-%zu", base, sync ? "sync" : "nosync", group);
  pc_dqueue *q = NULL;
  pc_dqueue_cfg cfg = {.path = dir, .max_bytes = 512ull << 20, .no_sync = !sync};
  assert_int_equal(pc_dqueue_open(&q, &cfg), 0);
  size_t n = SPANS * SPAN_BYTES;
  uint8_t *buf = malloc(n);
  assert_non_null(buf);
  fill_payload(buf, n, 1);
  struct iovec part = {buf, n};
  pc_dq_input in[8];
  for (size_t i = 0; i < 8; i++)
    in[i] = (pc_dq_input){.tenant = "acme", .spans = SPANS, .parts = &part, .n_parts = 1};
  assert_true(group >= 1 && group <= 8 && RECORDS % group == 0);
  double t0 = now_s();
  for (size_t i = 0; i < RECORDS; i += group)
    assert_int_equal(pc_dqueue_push_many(q, in, group, NULL), 0);
  double t1 = now_s();
  pc_dq_batch b = {0};
  uint64_t spans = 0;
  for (;;) {
    assert_int_equal(pc_dqueue_peek(q, group, 0, &b), 0);
    if (!b.n) break;
    for (size_t i = 0; i < b.n; i++) spans += b.items[i].rec.spans;
    assert_int_equal(pc_dqueue_ack(q, b.items[b.n - 1].key), 0);
  }
  double t2 = now_s();
  assert_int_equal(spans, (uint64_t)SPANS * RECORDS);
  printf("dqueue throughput (%s, %zu record(s) of %d spans x %d B per commit): write %.0f "
         "spans/s, replay %.0f spans/s, write+replay %.0f spans/s\n",
         sync ? "fsync per commit" : "no_sync", group, SPANS, SPAN_BYTES,
         SPANS * (double)RECORDS / (t1 - t0), SPANS * (double)RECORDS / (t2 - t1),
         SPANS * (double)RECORDS / (t2 - t0));
  pc_dq_batch_free(&b);
  free(buf);
  pc_dqueue_close(q);
}

static void test_throughput(void **state) {
  measure(*state, true, 1);
  measure(*state, true, 4);
  measure(*state, false, 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_record_roundtrip),
      cmocka_unit_test(test_record_limits),
      cmocka_unit_test(test_policy_names),
      cmocka_unit_test_setup_teardown(test_open_rules, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_fifo_order, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_peek_limits_and_ack, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_full_refuse, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_full_drop_oldest, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_push_many, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_reopen_continuity, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_records, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_corrupt_meta_and_keys, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_map_full, dir_setup, dir_teardown),
      cmocka_unit_test_setup_teardown(test_throughput, dir_setup, dir_teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
