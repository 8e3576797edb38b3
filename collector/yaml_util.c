/* YAML text -> a tree of pc_ynode, driven by libyaml's event parser. Open collections sit on a
 * stack no deeper than the limit, so a hostile "[[[[..." stops at the first level too deep
 * instead of building a huge tree. Every node is also listed in the document so freeing is one
 * flat loop (aliases share nodes). Anchors are registered when their node ends, so an alias
 * inside its own anchor is "undefined" and the tree never has a cycle. Below the tree: the
 * scalar syntax (quantities with units computed exactly in 128 bits, ${env:NAME}). */
#include "yaml_util.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "pf_buf.h"
#include "profilis/common.h"

struct pc_ydoc {
  pc_ynode *root;
  pc_ynode **all; /* every node, for freeing */
  size_t n_all, cap_all;
};

typedef struct anchor {
  char *name;
  pc_ynode *node;
} anchor;

typedef struct open_node {
  pc_ynode *node;
  char *anchor; /* registered when the collection ends */
} open_node;

typedef struct builder {
  pc_ydoc *doc;
  const pc_ylimits *lim;
  open_node *stack;
  size_t depth;
  anchor *anchors;
  size_t n_anchors, n_aliases;
  bool seen_document;
  pc_yerror *err;
} builder;

static uint32_t pos1(size_t zero_based) {
  return zero_based >= UINT32_MAX ? UINT32_MAX : (uint32_t)zero_based + 1;
}

