/* Crash test of the durable queue. `run ROUNDS [SEED]` starts this program as a driver
 * (`drive DIR NO_SYNC SEED`) that pushes and acks records, printing a line before and after
 * each call, SIGKILLs it at a random moment, reopens the queue and checks: every record whose
 * push returned and no ack could cover is there once, in order, intact; completed acks stuck;
 * the call in flight happened entirely or not at all. Rounds share the directory, so the key
 * sequence must continue across crashes too. */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "pc_dqueue.h"
#include "profilis/common.h"

#define MAX_BYTES (32ull << 20)
#define MAX_RECORD 30000u
#define DRIVER_LIFETIME_S 20

static uint64_t rnd(uint64_t *s) {
  *s ^= *s << 13;
  *s ^= *s >> 7;
  *s ^= *s << 17;
  return *s;
}

static uint64_t mono_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* The payload of key k: k itself, then bytes derived from it, length derived from it too. */
static size_t payload_len(uint64_t k) { return 8 + (size_t)(k * 2654435761u % MAX_RECORD); }

static void payload_fill(uint8_t *p, uint64_t k) {
  size_t n = payload_len(k);
  memcpy(p, &k, 8);
  for (size_t i = 8; i < n; i++) p[i] = (uint8_t)(k * 31 + i);
}

static bool payload_ok(const pc_dq_record *r, uint64_t k) {
  uint64_t got;
  if (r->payload_len != payload_len(k) || r->spans != (uint32_t)k) return false;
  memcpy(&got, r->payload, 8);
  if (got != k) return false;
  for (size_t i = 8; i < r->payload_len; i++)
    if (r->payload[i] != (uint8_t)(k * 31 + i)) return false;
  return true;
}

/* One unbuffered line: what was written before a SIGKILL is what the runner reads. */
static void say(const char *tag, uint64_t a, uint64_t b) {
  char line[64];
  int n = snprintf(line, sizeof line, "%s %" PRIu64 " %" PRIu64 "\n", tag, a, b);
  if (write(1, line, (size_t)n) != n) _exit(3);
}

/* ---- driver ---- */

static void drive_ack(pc_dqueue *q, pc_dq_batch *b, size_t max) {
  if (pc_dqueue_peek(q, max, 0, b) || !b->n) return;
  for (size_t i = 0; i < b->n; i++)
    if (!payload_ok(&b->items[i].rec, b->items[i].key)) _exit(4); /* the runner sees exit 4 */
  uint64_t upto = b->items[b->n - 1].key;
  say("a", upto, 0);
  if (pc_dqueue_ack(q, upto)) _exit(5);
  say("A", upto, 0);
}

static int drive(const char *dir, bool no_sync, uint64_t seed) {
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  pc_dqueue *q;
  pc_dqueue_cfg cfg = {
      .path = dir, .max_bytes = MAX_BYTES, .full = PC_DQ_REFUSE, .no_sync = no_sync};
  if (pc_dqueue_open(&q, &cfg)) return 2;
  uint8_t *bufs = malloc(4 * (size_t)MAX_RECORD + 64);
  if (!bufs) return 2;
  pc_dq_batch b = {0};
  uint64_t end = mono_ms() + DRIVER_LIFETIME_S * 1000u;
  while (mono_ms() < end) {
    pc_dqueue_stats st;
    pc_dqueue_stats_get(q, &st);
    size_t n = 1 + (size_t)(rnd(&seed) % 4);
    struct iovec parts[4];
    pc_dq_input in[4];
    for (size_t i = 0; i < n; i++) {
      uint64_t k = st.next_key + i;
      uint8_t *p = bufs + i * (MAX_RECORD + 16);
      payload_fill(p, k);
      parts[i] = (struct iovec){p, payload_len(k)};
      in[i] =
          (pc_dq_input){.tenant = "crash", .spans = (uint32_t)k, .parts = &parts[i], .n_parts = 1};
    }
    say("p", st.next_key, n);
    uint64_t first;
    int rc = n == 1 ? pc_dqueue_push(q, in, &first) : pc_dqueue_push_many(q, in, n, &first);
    if (rc == 0) {
      if (first != st.next_key) _exit(6);
      say("P", first, n);
    } else if (rc != PROFILIS_EFULL) {
      _exit(7);
    }
    if (rc == PROFILIS_EFULL || rnd(&seed) % 8 == 0) drive_ack(q, &b, 1 + rnd(&seed) % 24);
  }
  return 0; /* the runner should have killed us long before */
}

/* ---- runner ---- */

typedef struct journal {
  uint64_t *pushed; /* keys whose push returned success, ascending */
  size_t n, cap;
  uint64_t intent_first, intent_n; /* the last push started */
  uint64_t ack_intent, ack_done;   /* highest ack started / returned */
} journal;

