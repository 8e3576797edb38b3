/* Unit tests for resource.c: the resource's attribute section is decoded with pf_attr_next and
 * checked for service.name precedence, the telemetry.sdk.* attributes, percent-decoding,
 * skipped malformed entries and "later duplicate wins". */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "pf_exporter.h"

/* The decoded section: string attributes only (the resource has no other kind). */
typedef struct attrs {
  size_t n;
  char key[32][64];
  char val[32][128];
} attrs;

static void decode(const pf_resource *r, attrs *a) {
  size_t off = 0;
  pf_attr_view v = {0};
  a->n = 0;
  while (pf_attr_next(r->attrs.p, r->attrs.len, &off, &v)) {
    assert_true(a->n < 32);
    assert_int_equal(v.type, PROFILIS_ATTR_STRING);
    assert_true(v.key_len < 64 && v.val_len < 128);
    memcpy(a->key[a->n], v.key, v.key_len);
    a->key[a->n][v.key_len] = '\0';
    memcpy(a->val[a->n], v.val, v.val_len);
    a->val[a->n][v.val_len] = '\0';
    a->n++;
  }
  assert_int_equal(off, r->attrs.len); /* the whole section decodes */
  assert_int_equal(a->n, r->n_attrs);
}

/* Value of key, failing the test when the key is absent or appears twice. */
static const char *get(const attrs *a, const char *key) {
  const char *found = NULL;
  for (size_t i = 0; i < a->n; i++) {
    if (strcmp(a->key[i], key) != 0) continue;
    if (found) fail_msg("%s appears twice", key);
    found = a->val[i];
  }
  return found;
}

/* Builds the resource for (service_name, resource_attributes) options without the environment. */
static void build(const char *service, const char *list, attrs *a) {
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.use_env = false;
  o.service_name = service;
  o.resource_attributes = list;
  pf_config c;
  assert_int_equal(pf_config_resolve(&c, &o), 0);
  pf_resource r;
  assert_int_equal(pf_resource_build(&r, &c), 0);
  decode(&r, a);
  pf_resource_free(&r);
  assert_null(r.attrs.p);
  pf_config_free(&c);
}

static void test_defaults(void **state) {
  (void)state;
  attrs a;
  build(NULL, NULL, &a);
  assert_int_equal(a.n, 4);
  assert_string_equal(a.key[0], "service.name"); /* first, as documented */
  assert_string_equal(get(&a, "service.name"), "unknown_service:test_resource");
  assert_string_equal(get(&a, "telemetry.sdk.name"), "profilis");
  assert_string_equal(get(&a, "telemetry.sdk.language"), "c");
  assert_string_equal(get(&a, "telemetry.sdk.version"), PROFILIS_VERSION);
}

typedef struct res_case {
  const char *service; /* option / OTEL_SERVICE_NAME */
  const char *list;    /* OTEL_RESOURCE_ATTRIBUTES */
  const char *want[8][2];
  size_t want_n; /* total attributes including the 4 fixed ones (minus replaced ones) */
} res_case;

static const res_case cases[] = {
    {"checkout", NULL, {{"service.name", "checkout"}}, 4},
    {"checkout",
     "service.name=from-list,env=prod",
     {{"service.name", "checkout"}, {"env", "prod"}},
     5},
    {NULL, "service.name=from-list,env=prod", {{"service.name", "from-list"}, {"env", "prod"}}, 5},
    {"", "service.name=from-list", {{"service.name", "from-list"}}, 4},
    {NULL, "service.name=", {{"service.name", "unknown_service:test_resource"}}, 4},
    {NULL,
     "k=hello%20world,x%2Ey=%E2%9C%93,pct=100%25",
     {{"k", "hello world"}, {"x.y", "\xe2\x9c\x93"}, {"pct", "100%"}},
     7},
    {NULL, " a = 1 , b=2 ", {{"a", "1"}, {"b", "2"}}, 6},
    {NULL, "Host.Name=Keep-Case", {{"Host.Name", "Keep-Case"}}, 5},
    {NULL, "good=1,bad,=x,also=%zz,nul=%00,last=2", {{"good", "1"}, {"last", "2"}}, 6},
    {NULL, "a=1,a=2,b=3,a=4", {{"a", "4"}, {"b", "3"}}, 6},
    {NULL, "service.name=one,service.name=two", {{"service.name", "two"}}, 4},
    {NULL, "telemetry.sdk.language=cpp", {{"telemetry.sdk.language", "cpp"}}, 4},
    {NULL, "empty=", {{"empty", ""}}, 5},
    {NULL, "", {{"telemetry.sdk.name", "profilis"}}, 4},
    {NULL, ",,,", {{"telemetry.sdk.name", "profilis"}}, 4},
};

static void test_cases(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const res_case *tc = &cases[i];
    print_message("case %zu: service=%s list=%s\n", i, tc->service ? tc->service : "(null)",
                  tc->list ? tc->list : "(null)");
    attrs a;
    build(tc->service, tc->list, &a);
    assert_int_equal(a.n, tc->want_n);
    for (size_t j = 0; j < 8 && tc->want[j][0]; j++) {
      const char *v = get(&a, tc->want[j][0]);
      if (!v) fail_msg("missing %s", tc->want[j][0]);
      assert_string_equal(v, tc->want[j][1]);
    }
    assert_non_null(get(&a, "telemetry.sdk.version"));
  }
}

/* OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES travel through pf_config. */
static const char *env_service, *env_list;
static const char *fake_getenv(const char *name) {
  if (strcmp(name, "OTEL_SERVICE_NAME") == 0) return env_service;
  if (strcmp(name, "OTEL_RESOURCE_ATTRIBUTES") == 0) return env_list;
  return NULL;
}

static void test_from_environment(void **state) {
  (void)state;
  env_service = "env-svc";
  env_list = "service.name=list-svc,deployment.environment=staging";
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.service_name = "code-svc";
  pf_config c;
  assert_int_equal(pf_config_resolve_with(&c, &o, fake_getenv), 0);
  pf_resource r;
  assert_int_equal(pf_resource_build(&r, &c), 0);
  attrs a;
  decode(&r, &a);
  assert_string_equal(get(&a, "service.name"), "env-svc");
  assert_string_equal(get(&a, "deployment.environment"), "staging");
  assert_int_equal(a.n, 5);
  pf_resource_free(&r);
  pf_config_free(&c);
}

static void test_large_list(void **state) {
  (void)state;
  /* 200 entries: the first 128 are kept, the rest dropped with a warning, nothing overruns */
  size_t cap = 200 * 24;
  char *list = malloc(cap);
  size_t off = 0;
  for (int i = 0; i < 200; i++)
    off += (size_t)snprintf(list + off, cap - off, "%sk%d=%d", i ? "," : "", i, i);
  profilis_provider_opts o;
  profilis_provider_opts_init(&o);
  o.use_env = false;
  o.resource_attributes = list;
  pf_config c;
  assert_int_equal(pf_config_resolve(&c, &o), 0);
  pf_resource r;
  assert_int_equal(pf_resource_build(&r, &c), 0);
  assert_int_equal(r.n_attrs, 4 + 128);
  pf_resource_free(&r);
  pf_config_free(&c);
  free(list);
}

int main(void) {
  setenv("PROFILIS_LOG_LEVEL", "error", 1); /* the malformed entries are expected */
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_defaults),
      cmocka_unit_test(test_cases),
      cmocka_unit_test(test_from_environment),
      cmocka_unit_test(test_large_list),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