static void fail_msg(builder *b, yaml_mark_t m, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Records the error and yields PROFILIS_EINVAL; a macro so that the static analyzer, which does
 * not follow calls into variadic functions, sees that a failure is never 0. */
#define fail(b, m, ...) (fail_msg(b, m, __VA_ARGS__), PROFILIS_EINVAL)
static void fail_msg(builder *b, yaml_mark_t m, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(b->err->msg, sizeof b->err->msg, fmt, ap);
  va_end(ap);
  b->err->line = pos1(m.line);
  b->err->col = pos1(m.column);
}

/* ---- nodes ---- */

static int new_node(builder *b, pc_ykind kind, yaml_mark_t m, pc_ynode **out) {
  pc_ydoc *d = b->doc;
  if (d->n_all >= b->lim->max_nodes)
    return fail(b, m, "more than %zu YAML nodes", b->lim->max_nodes);
  if (d->n_all == d->cap_all) {
    size_t cap = d->cap_all ? d->cap_all * 2 : 64;
    pc_ynode **p = realloc(d->all, cap * sizeof *p);
    if (!p) return PROFILIS_ENOMEM;
    d->all = p;
    d->cap_all = cap;
  }
  pc_ynode *n = calloc(1, sizeof *n);
  if (!n) return PROFILIS_ENOMEM;
  n->kind = kind;
  n->line = pos1(m.line);
  n->col = pos1(m.column);
  d->all[d->n_all++] = n;
  *out = n;
  return 0;
}

/* Hangs n under the innermost open collection, or makes it the root. */
static int attach(builder *b, pc_ynode *n) {
  if (b->depth == 0) {
    b->doc->root = n;
    return 0;
  }
  pc_ynode *parent = b->stack[b->depth - 1].node;
  if (parent->n_items == parent->cap) {
    size_t cap = parent->cap ? parent->cap * 2 : 8;
    pc_ynode **p = realloc(parent->items, cap * sizeof *p);
    if (!p) return PROFILIS_ENOMEM;
    parent->items = p;
    parent->cap = cap;
  }
  parent->items[parent->n_items++] = n;
  return 0;
}

/* ---- anchors ---- */

static int add_anchor(builder *b, const char *name, pc_ynode *n, yaml_mark_t m) {
  if (b->n_anchors >= b->lim->max_anchors)
    return fail(b, m, "more than %zu anchors", b->lim->max_anchors);
  if (b->n_anchors % 16 == 0) {
    anchor *p = realloc(b->anchors, (b->n_anchors + 16) * sizeof *p);
    if (!p) return PROFILIS_ENOMEM;
    b->anchors = p;
  }
  char *dup = strdup(name);
  if (!dup) return PROFILIS_ENOMEM;
  b->anchors[b->n_anchors++] = (anchor){dup, n};
  /* cppcheck does not follow ownership into the array through a compound literal. */
  /* cppcheck-suppress memleak */
  return 0;
}

/* The latest definition wins, as YAML says. */
static pc_ynode *find_anchor(const builder *b, const char *name) {
  for (size_t i = b->n_anchors; i-- > 0;)
    if (strcmp(b->anchors[i].name, name) == 0) return b->anchors[i].node;
  return NULL;
}

/* Tags would change what a value means; only the standard ones (which change nothing we read)
 * and the non-specific "!" are accepted. */
static int check_tag(builder *b, const yaml_char_t *tag, yaml_mark_t m) {
  static const char std[] = "tag:yaml.org,2002:";
  const char *t = (const char *)tag;
  if (!t || strcmp(t, "!") == 0 || strncmp(t, std, sizeof std - 1) == 0) return 0;
  return fail(b, m, "unsupported tag \"%.64s\"", t);
}

/* ---- events ---- */

static int on_scalar(builder *b, const yaml_event_t *ev) {
  pc_ynode *n;
  int rc = check_tag(b, ev->data.scalar.tag, ev->start_mark);
  if (!rc) rc = new_node(b, PC_Y_SCALAR, ev->start_mark, &n);
  if (rc) return rc;
  n->len = ev->data.scalar.length;
  n->plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  if (!(n->text = malloc(n->len + 1))) return PROFILIS_ENOMEM;
  memcpy(n->text, ev->data.scalar.value, n->len);
  n->text[n->len] = '\0';
  rc = attach(b, n);
  if (!rc && ev->data.scalar.anchor)
    rc = add_anchor(b, (const char *)ev->data.scalar.anchor, n, ev->start_mark);
  return rc;
}

static int on_start(builder *b, const yaml_event_t *ev, pc_ykind kind) {
  const yaml_char_t *tag, *anc;
  if (kind == PC_Y_SEQ) {
    tag = ev->data.sequence_start.tag;
    anc = ev->data.sequence_start.anchor;
  } else {
    tag = ev->data.mapping_start.tag;
    anc = ev->data.mapping_start.anchor;
  }
  if (b->depth >= b->lim->max_depth)
    return fail(b, ev->start_mark, "nested deeper than %zu levels", b->lim->max_depth);
  pc_ynode *n;
  int rc = check_tag(b, tag, ev->start_mark);
  if (!rc) rc = new_node(b, kind, ev->start_mark, &n);
  if (!rc) rc = attach(b, n);
  if (rc) return rc;
  char *name = NULL;
  if (anc && !(name = strdup((const char *)anc))) return PROFILIS_ENOMEM;
  b->stack[b->depth++] = (open_node){n, name};
  /* cppcheck does not follow ownership into the stack through a compound literal. */
  /* cppcheck-suppress memleak */
  return 0;
}

static int on_end(builder *b, const yaml_event_t *ev) {
  if (b->depth == 0) return fail(b, ev->start_mark, "unbalanced collection end");
  open_node *o = &b->stack[--b->depth];
  int rc = 0;
  if (o->anchor) rc = add_anchor(b, o->anchor, o->node, ev->start_mark);
  free(o->anchor);
  o->anchor = NULL;
  return rc;
}

static int on_alias(builder *b, const yaml_event_t *ev) {
  const char *name = (const char *)ev->data.alias.anchor;
  if (++b->n_aliases > b->lim->max_aliases)
    return fail(b, ev->start_mark, "more than %zu aliases", b->lim->max_aliases);
  pc_ynode *n = find_anchor(b, name);
  if (!n) return fail(b, ev->start_mark, "alias *%.64s names no complete anchor", name);
  return attach(b, n);
}

static int on_event(builder *b, const yaml_event_t *ev, bool *done) {
  switch (ev->type) {
  case YAML_DOCUMENT_START_EVENT:
    if (b->seen_document) return fail(b, ev->start_mark, "only one YAML document is allowed");
    b->seen_document = true;
    return 0;
  case YAML_SCALAR_EVENT:
    return on_scalar(b, ev);
  case YAML_SEQUENCE_START_EVENT:
    return on_start(b, ev, PC_Y_SEQ);
  case YAML_MAPPING_START_EVENT:
    return on_start(b, ev, PC_Y_MAP);
  case YAML_SEQUENCE_END_EVENT:
  case YAML_MAPPING_END_EVENT:
    return on_end(b, ev);
  case YAML_ALIAS_EVENT:
    return on_alias(b, ev);
  case YAML_STREAM_END_EVENT:
    *done = true;
    return 0;
  default:
    return 0;
  }
}

/* ---- libyaml's own errors ---- */

/* Reader errors (bad UTF-8, control characters) carry a byte offset, not a mark. */
static yaml_mark_t mark_at_offset(const char *text, size_t len, size_t off) {
  yaml_mark_t m = {0, 0, 0};
  for (size_t i = 0; i < off && i < len; i++) {
    if (text[i] == '\n') {
      m.line++;
      m.column = 0;
    } else {
      m.column++;
    }
  }
  return m;
}

static int syntax_error(builder *b, const yaml_parser_t *p, const char *text, size_t len) {
  if (p->error == YAML_MEMORY_ERROR) return PROFILIS_ENOMEM;
  const char *problem = p->problem ? p->problem : "malformed YAML";
  if (p->error == YAML_READER_ERROR)
    return fail(b, mark_at_offset(text, len, p->problem_offset), "%s", problem);
  if (p->context)
    return fail(b, p->problem_mark, "%s (%s at %zu:%zu)", problem, p->context,
                p->context_mark.line + 1, p->context_mark.column + 1);
  return fail(b, p->problem_mark, "%s", problem);
}

/* ---- driver ---- */

static void free_builder(builder *b) {
  for (size_t i = 0; i < b->depth; i++) free(b->stack[i].anchor);
  for (size_t i = 0; i < b->n_anchors; i++) free(b->anchors[i].name);
  free(b->anchors);
  free(b->stack);
}

static int run_parser(builder *b, const char *text, size_t len) {
  yaml_parser_t p;
  if (!yaml_parser_initialize(&p)) return PROFILIS_ENOMEM;
  yaml_parser_set_input_string(&p, (const unsigned char *)text, len);
  int rc = 0;
  for (bool done = false; !done && !rc;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&p, &ev)) {
      rc = syntax_error(b, &p, text, len);
      break;
    }
    rc = on_event(b, &ev, &done);
    yaml_event_delete(&ev);
  }
  yaml_parser_delete(&p);
  return rc;
}