static int journal_add(journal *j, uint64_t k) {
  if (j->n == j->cap) {
    size_t cap = j->cap ? j->cap * 2 : 1024;
    uint64_t *p = realloc(j->pushed, cap * sizeof *p);
    if (!p) return -1;
    j->pushed = p;
    j->cap = cap;
  }
  j->pushed[j->n++] = k;
  return 0;
}

static int journal_line(journal *j, const char *line) {
  char tag;
  uint64_t a, b;
  if (sscanf(line, "%c %" SCNu64 " %" SCNu64, &tag, &a, &b) != 3) return -1;
  switch (tag) {
  case 'p':
    j->intent_first = a, j->intent_n = b;
    return 0;
  case 'P':
    for (uint64_t i = 0; i < b; i++)
      if (journal_add(j, a + i)) return -1;
    return 0;
  case 'a':
    j->ack_intent = a;
    return 0;
  case 'A':
    j->ack_done = a;
    return 0;
  default:
    return -1;
  }
}

static bool is_pushed(const journal *j, uint64_t k) {
  size_t lo = 0, hi = j->n;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (j->pushed[mid] < k)
      lo = mid + 1;
    else
      hi = mid;
  }
  return lo < j->n && j->pushed[lo] == k;
}

#define CHECK(cond, ...)                                                                           \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      fprintf(stderr, "dqueue_crash: FAIL: " __VA_ARGS__);                                         \
      fprintf(stderr, "\n");                                                                       \
      ok = false;                                                                                  \
      goto out;                                                                                    \
    }                                                                                              \
  } while (0)

/* After a successful check the operations in flight are settled: what committed joins the
 * journal as if its done line had been printed, what did not is forgotten. */
static int settle_journal(journal *j, size_t in_flight, size_t ack_window, size_t present) {
  for (uint64_t i = 0; in_flight && i < j->intent_n; i++)
    if (journal_add(j, j->intent_first + i)) return -1;
  j->intent_n = 0;
  if (ack_window && !present) j->ack_done = j->ack_intent;
  j->ack_intent = j->ack_done;
  return 0;
}

/* Reopens the queue after a kill and checks it against the journal (every round so far;
 * round_start indexes this round's first push). *max_key: the highest key before this
 * round, for continuity. */
static bool verify(const char *dir, journal *j, size_t round_start, uint64_t *max_key,
                   size_t *n_out) {
  bool ok = true;
  pc_dqueue *q = NULL;
  pc_dq_batch b = {0};
  pc_dqueue_cfg cfg = {.path = dir, .max_bytes = MAX_BYTES, .full = PC_DQ_REFUSE};
  CHECK(pc_dqueue_open(&q, &cfg) == 0, "reopen failed");
  CHECK(pc_dqueue_peek(q, SIZE_MAX, 0, &b) == 0, "peek failed");
  pc_dqueue_stats st;
  pc_dqueue_stats_get(q, &st);
  CHECK(st.corrupt == 0, "%" PRIu64 " corrupt records after the crash", st.corrupt);
  CHECK(st.depth == b.n, "depth %" PRIu64 " but %zu records", st.depth, b.n);
  uint64_t last_pushed = j->n ? j->pushed[j->n - 1] : 0;
  size_t in_flight = 0, ack_window = 0, ack_window_present = 0;
  for (size_t i = 0; i < b.n; i++) {
    uint64_t k = b.items[i].key;
    CHECK(i == 0 || k > b.items[i - 1].key, "keys out of order at %" PRIu64, k);
    CHECK(payload_ok(&b.items[i].rec, k), "record %" PRIu64 " has the wrong content", k);
    CHECK(k > j->ack_done, "record %" PRIu64 " survived a completed ack", k);
    if (k > last_pushed) {
      CHECK(j->intent_n && k >= j->intent_first && k < j->intent_first + j->intent_n,
            "record %" PRIu64 " was never pushed", k);
      in_flight++;
    } else {
      CHECK(is_pushed(j, k), "record %" PRIu64 " was never pushed successfully", k);
    }
    if (k <= j->ack_intent) ack_window_present++;
  }
  /* Nothing acknowledged lost: every successful push beyond the last ack started is there. */
  size_t at = 0;
  for (size_t i = 0; i < j->n; i++) {
    uint64_t k = j->pushed[i];
    if (k <= j->ack_done) continue;
    if (k <= j->ack_intent) {
      ack_window++;
      continue;
    }
    while (at < b.n && b.items[at].key < k) at++;
    CHECK(at < b.n && b.items[at].key == k, "pushed record %" PRIu64 " is lost", k);
  }
  /* Transactions are atomic: the push and the ack in flight happened entirely or not at all. */
  CHECK(in_flight == 0 || in_flight == j->intent_n, "%zu of %" PRIu64 " records of a push",
        in_flight, j->intent_n);
  CHECK(ack_window_present == 0 || ack_window_present == ack_window,
        "an ack in flight removed %zu of %zu records", ack_window - ack_window_present, ack_window);
  /* The sequence continues past everything seen, this round and before. */
  uint64_t top = b.n ? b.items[b.n - 1].key : 0;
  if (last_pushed > top) top = last_pushed;
  CHECK(st.next_key > top && st.next_key > *max_key, "next key %" PRIu64 " reuses keys",
        st.next_key);
  if (j->n > round_start)
    CHECK(j->pushed[round_start] > *max_key, "round restarted the key sequence");
  *max_key = st.next_key - 1;
  *n_out = b.n;
  CHECK(settle_journal(j, in_flight, ack_window, ack_window_present) == 0, "out of memory");
out:
  pc_dq_batch_free(&b);
  pc_dqueue_close(q);
  return ok;
}

