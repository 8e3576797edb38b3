/* A YAML document as a small tree with 1-based positions, built from libyaml's event stream,
 * and the syntax of the scalars a config file holds (numbers with units, ${env:NAME}).
 * The builder bounds what untrusted text can make it do: nesting depth, node count and anchor
 * count are capped, an alias may only name a node that is already complete (so the tree has no
 * cycles), and only one document is accepted. Internal. */
#ifndef PC_YAML_UTIL_H
#define PC_YAML_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum pc_ykind { PC_Y_SCALAR = 1, PC_Y_SEQ, PC_Y_MAP } pc_ykind;

typedef struct pc_ynode pc_ynode;
struct pc_ynode {
  pc_ykind kind;
  bool plain;         /* scalar written without quotes: "", "~" and "null" then mean no value */
  uint32_t line, col; /* 1-based start position */
  char *text;         /* scalar: NUL-terminated (may hold earlier NULs: see len) */
  size_t len;         /* scalar: bytes in text */
  pc_ynode **items;   /* sequence: items; mapping: key, value, key, value, ... */
  size_t n_items;     /* mapping: twice the number of pairs */
  size_t cap;
};

typedef struct pc_ydoc pc_ydoc;

typedef struct pc_ylimits {
  size_t max_depth; /* collections nested deeper than this are refused */
  size_t max_nodes; /* scalars + collections */
  size_t max_anchors;
  size_t max_aliases; /* each alias looks its anchor up: bounded so lookups stay cheap */
} pc_ylimits;

/* Where and why the text could not be read as YAML. */
typedef struct pc_yerror {
  uint32_t line, col; /* 1-based */
  char msg[256];
} pc_yerror;

/* Parses text[0..len) into *out. Returns 0, PROFILIS_EINVAL (syntax error or a limit: *err
 * says where and why) or PROFILIS_ENOMEM. An empty stream gives a document whose root is NULL. */
int pc_ydoc_parse(const char *text, size_t len, const pc_ylimits *lim, pc_ydoc **out,
                  pc_yerror *err);
/* The top node, or NULL for an empty stream. */
const pc_ynode *pc_ydoc_root(const pc_ydoc *d);
void pc_ydoc_free(pc_ydoc *d);

/* True for a missing value: a plain empty, "~" or "null" scalar. */
bool pc_ynode_is_null(const pc_ynode *n);

/* ---- scalar syntax ---- */

typedef struct pc_yunit {
  const char *name;
  uint64_t mult; /* in base units */
} pc_yunit;

/* ns, us, ms, s, m, h (base unit: nanosecond), ended by a NULL name. */
extern const pc_yunit pc_yunits_duration[];
/* B, KiB, MiB, GiB, TiB, KB, kB, MB, GB, TB (base unit: byte), ended by a NULL name. */
extern const pc_yunit pc_yunits_size[];

/* Parses "<digits>[.<digits>][ ]<unit>" (e.g. "1.5s", "16MiB") into base units, exactly: a
 * value that is not a whole number of base units, negative, too large for 64 bits or with an
 * unknown unit is refused. Without a unit the number is in base units, unless need_unit (then
 * only 0 may go without one). `example` completes "expected ..." messages. Returns 0, or
 * PROFILIS_EINVAL with the reason in why. */
int pc_yquantity(const char *s, size_t len, const pc_yunit *units, bool need_unit,
                 const char *example, uint64_t *out, char *why, size_t cap);

struct pf_buf;
/* Appends s[0..len) to out (NUL-terminated, the NUL not counted) with each ${env:NAME} replaced
 * by the variable's value and "$$" by "$"; substituted text is not scanned again. At most
 * max_out bytes result. Returns 0, PROFILIS_EINVAL (unset variable, malformed reference, too
 * long: why says which) or PROFILIS_ENOMEM. */
int pc_yexpand_env(const char *s, size_t len, size_t max_out, struct pf_buf *out, char *why,
                   size_t cap);

/* Copies s[0..len) into buf for a message: unprintable bytes become '?', long text ends in
 * "...". Returns buf. */
const char *pc_yprintable(const char *s, size_t len, char *buf, size_t cap);

#endif