int pc_ydoc_parse(const char *text, size_t len, const pc_ylimits *lim, pc_ydoc **out,
                  pc_yerror *err) {
  *out = NULL;
  memset(err, 0, sizeof *err);
  builder b = {.lim = lim, .err = err};
  int rc = PROFILIS_ENOMEM;
  if (!(b.doc = calloc(1, sizeof *b.doc))) goto done;
  if (!(b.stack = calloc(lim->max_depth ? lim->max_depth : 1, sizeof *b.stack))) goto done;
  rc = run_parser(&b, text, len);
done:
  free_builder(&b);
  if (rc) {
    pc_ydoc_free(b.doc);
    return rc;
  }
  *out = b.doc;
  return 0;
}

const pc_ynode *pc_ydoc_root(const pc_ydoc *d) { return d ? d->root : NULL; }

void pc_ydoc_free(pc_ydoc *d) {
  if (!d) return;
  for (size_t i = 0; i < d->n_all; i++) {
    free(d->all[i]->text);
    free(d->all[i]->items);
    free(d->all[i]);
  }
  free(d->all);
  free(d);
}

bool pc_ynode_is_null(const pc_ynode *n) {
  if (!n) return true;
  if (n->kind != PC_Y_SCALAR || !n->plain) return false;
  return n->len == 0 || strcmp(n->text, "~") == 0 || strcmp(n->text, "null") == 0 ||
         strcmp(n->text, "Null") == 0 || strcmp(n->text, "NULL") == 0;
}

/* ---- scalar syntax ---- */

#define NS_S 1000000000ull
const pc_yunit pc_yunits_duration[] = {{"ns", 1},   {"us", 1000},     {"ms", 1000000},
                                       {"s", NS_S}, {"m", 60 * NS_S}, {"h", 3600 * NS_S},
                                       {NULL, 0}};
const pc_yunit pc_yunits_size[] = {{"B", 1},
                                   {"KiB", 1ull << 10},
                                   {"MiB", 1ull << 20},
                                   {"GiB", 1ull << 30},
                                   {"TiB", 1ull << 40},
                                   {"KB", 1000},
                                   {"kB", 1000},
                                   {"MB", 1000000},
                                   {"GB", 1000000000},
                                   {"TB", 1000000000000},
                                   {NULL, 0}};

static bool is_digit(char ch) { return ch >= '0' && ch <= '9'; }