/* Reads the driver's lines until the deadline (then kills it) and to EOF. Returns the exit
 * status, or -1. */
static int run_driver(const char *dir, bool no_sync, uint64_t seed, uint32_t kill_ms, journal *j) {
  int fds[2];
  if (pipe2(fds, O_CLOEXEC)) return -1;
  pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    dup2(fds[1], 1);
    char s[32];
    snprintf(s, sizeof s, "%" PRIu64, seed);
    execl("/proc/self/exe", "dqueue_crash", "drive", dir, no_sync ? "1" : "0", s, (char *)NULL);
    _exit(127);
  }
  close(fds[1]);
  uint64_t deadline = mono_ms() + kill_ms;
  bool killed = false;
  char buf[65536], line[128];
  size_t ll = 0;
  for (;;) {
    uint64_t now = mono_ms();
    if (!killed && now >= deadline) {
      kill(pid, SIGKILL);
      killed = true;
    }
    struct pollfd p = {.fd = fds[0], .events = POLLIN};
    int wait = killed ? 1000 : (int)(deadline - now);
    if (poll(&p, 1, wait) <= 0) continue;
    ssize_t r = read(fds[0], buf, sizeof buf);
    if (r <= 0) break; /* EOF: the driver is gone */
    for (ssize_t i = 0; i < r; i++) {
      if (buf[i] != '\n') {
        if (ll < sizeof line - 1) line[ll++] = buf[i];
        continue;
      }
      line[ll] = '\0';
      ll = 0;
      if (journal_line(j, line)) fprintf(stderr, "dqueue_crash: bad line '%s'\n", line);
    }
  }
  close(fds[0]);
  int status;
  waitpid(pid, &status, 0);
  return status;
}

static void remove_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (d) {
    struct dirent *e;
    char p[4200];
    while ((e = readdir(d))) {
      if (e->d_name[0] == '.') continue;
      snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
      unlink(p);
    }
    closedir(d);
  }
  rmdir(dir);
}

static int run(int rounds, uint64_t seed) {
  char dir[] = "/tmp/pc_dqueue_crash_XXXXXX";
  if (!mkdtemp(dir)) return 2;
  uint64_t max_key = 0, s = seed | 1;
  size_t total_pushed = 0;
  bool ok = true;
  journal j = {0};
  for (int r = 0; ok && r < rounds; r++) {
    size_t start = j.n;
    bool no_sync = r % 2;
    uint32_t kill_ms = 30 + (uint32_t)(rnd(&s) % 400);
    int status = run_driver(dir, no_sync, rnd(&s), kill_ms, &j);
    if (!WIFSIGNALED(status) || WTERMSIG(status) != SIGKILL) {
      fprintf(stderr, "dqueue_crash: FAIL: driver ended by itself (status %d)\n", status);
      ok = false;
    }
    size_t present = 0;
    size_t returned = j.n - start;
    if (ok) ok = verify(dir, &j, start, &max_key, &present);
    printf("round %d (%s): killed after %u ms; %zu records pushed, acked up to %" PRIu64
           ", %zu records in the queue after reopen: %s\n",
           r, no_sync ? "no_sync" : "fsync", kill_ms, returned, j.ack_done, present,
           ok ? "ok" : "FAILED");
    total_pushed += returned;
  }
  free(j.pushed);
  printf("dqueue_crash: %d rounds, %zu records pushed, %s\n", rounds, total_pushed,
         ok ? "nothing acknowledged lost" : "FAILED");
  if (ok)
    remove_tree(dir);
  else
    fprintf(stderr, "dqueue_crash: queue left in %s\n", dir);
  return ok ? 0 : 1;
}

int main(int argc, char **argv) {
  if (argc == 5 && !strcmp(argv[1], "drive"))
    return drive(argv[2], argv[3][0] == '1', strtoull(argv[4], NULL, 10) | 1);
  if (argc >= 3 && !strcmp(argv[1], "run")) {
    uint64_t seed = argc >= 4 ? strtoull(argv[3], NULL, 10) : (uint64_t)time(NULL);
    printf("dqueue_crash: seed %" PRIu64 "\n", seed);
    return run(atoi(argv[2]), seed);
  }
  fprintf(stderr, "usage: %s run ROUNDS [SEED] | drive DIR NO_SYNC SEED\n", argv[0]);
  return 2;
}
