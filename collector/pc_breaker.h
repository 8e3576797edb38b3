/* Circuit breaker for one exporter (per tenant route): a pure state machine with no I/O, no
 * clock and no global randomness. The caller passes the monotonic time into every call and a
 * seed in the config, so the same inputs always give the same decisions (tests replay them).
 *
 *   closed ──(N failures in a row, or failure ratio over the sliding window)──► open
 *   open ──(cool-down passed; the next allow() call)──► half_open
 *   half_open ──(close_after probe successes)──► closed
 *   half_open ──(a probe fails)──► open, with a longer cool-down
 *
 * The cool-down of the k-th trip in a row is open_ms * open_multiplier^(k-1), capped at
 * open_max_ms, minus a random part of up to `jitter` of itself: it lies in
 * [d * (1 - jitter), d], so the cap is a hard bound. Closing resets k.
 *
 * Usage by an exporter thread: `if (pc_breaker_allow(b, now)) { rc = export(...);
 * pc_breaker_record(b, pf_mono_ns(), rc == 0); } else park the batch until
 * pc_breaker_next_probe_ns(b)`. Every allow() that returned true must be followed by exactly
 * one record() for that call. Not thread-safe: one owner (the exporter thread); copy the
 * counters out for metrics. Internal. */
#ifndef PC_BREAKER_H
#define PC_BREAKER_H

#include <stdbool.h>
#include <stdint.h>

/* The states, one X-macro table: enum constant suffix, metric label value. */
#define PC_BREAKER_STATE_MAP(X)                                                                    \
  X(CLOSED, "closed")                                                                              \
  X(OPEN, "open")                                                                                  \
  X(HALF_OPEN, "half_open")

typedef enum pc_breaker_state {
#define PC__BREAKER_ENUM(name, label) PC_BREAKER_##name,
  PC_BREAKER_STATE_MAP(PC__BREAKER_ENUM)
#undef PC__BREAKER_ENUM
      PC_BREAKER_N_STATES
} pc_breaker_state;

/* The label of a state ("closed", "open", "half_open"); "unknown" for anything else. */
const char *pc_breaker_state_name(pc_breaker_state s);

#define PC_BREAKER_MAX_BUCKETS 64u

typedef struct pc_breaker_cfg {
  uint32_t failure_threshold; /* consecutive failures that trip it; 0 = this trigger is off */
  double failure_ratio;       /* trip when failures/calls in the window reach it, (0, 1];
                                 0 = this trigger is off */
  uint32_t min_calls;         /* calls the window must hold before the ratio counts (>= 1) */
  uint32_t window_ms;         /* length of the sliding window */
  uint32_t window_buckets;    /* its resolution, 1..PC_BREAKER_MAX_BUCKETS: the window holds
                                 the calls of the last window_buckets buckets of
                                 window_ms/window_buckets each, the current one included */
  uint32_t open_ms;           /* cool-down of the first trip */
  uint32_t open_max_ms;       /* cap of the cool-down (>= open_ms) */
  double open_multiplier;     /* growth per repeated trip (>= 1) */
  double jitter;              /* [0, 1]: fraction of the cool-down that is random */
  uint32_t half_open_probes;  /* calls let through at once while half-open (>= 1) */
  uint32_t close_after;       /* probe successes that close it (>= 1) */
  uint64_t seed;              /* of the jitter's generator; any value */
} pc_breaker_cfg;

typedef struct pc_breaker_bucket {
  uint64_t epoch; /* now / bucket width of the calls it counts */
  uint32_t calls, failures;
} pc_breaker_bucket;

/* Fields are private except through the functions below; the struct is public so an exporter
 * slot can embed it without an allocation. */
typedef struct pc_breaker {
  pc_breaker_cfg cfg;
  pc_breaker_state state;
  uint64_t bucket_ns;
  uint64_t last_ns;       /* latest time seen: the window never runs backwards */
  uint32_t consecutive;   /* failures in a row while closed */
  uint32_t trips;         /* trips since it last closed: picks the cool-down */
  uint32_t probes_out;    /* half-open: probes allowed whose result is not recorded yet */
  uint32_t probe_ok;      /* half-open: probe successes so far */
  uint64_t open_until_ns; /* open: when the next probe may go */
  uint64_t cooldown_ns;   /* the last cool-down drawn */
  uint64_t rng;
  uint64_t transitions[PC_BREAKER_N_STATES]; /* entries into each state */
  uint64_t rejected;                         /* allow() calls answered false */
  pc_breaker_bucket buckets[PC_BREAKER_MAX_BUCKETS];
} pc_breaker;

/* Fills *cfg with the defaults: 5 failures in a row, or a ratio of 0.5 over at least 20 calls
 * in 30 s (10 buckets); cool-down 1 s doubling up to 30 s with 20% jitter; 1 probe at a time,
 * 1 success closes. */
void pc_breaker_cfg_default(pc_breaker_cfg *cfg);

/* Starts the breaker closed. cfg is copied. Returns 0 or PROFILIS_EINVAL (a value out of the
 * ranges documented above; *b is then left closed with the defaults). */
int pc_breaker_init(pc_breaker *b, const pc_breaker_cfg *cfg);

/* May a call go now? Closed: yes. Open: no until the cool-down has passed, then the breaker
 * turns half-open. Half-open: yes while fewer than half_open_probes probes are out, and the
 * call counts as a probe. */
bool pc_breaker_allow(pc_breaker *b, uint64_t now_ns);

/* The outcome of a call allow() let through. A result that arrives while open, or while
 * half-open with no probe out, belongs to a call from before the trip and is ignored. */
void pc_breaker_record(pc_breaker *b, uint64_t now_ns, bool success);

static inline pc_breaker_state pc_breaker_state_of(const pc_breaker *b) { return b->state; }

/* The earliest time allow() can say yes: 0 (now) when closed or a probe slot is free,
 * the end of the cool-down when open, UINT64_MAX while every probe is out (it takes a
 * record(), not time). */
uint64_t pc_breaker_next_probe_ns(const pc_breaker *b);

/* How many times the breaker entered `s` since init. */
static inline uint64_t pc_breaker_transitions(const pc_breaker *b, pc_breaker_state s) {
  return (unsigned)s < PC_BREAKER_N_STATES ? b->transitions[s] : 0;
}

/* Calls and failures the sliding window holds at now_ns. */
void pc_breaker_window(const pc_breaker *b, uint64_t now_ns, uint32_t *calls, uint32_t *failures);

#endif