static int say(char *why, size_t cap, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static int say(char *why, size_t cap, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(why, cap, fmt, ap);
  va_end(ap);
  return PROFILIS_EINVAL;
}

const char *pc_yprintable(const char *s, size_t len, char *buf, size_t cap) {
  size_t n = 0;
  for (size_t i = 0; i < len && n + 4 < cap; i++)
    buf[n++] = (s[i] >= 0x20 && s[i] < 0x7f) ? s[i] : '?';
  if (n < len && n + 4 >= cap) {
    memcpy(buf + n, "...", 3);
    n += 3;
  }
  buf[n] = '\0';
  return buf;
}

static const pc_yunit *find_unit(const pc_yunit *units, const char *s, size_t len) {
  for (const pc_yunit *u = units; u->name; u++)
    if (strlen(u->name) == len && memcmp(u->name, s, len) == 0) return u;
  return NULL;
}

/* 128-bit intermediates cannot overflow: at most 20 integer digits (< 2^67) times the largest
 * multiplier (an hour in ns, < 2^42), and 18 decimals. */
int pc_yquantity(const char *s, size_t len, const pc_yunit *units, bool need_unit,
                 const char *example, uint64_t *out, char *why, size_t cap) {
  unsigned __int128 ip = 0, fp = 0, scale = 1;
  size_t i = 0, nd = 0, nf = 0;
  bool dot = false;
  if (len && s[0] == '-') return say(why, cap, "must not be negative");
  for (; i < len && is_digit(s[i]); i++, nd++) {
    if (nd == 20) return say(why, cap, "too large");
    ip = ip * 10 + (unsigned)(s[i] - '0');
  }
  if (nd && i < len && s[i] == '.') {
    dot = true;
    for (i++; i < len && is_digit(s[i]); i++, nf++) {
      if (nf == 18) return say(why, cap, "too many decimals");
      fp = fp * 10 + (unsigned)(s[i] - '0');
      scale *= 10;
    }
  }
  if (nd == 0 || (dot && nf == 0)) return say(why, cap, "expected %s", example);
  while (i < len && s[i] == ' ') i++;
  uint64_t mult = 1;
  if (i < len) {
    const pc_yunit *u = find_unit(units, s + i, len - i);
    char ub[24];
    if (!u)
      return say(why, cap, "unknown unit \"%s\" in %s",
                 pc_yprintable(s + i, len - i, ub, sizeof ub), example);
    mult = u->mult;
  } else if (need_unit && (ip || fp)) {
    return say(why, cap, "missing unit: expected %s", example);
  }
  unsigned __int128 frac = fp * mult;
  if (frac % scale) return say(why, cap, "too precise: finer than 1%s", units[0].name);
  unsigned __int128 total = ip * mult + frac / scale;
  if (total > UINT64_MAX) return say(why, cap, "too large");
  *out = (uint64_t)total;
  return 0;
}

#define MAX_ENV_NAME 128

static bool env_name_ok(const char *s, size_t len) {
  if (len == 0 || len > MAX_ENV_NAME || is_digit(s[0])) return false;
  for (size_t i = 0; i < len; i++)
    if (!(is_digit(s[i]) || s[i] == '_' || (s[i] >= 'a' && s[i] <= 'z') ||
          (s[i] >= 'A' && s[i] <= 'Z')))
      return false;
  return true;
}

/* Appends the value of the reference "${...}" at s[0..len) (len covers both braces). */
static int expand_ref(const char *s, size_t len, pf_buf *out, char *why, size_t cap) {
  const char *inner = s + 2;
  size_t il = len - 3;
  char name[MAX_ENV_NAME + 1], pb[48];
  /* ${tenant} is not substituted here: it stays for the pipeline, which runs a templated
   * exporter once per tenant with the tenant id in its place. */
  if (il == 6 && memcmp(inner, "tenant", 6) == 0) return pf_buf_append(out, s, len);
  if (il < 4 || memcmp(inner, "env:", 4) != 0 || !env_name_ok(inner + 4, il - 4))
    return say(why, cap, "unsupported substitution \"%s\": write ${env:NAME}",
               pc_yprintable(s, len, pb, sizeof pb));
  memcpy(name, inner + 4, il - 4);
  name[il - 4] = '\0';
  const char *v = getenv(name);
  if (!v) return say(why, cap, "environment variable %s is not set", name);
  return pf_buf_puts(out, v);
}

int pc_yexpand_env(const char *s, size_t len, size_t max_out, pf_buf *out, char *why, size_t cap) {
  size_t start = out->len;
  int rc = 0;
  for (size_t i = 0; i < len && !rc; i++) {
    if (s[i] != '$' || i + 1 == len || (s[i + 1] != '$' && s[i + 1] != '{')) {
      rc = pf_buf_append(out, s + i, 1);
    } else if (s[i + 1] == '$') {
      rc = pf_buf_append(out, "$", 1);
      i++;
    } else {
      const char *end = memchr(s + i, '}', len - i);
      if (!end) return say(why, cap, "unterminated \"${\"");
      size_t rl = (size_t)(end - (s + i)) + 1;
      rc = expand_ref(s + i, rl, out, why, cap);
      i += rl - 1;
    }
    if (!rc && out->len - start > max_out)
      return say(why, cap, "longer than %zu bytes after substitution", max_out);
  }
  if (!rc) rc = pf_buf_append(out, "", 1);
  if (!rc) out->len--; /* the NUL terminates but is not part of the value */
  return rc;
}
