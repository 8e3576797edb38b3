/* Circuit breaker state machine (pc_breaker.h). Time comes in as a parameter and randomness
 * from a splitmix64 generator seeded by the config, so it has no I/O and replays exactly. The
 * sliding window is a ring of time buckets keyed by epoch (now / bucket width): a bucket whose
 * epoch is stale is reset on first use, and sums skip buckets older than the window, so no
 * timer is needed to age calls out. One function per state keeps each transition local. */
#include <math.h>
#include <string.h>

#include "pc_breaker.h"
#include "profilis/common.h"

#define NS_PER_MS 1000000ull

const char *pc_breaker_state_name(pc_breaker_state s) {
  static const char *const names[] = {
#define PC__BREAKER_NAME(name, label) label,
      PC_BREAKER_STATE_MAP(PC__BREAKER_NAME)
#undef PC__BREAKER_NAME
  };
  return (unsigned)s < PC_BREAKER_N_STATES ? names[s] : "unknown";
}

void pc_breaker_cfg_default(pc_breaker_cfg *cfg) {
  *cfg = (pc_breaker_cfg){
      .failure_threshold = 5,
      .failure_ratio = 0.5,
      .min_calls = 20,
      .window_ms = 30000,
      .window_buckets = 10,
      .open_ms = 1000,
      .open_max_ms = 30000,
      .open_multiplier = 2.0,
      .jitter = 0.2,
      .half_open_probes = 1,
      .close_after = 1,
      .seed = 0x5eed,
  };
}

static bool cfg_valid(const pc_breaker_cfg *c) {
  /* Written so that NaN fails every comparison. */
  if (!(c->failure_ratio >= 0.0 && c->failure_ratio <= 1.0)) return false;
  if (!(c->open_multiplier >= 1.0 && c->open_multiplier <= 1e6)) return false;
  if (!(c->jitter >= 0.0 && c->jitter <= 1.0)) return false;
  if (c->window_buckets < 1 || c->window_buckets > PC_BREAKER_MAX_BUCKETS) return false;
  if (c->window_ms < c->window_buckets) return false; /* a bucket is at least 1 ms */
  if (c->open_max_ms < c->open_ms) return false;
  return c->min_calls >= 1 && c->half_open_probes >= 1 && c->close_after >= 1;
}

int pc_breaker_init(pc_breaker *b, const pc_breaker_cfg *cfg) {
  int rc = 0;
  memset(b, 0, sizeof *b);
  if (cfg && cfg_valid(cfg)) {
    b->cfg = *cfg;
  } else {
    pc_breaker_cfg_default(&b->cfg);
    rc = PROFILIS_EINVAL;
  }
  b->state = PC_BREAKER_CLOSED;
  b->bucket_ns = (uint64_t)b->cfg.window_ms * NS_PER_MS / b->cfg.window_buckets;
  b->rng = b->cfg.seed;
  return rc;
}

