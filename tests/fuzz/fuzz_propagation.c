/* libFuzzer target for the W3C propagation parsers. The same bytes go to traceparent,
 * tracestate and baggage parsing (length-delimited, no NUL), and split on '\n' into a carrier
 * for extract. Whatever parses must format back into something that re-parses to the same
 * value, and extract -> inject -> extract must be a fixed point. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_check.h"
#include "profilis/propagation.h"

static void fuzz_traceparent(const char *s, size_t n) {
  profilis_span_context a, b;
  char out[PROFILIS_TRACEPARENT_LEN + 1];
  if (profilis_traceparent_parse(s, n, &a) != 0) return;
  CHECK(n >= PROFILIS_TRACEPARENT_LEN && a.is_remote == 1 && a.tracestate_len == 0);
  CHECK(profilis_traceparent_format(&a, out, sizeof out) == 0);
  CHECK(strlen(out) == PROFILIS_TRACEPARENT_LEN);
  /* version 00 is only ever accepted in its canonical form */
  if (s[0] == '0' && s[1] == '0') CHECK(n == PROFILIS_TRACEPARENT_LEN && !memcmp(out, s, n));
  CHECK(profilis_traceparent_parse(out, PROFILIS_TRACEPARENT_LEN, &b) == 0);
  CHECK(!memcmp(a.trace_id, b.trace_id, 16) && !memcmp(a.span_id, b.span_id, 8));
  CHECK(a.trace_flags == b.trace_flags);
}

/* Every member of a normalised list is reachable through get(). */
static void check_members(const profilis_span_context *c) {
  char key[300], val[300];
  const char *p = c->tracestate;
  while (*p) {
    const char *eq = strchr(p, '='), *end = strchr(p, ',');
    if (!end) end = p + strlen(p);
    CHECK(eq && eq < end && (size_t)(eq - p) < sizeof key);
    memcpy(key, p, (size_t)(eq - p));
    key[eq - p] = '\0';
    CHECK(profilis_tracestate_get(c, key, val, sizeof val) == 0);
    CHECK(strlen(val) == (size_t)(end - eq - 1) && !memcmp(val, eq + 1, strlen(val)));
    p = *end ? end + 1 : end;
  }
}

static void fuzz_tracestate(const char *s, size_t n) {
  profilis_span_context a, b;
  memset(&a, 0, sizeof a);
  if (profilis_tracestate_parse(s, n, &a) != 0) {
    CHECK(a.tracestate_len == 0 && a.tracestate[0] == '\0');
    return;
  }
  CHECK(a.tracestate_len <= PROFILIS_TRACESTATE_MAX);
  CHECK(strlen(a.tracestate) == a.tracestate_len);
  memset(&b, 0, sizeof b);
  CHECK(profilis_tracestate_parse(a.tracestate, a.tracestate_len, &b) == 0);
  CHECK(!strcmp(a.tracestate, b.tracestate)); /* normalising is idempotent */
  check_members(&a);
  /* set() keeps the list valid and puts the key first */
  if (profilis_tracestate_set(&b, "fz@x", "v") == 0) {
    CHECK(!strncmp(b.tracestate, "fz@x=v", 6));
    CHECK(profilis_tracestate_parse(b.tracestate, b.tracestate_len, &a) == 0);
    CHECK(!strcmp(a.tracestate, b.tracestate));
  }
}

static void check_same_baggage(const profilis_baggage *a, const profilis_baggage *b) {
  CHECK(profilis_baggage_count(a) == profilis_baggage_count(b));
  for (size_t i = 0; i < profilis_baggage_count(a); i++) {
    const char *ka, *va, *ma, *kb, *vb, *mb;
    CHECK(profilis_baggage_member(a, i, &ka, &va, &ma) == 0);
    CHECK(profilis_baggage_member(b, i, &kb, &vb, &mb) == 0);
    CHECK(!strcmp(ka, kb) && !strcmp(va, vb));
    CHECK((!ma && !mb) || (ma && mb && !strcmp(ma, mb)));
  }
}

static void fuzz_baggage(const char *s, size_t n) {
  static char h1[PROFILIS_BAGGAGE_MAX_BYTES + 1], h2[PROFILIS_BAGGAGE_MAX_BYTES + 1];
  profilis_baggage *a = NULL, *b = NULL;
  size_t skipped = 0, need = 0;
  if (profilis_baggage_new(&a) || profilis_baggage_new(&b)) goto out;
  (void)profilis_baggage_parse(a, s, n, &skipped);
  CHECK(profilis_baggage_count(a) <= PROFILIS_BAGGAGE_MAX_MEMBERS);
  CHECK(profilis_baggage_format(a, h1, sizeof h1, &need) == 0);
  CHECK(strlen(h1) + 1 == need && need <= sizeof h1);
  if (profilis_baggage_count(a) == 0) goto out;
  CHECK(profilis_baggage_parse(b, h1, strlen(h1), &skipped) == 0 && skipped == 0);
  check_same_baggage(a, b);
  CHECK(profilis_baggage_format(b, h2, sizeof h2, NULL) == 0 && !strcmp(h1, h2));
out:
  profilis_baggage_free(a);
  profilis_baggage_free(b);
}

/* ---- extract / inject over a carrier of up to three '\n'-separated headers ---- */

typedef struct carrier {
  const char *key[3];
  char *val[3];
} carrier;

static const char *c_get(void *c, const char *key) {
  carrier *k = c;
  for (int i = 0; i < 3; i++) {
    if (k->key[i] && !strcmp(k->key[i], key)) return k->val[i];
  }
  return NULL;
}

static int c_set(void *c, const char *key, const char *value) {
  carrier *k = c;
  for (int i = 0; i < 3; i++) {
    if (!k->key[i]) {
      k->key[i] = key; /* inject passes string literals */
      k->val[i] = strdup(value);
      return k->val[i] ? 0 : -1;
    }
  }
  return -1;
}

static void fuzz_carrier(const char *s, size_t n) {
  static const char *names[3] = {"traceparent", "tracestate", "baggage"};
  char *copy = malloc(n + 1);
  carrier in = {{0}, {0}}, out = {{0}, {0}};
  profilis_baggage *b1 = NULL, *b2 = NULL;
  profilis_span_context c1, c2;
  if (!copy || profilis_baggage_new(&b1) || profilis_baggage_new(&b2)) goto done;
  memcpy(copy, s, n);
  copy[n] = '\0';
  char *p = copy;
  for (int i = 0; i < 3 && p; i++) {
    in.key[i] = names[i];
    in.val[i] = p;
    p = strchr(p, '\n');
    if (p) *p++ = '\0';
  }
  const unsigned all = PROFILIS_PROPAGATOR_TRACECONTEXT | PROFILIS_PROPAGATOR_BAGGAGE;
  int rc = profilis_extract(all, c_get, &in, &c1, b1);
  CHECK(rc == 0 || rc == PROFILIS_ENOTFOUND);
  CHECK(profilis_inject(all, &c1, b1, c_set, &out) == 0);
  CHECK(profilis_extract(all, c_get, &out, &c2, b2) == rc);
  CHECK(!memcmp(&c1, &c2, offsetof(profilis_span_context, tracestate)));
  CHECK(!strcmp(c1.tracestate, c2.tracestate));
  check_same_baggage(b1, b2);
done:
  for (int i = 0; i < 3; i++) free(out.val[i]);
  profilis_baggage_free(b1);
  profilis_baggage_free(b2);
  free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  const char *s = (const char *)data;
  fuzz_traceparent(s, size);
  fuzz_tracestate(s, size);
  fuzz_baggage(s, size);
  fuzz_carrier(s, size);
  return 0;
}