/* splitmix64: tiny, full period, and good enough to spread cool-downs. */
static uint64_t rng_next(pc_breaker *b) {
  uint64_t z = (b->rng += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

/* Uniform in [0, 1). */
static double rng_unit(pc_breaker *b) { return (double)(rng_next(b) >> 11) * 0x1.0p-53; }

/* ---- sliding window ---- */

static uint64_t clamp_time(pc_breaker *b, uint64_t now_ns) {
  if (now_ns > b->last_ns) b->last_ns = now_ns;
  return b->last_ns;
}

static void window_clear(pc_breaker *b) { memset(b->buckets, 0, sizeof b->buckets); }

static void window_add(pc_breaker *b, uint64_t now_ns, bool success) {
  uint64_t epoch = now_ns / b->bucket_ns;
  pc_breaker_bucket *k = &b->buckets[epoch % b->cfg.window_buckets];
  if (k->epoch != epoch) *k = (pc_breaker_bucket){.epoch = epoch};
  k->calls++;
  k->failures += !success;
}

void pc_breaker_window(const pc_breaker *b, uint64_t now_ns, uint32_t *calls, uint32_t *failures) {
  uint64_t t = now_ns > b->last_ns ? now_ns : b->last_ns;
  uint64_t epoch = t / b->bucket_ns;
  uint32_t c = 0, f = 0;
  for (uint32_t i = 0; i < b->cfg.window_buckets; i++) {
    const pc_breaker_bucket *k = &b->buckets[i];
    if (k->calls && epoch - k->epoch < b->cfg.window_buckets) {
      c += k->calls;
      f += k->failures;
    }
  }
  *calls = c;
  *failures = f;
}

/* ---- transitions ---- */

static void enter(pc_breaker *b, pc_breaker_state s) {
  b->state = s;
  b->transitions[s]++;
}

/* The cool-down of the current trip: exponential in the trips in a row, capped, jittered
 * downwards so the cap holds. */
static uint64_t draw_cooldown(pc_breaker *b) {
  const pc_breaker_cfg *c = &b->cfg;
  double d = (double)c->open_ms * pow(c->open_multiplier, (double)(b->trips - 1));
  if (!(d <= (double)c->open_max_ms)) d = (double)c->open_max_ms; /* also catches inf */
  d *= (double)NS_PER_MS;
  d -= d * c->jitter * rng_unit(b);
  return (uint64_t)d;
}

static void trip(pc_breaker *b, uint64_t now_ns) {
  if (b->trips < UINT32_MAX) b->trips++;
  b->cooldown_ns = draw_cooldown(b);
  b->open_until_ns = now_ns + b->cooldown_ns;
  b->consecutive = 0;
  b->probes_out = b->probe_ok = 0;
  window_clear(b);
  enter(b, PC_BREAKER_OPEN);
}

static void close_breaker(pc_breaker *b) {
  b->trips = 0;
  b->consecutive = 0;
  b->probes_out = b->probe_ok = 0;
  window_clear(b);
  enter(b, PC_BREAKER_CLOSED);
}

static bool ratio_tripped(const pc_breaker *b, uint64_t now_ns) {
  if (b->cfg.failure_ratio <= 0.0) return false;
  uint32_t calls, failures;
  pc_breaker_window(b, now_ns, &calls, &failures);
  return calls >= b->cfg.min_calls && (double)failures >= b->cfg.failure_ratio * (double)calls;
}

static void record_closed(pc_breaker *b, uint64_t now_ns, bool success) {
  window_add(b, now_ns, success);
  if (success) {
    b->consecutive = 0;
    return;
  }
  if (b->consecutive < UINT32_MAX) b->consecutive++;
  bool run = b->cfg.failure_threshold && b->consecutive >= b->cfg.failure_threshold;
  if (run || ratio_tripped(b, now_ns)) trip(b, now_ns);
}

static void record_half_open(pc_breaker *b, uint64_t now_ns, bool success) {
  if (!b->probes_out) return; /* a call from before the trip */
  b->probes_out--;
  if (!success) {
    trip(b, now_ns);
  } else if (++b->probe_ok >= b->cfg.close_after) {
    close_breaker(b);
  }
}

bool pc_breaker_allow(pc_breaker *b, uint64_t now_ns) {
  now_ns = clamp_time(b, now_ns);
  if (b->state == PC_BREAKER_OPEN && now_ns >= b->open_until_ns) {
    b->probes_out = b->probe_ok = 0;
    enter(b, PC_BREAKER_HALF_OPEN);
  }
  bool yes = b->state == PC_BREAKER_CLOSED ||
             (b->state == PC_BREAKER_HALF_OPEN && b->probes_out < b->cfg.half_open_probes);
  if (!yes) {
    b->rejected++;
  } else if (b->state == PC_BREAKER_HALF_OPEN) {
    b->probes_out++;
  }
  return yes;
}

void pc_breaker_record(pc_breaker *b, uint64_t now_ns, bool success) {
  now_ns = clamp_time(b, now_ns);
  switch (b->state) {
  case PC_BREAKER_CLOSED:
    record_closed(b, now_ns, success);
    break;
  case PC_BREAKER_HALF_OPEN:
    record_half_open(b, now_ns, success);
    break;
  default: /* open: a late result of a call from before the trip */
    break;
  }
}

uint64_t pc_breaker_next_probe_ns(const pc_breaker *b) {
  switch (b->state) {
  case PC_BREAKER_OPEN:
    return b->open_until_ns;
  case PC_BREAKER_HALF_OPEN:
    return b->probes_out < b->cfg.half_open_probes ? 0 : UINT64_MAX;
  default:
    return 0;
  }
}
