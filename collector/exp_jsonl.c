/* The collector's JSONL exporter (pc_jsonl_exporter_new): each span as one JSON line, or with
 * format otlp one OTLP/JSON ExportTraceServiceRequest per batch per file. The path may hold
 * ${tenant}; each distinct path is an open file (at most 256, least recently used closed) with
 * a pending buffer: a batch is rendered there and written before the export returns, so what
 * the pipeline counts as sent is in the file (the rest of a partly written batch is retried
 * every flush interval). A large batch of span lines is written as it is rendered, in pieces of
 * about 256 KiB, so the buffer stays in the CPU's cache however large batch.size is.
 * Files rotate at line boundaries by size and age (spans.jsonl -> .1 -> .2 ..., the oldest
 * deleted). A batch none of whose bytes reached the file is taken back and its error returned;
 * one partly written stays pending and is finished later, so lines are never cut, nor repeated
 * unless a batch fails after part of it was written (out of memory, or another tenant's file
 * that cannot be opened) and a durable queue retries it.
 * Disk space is preallocated ahead of the lines (fallocate, the size kept) in steps growing from
 * 1 MiB to `preallocate`: the filesystem then reserves space once per step instead of page by
 * page on every write; what is left unused goes back when the file is rotated or closed. */
#define _GNU_SOURCE /* memrchr */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pc_exporter.h"
#include "pc_json_render.h"
#include "pf_log.h"
#include "profilis/common.h"

#define JX_DEFAULT_PATH "./profilis-data/spans.jsonl"
#define JX_MAX_OPEN 256
#define JX_PENDING_MAX (16u << 20) /* unwritten bytes per file before batches are refused */
#define JX_KEEP_BUF (4u << 20)     /* a larger pending buffer is released once written */
#define JX_PREALLOC_MIN (1u << 20) /* the first preallocation step of a file */
#define JX_PIECE (256u << 10)      /* rendered bytes written before the rest of a batch */

typedef struct jfile {
  char *path;
  int fd;       /* -1 while closed (a rotation failed to reopen, or not opened yet) */
  bool regular; /* rotation applies to regular files only */
  bool midline; /* a write stopped inside a line: finish it before rotating */
  bool unsynced;
  uint64_t size;       /* bytes in the current file */
  uint64_t alloc_end;  /* preallocated up to here (beyond size: the size is kept) */
  uint64_t alloc_step; /* the next preallocation, doubling up to the configured one */
  bool no_prealloc;    /* the filesystem refused: plain writes until the file is reopened */
  uint64_t born_ns;    /* when its first byte was written (age-based rotation) */
  uint64_t last_flush_ns, last_sync_ns, used;
  pf_buf pend; /* rendered lines; [0, head) are written */
  size_t head;
  uint64_t gen;   /* the export that touched it last */
  size_t mark;    /* pend.len before that export (0 once everything before is written) */
  bool committed; /* some of that export's bytes are in the file: it cannot be taken back */
  bool stalled;   /* a write failed during that export: the rest waits for its end */
  uint32_t n_rs;  /* OTLP format: ResourceSpans written into this export's line */
} jfile;

typedef struct jx_exporter {
  pc_exporter base; /* first: the pipeline sees only this */
  const char *tmpl; /* the path, maybe with ${tenant} */
  bool templated;
  jfile *files[JX_MAX_OPEN];
  size_t n_files;
  uint64_t gen, clock;
  pc_json_scratch js; /* rendering state reused across chunks */
  pf_ratelimit rl_write, rl_open, rl_lost;
} jx_exporter;

static uint64_t ms_ns(uint32_t ms) { return (uint64_t)ms * 1000000u; }

/* ---- files ---- */

static bool retryable_errno(int err) {
  switch (err) {
  case ENOSPC:
  case EDQUOT:
  case EAGAIN:
  case EINTR:
  case EIO:
  case EMFILE:
  case ENFILE:
  case ENOMEM:
  case EFBIG:
  case EBUSY:
    return true;
  default:
    return false;
  }
}

static int errno_code(int err) {
  return retryable_errno(err) ? PROFILIS_ERETRYABLE : PROFILIS_EPERMANENT;
}

/* Creates the directories above path. Returns 0 or an errno. */
static int make_parents(const char *path) {
  char dir[PATH_MAX];
  snprintf(dir, sizeof dir, "%s", path);
  char *slash = strrchr(dir, '/');
  if (!slash || slash == dir) return 0;
  *slash = '\0';
  for (char *p = dir + 1;; p++) {
    bool end = *p == '\0';
    if (*p == '/' || end) {
      *p = '\0';
      if (mkdir(dir, 0755) != 0 && errno != EEXIST) return errno;
      if (end) return 0;
      *p = '/';
    }
  }
}

static int file_open(jx_exporter *x, jfile *f) {
  int err = make_parents(f->path);
  if (!err) {
    f->fd = open(f->path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
    if (f->fd < 0) err = errno;
  }
  struct stat st;
  if (!err && fstat(f->fd, &st) != 0) err = errno;
  if (err) {
    if (f->fd >= 0) close(f->fd);
    f->fd = -1;
    pf_log_rl(&x->rl_open, PF_LOG_ERROR, "jsonl: cannot open %s: %s", f->path, strerror(err));
    return errno_code(err);
  }
  f->regular = S_ISREG(st.st_mode);
  f->size = (uint64_t)st.st_size;
  f->alloc_end = f->size;
  f->alloc_step = JX_PREALLOC_MIN;
  f->no_prealloc = false;
  /* space a previous run preallocated and could not give back (it was killed) */
  if (f->regular && (uint64_t)st.st_blocks * 512u >= f->size + JX_PREALLOC_MIN)
    (void)ftruncate(f->fd, st.st_size);
  f->midline = false;
  f->born_ns = pf_mono_ns(); /* an existing file's age counts from when it is opened */
  return 0;
}

static void file_sync(jx_exporter *x, jfile *f) {
  if (f->fd < 0 || !f->unsynced) return;
  if (fdatasync(f->fd) != 0 && errno != EINVAL) /* EINVAL: a device that cannot sync */
    pf_log_rl(&x->rl_write, PF_LOG_WARN, "jsonl: fsync of %s failed: %s", f->path, strerror(errno));
  f->unsynced = false;
  f->last_sync_ns = pf_mono_ns();
}

/* Reserves disk space for n more bytes when the current reservation ends before them: up to
 * one step past them, but not past the rotation size. A refusal (a filesystem without
 * fallocate, or too little space for a whole step) only means plain writes. */
static void file_prealloc(jx_exporter *x, jfile *f, size_t n) {
  uint64_t max_step = x->base.cfg->preallocate_bytes, need = f->size + n;
  if (!max_step || !f->regular || f->no_prealloc || need <= f->alloc_end) return;
  struct stat st; /* truncated from outside (copytruncate)? Reserve at the real end */
  if (fstat(f->fd, &st) == 0 && (uint64_t)st.st_size < f->size) {
    f->size = f->alloc_end = (uint64_t)st.st_size;
    need = f->size + n;
  }
  uint64_t step = f->alloc_step < max_step ? f->alloc_step : max_step;
  uint64_t end = need + step, rot = x->base.cfg->rotate_max_bytes;
  if (rot && end > rot) end = rot > need ? rot : need;
  if (fallocate(f->fd, FALLOC_FL_KEEP_SIZE, (off_t)f->size, (off_t)(end - f->size)) != 0) {
    f->no_prealloc = true;
    return;
  }
  f->alloc_end = end;
  if (f->alloc_step < max_step) f->alloc_step *= 2;
}

/* Gives back the space preallocated past the file's end, then closes it. */
static void file_close_fd(jfile *f) {
  if (f->fd < 0) return;
  struct stat st;
  if (f->alloc_end > f->size && fstat(f->fd, &st) == 0) (void)ftruncate(f->fd, st.st_size);
  close(f->fd);
  f->fd = -1;
}

/* spans.jsonl -> .1, .1 -> .2, ..., the last backup deleted; then a new file. */
static int file_rotate(jx_exporter *x, jfile *f) {
  const pc_exporter_cfg *cfg = x->base.cfg;
  if (cfg->fsync != PC_FSYNC_NEVER) file_sync(x, f);
  file_close_fd(f);
  char from[PATH_MAX + 16], to[PATH_MAX + 16];
  int rc = 0;
  if (cfg->max_backups == 0) {
    if (unlink(f->path) != 0 && errno != ENOENT) rc = errno;
  } else {
    snprintf(to, sizeof to, "%s.%u", f->path, cfg->max_backups);
    unlink(to);
    for (uint32_t k = cfg->max_backups - 1; k >= 1; k--) {
      snprintf(from, sizeof from, "%s.%u", f->path, k);
      snprintf(to, sizeof to, "%s.%u", f->path, k + 1);
      rename(from, to); /* a missing backup is fine */
    }
    snprintf(to, sizeof to, "%s.1", f->path);
    if (rename(f->path, to) != 0 && errno != ENOENT) rc = errno;
  }
  if (rc) {
    pf_log_rl(&x->rl_write, PF_LOG_ERROR, "jsonl: cannot rotate %s: %s", f->path, strerror(rc));
    return errno_code(rc);
  }
  return file_open(x, f);
}

/* When the file is due for rotation by age: PC_TICK_NONE without max_age, for a file that is not
 * regular, empty or ends mid-line. */
static uint64_t age_due_at(const jx_exporter *x, const jfile *f) {
  uint32_t max_age = x->base.cfg->rotate_max_age_ms;
  return max_age && f->regular && f->size > 0 && !f->midline ? f->born_ns + ms_ns(max_age)
                                                             : PC_TICK_NONE;
}

/* `now` may predate born_ns (taken before this batch's first write): not due then. */
static bool age_due(const jx_exporter *x, const jfile *f, uint64_t now) {
  return now >= age_due_at(x, f);
}

/* How many pending bytes go into the current file before a size rotation: whole lines that
 * fit; 0 = rotate first; a single line longer than the limit goes alone into a fresh file. */
static size_t bytes_this_file(const jx_exporter *x, const jfile *f, size_t n, bool *rotate) {
  uint64_t max = x->base.cfg->rotate_max_bytes;
  *rotate = false;
  if (!max || !f->regular || f->midline || f->size + n <= max) return n;
  const uint8_t *p = f->pend.p + f->head;
  size_t room = f->size < max ? (size_t)(max - f->size) : 0;
  const uint8_t *nl = room ? memrchr(p, '\n', room < n ? room : n) : NULL;
  if (nl) return (size_t)(nl - p) + 1;
  if (f->size > 0) {
    *rotate = true;
    return 0;
  }
  nl = memchr(p, '\n', n);
  return nl ? (size_t)(nl - p) + 1 : n;
}

/* Writes n pending bytes. Returns 0 or PROFILIS_ERETRYABLE / PROFILIS_EPERMANENT. */
static int write_out(jx_exporter *x, jfile *f, size_t n) {
  file_prealloc(x, f, n);
  while (n > 0) {
    ssize_t w = write(f->fd, f->pend.p + f->head, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) {
      int err = w < 0 ? errno : ENOSPC;
      pf_log_rl(&x->rl_write, PF_LOG_ERROR, "jsonl: write to %s failed: %s", f->path,
                strerror(err));
      return errno_code(err);
    }
    if (f->size == 0) f->born_ns = pf_mono_ns();
    f->head += (size_t)w;
    f->size += (uint64_t)w;
    n -= (size_t)w;
    f->midline = f->pend.p[f->head - 1] != '\n';
    f->unsynced = true;
  }
  return 0;
}

/* Rotates. When the fresh file is not empty (someone else writes there), rotating cannot help:
 * *may_rotate goes false so the caller stops rotating instead of looping. */
static int rotate_once(jx_exporter *x, jfile *f, bool *may_rotate) {
  int rc = file_rotate(x, f);
  if (!rc && f->size > 0) *may_rotate = false;
  return rc;
}

/* Writes everything pending, rotating on the way. Returns 0 or an export error code. */
static int file_flush(jx_exporter *x, jfile *f) {
  uint64_t now = pf_mono_ns();
  int rc = 0;
  bool may_rotate = true;
  while (!rc && f->head < f->pend.len) {
    if (f->fd < 0 && (rc = file_open(x, f))) break;
    if (may_rotate && age_due(x, f, now) && (rc = rotate_once(x, f, &may_rotate))) break;
    bool rotate = false;
    size_t n = f->pend.len - f->head;
    if (may_rotate) n = bytes_this_file(x, f, n, &rotate);
    if (rotate)
      rc = rotate_once(x, f, &may_rotate);
    else
      rc = write_out(x, f, n);
  }
  f->last_flush_ns = now;
  if (f->head > f->mark) f->committed = true;
  if (f->head == f->pend.len) {
    f->head = f->mark = 0;
    pf_buf_reset(&f->pend);
    if (f->pend.cap > JX_KEEP_BUF) pf_buf_free(&f->pend);
  }
  return rc;
}

static void file_close(jx_exporter *x, jfile *f) {
  if (f->gen == x->gen && f->n_rs && pf_buf_append(&f->pend, "]}\n", 3) != 0)
    f->pend.len = f->mark; /* an OTLP line still open (evicted mid-batch) is closed first */
  f->n_rs = 0;
  if (f->head < f->pend.len && file_flush(x, f) != 0)
    pf_log_rl(&x->rl_lost, PF_LOG_ERROR, "jsonl: %zu bytes of spans for %s lost: cannot write them",
              f->pend.len - f->head, f->path);
  if (x->base.cfg->fsync != PC_FSYNC_NEVER) file_sync(x, f);
  file_close_fd(f);
  pf_buf_free(&f->pend);
  free(f->path);
  free(f);
}

/* ---- paths ---- */

/* A tenant as a path component: [A-Za-z0-9._-] kept, anything else '_', never "." or "..",
 * "default" when empty. */
static void tenant_component(char *dst, size_t cap, const char *tenant) {
  if (!tenant[0]) {
    snprintf(dst, cap, "default");
    return;
  }
  size_t i = 0;
  for (; i < PC_TENANT_MAX && tenant[i] && i + 1 < cap; i++) {
    char c = tenant[i];
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-';
    dst[i] = ok ? c : '_';
  }
  dst[i] = '\0';
  if (strcmp(dst, ".") == 0 || strcmp(dst, "..") == 0) memset(dst, '_', i);
}

/* Returns 0 or PROFILIS_EPERMANENT when the path does not fit. */
static int resolve_path(const jx_exporter *x, const char *tenant, char *out, size_t cap) {
  char comp[PC_TENANT_MAX + 16];
  tenant_component(comp, sizeof comp, tenant);
  size_t o = 0;
  for (const char *p = x->tmpl; *p;) {
    const char *piece = p;
    size_t n = 1;
    if (strncmp(p, "${tenant}", 9) == 0)
      piece = comp, n = strlen(comp), p += 9;
    else
      p++;
    if (o + n >= cap) return PROFILIS_EPERMANENT;
    memcpy(out + o, piece, n);
    o += n;
  }
  out[o] = '\0';
  return 0;
}

/* Makes room for one more file by closing the least recently used one. */
static void evict_one(jx_exporter *x) {
  size_t victim = 0;
  for (size_t i = 1; i < x->n_files; i++)
    if (x->files[i]->used < x->files[victim]->used) victim = i;
  file_close(x, x->files[victim]);
  x->files[victim] = x->files[--x->n_files];
}

/* The file for a path, opened when new. Returns 0 or an export error code. */
static int file_get(jx_exporter *x, const char *path, jfile **out) {
  for (size_t i = 0; i < x->n_files; i++)
    if (strcmp(x->files[i]->path, path) == 0) {
      *out = x->files[i];
      (*out)->used = ++x->clock;
      return 0;
    }
  if (x->n_files == JX_MAX_OPEN) evict_one(x);
  jfile *f = calloc(1, sizeof *f);
  if (!f || !(f->path = strdup(path))) {
    free(f);
    return PROFILIS_ERETRYABLE;
  }
  f->fd = -1;
  int rc = file_open(x, f);
  if (rc) {
    free(f->path);
    free(f);
    return rc;
  }
  f->last_flush_ns = f->last_sync_ns = pf_mono_ns();
  f->used = ++x->clock;
  x->files[x->n_files++] = f;
  *out = f;
  return 0;
}

/* ---- export ---- */

/* Renders one chunk into its file's pending buffer, all of it or nothing. Span lines are
 * written once a piece's worth is pending; a failed write leaves the rest of the batch to the
 * export's end. */
static int add_chunk(jx_exporter *x, const pc_chunk *c) {
  char path[PATH_MAX];
  jfile *f;
  int rc = resolve_path(x, c->tenant, path, sizeof path);
  if (!rc) rc = file_get(x, path, &f);
  if (rc) return rc;
  if (f->gen != x->gen) {
    f->gen = x->gen;
    f->mark = f->pend.len;
    f->n_rs = 0;
    f->committed = f->stalled = false;
  }
  /* a batch partly in the file is finished whatever the backlog: it cannot be refused now */
  if (!f->committed && f->pend.len - f->head > JX_PENDING_MAX) {
    pf_log_rl(&x->rl_write, PF_LOG_WARN, "jsonl: %s is not keeping up; refusing a batch", f->path);
    return PROFILIS_ERETRYABLE;
  }
  size_t before = f->pend.len;
  if (!x->base.cfg->format_otlp) {
    rc = pc_json_span_lines(&x->js, c, &f->pend);
    if (!rc && !f->stalled && f->pend.len - f->head >= JX_PIECE) f->stalled = file_flush(x, f) != 0;
  } else if (pc_json_has_spans(c)) {
    /* One OTLP/JSON request per file per batch: opened by its first ResourceSpans. */
    rc = pf_buf_puts(&f->pend, f->n_rs ? "," : "{\"resourceSpans\":[");
    if (!rc) rc = pc_json_otlp_resource_spans(&x->js, c, &f->pend);
    if (!rc) f->n_rs++;
  }
  if (rc) f->pend.len = before;
  return rc ? PROFILIS_ERETRYABLE : 0;
}

/* When the file's written bytes are due for an fsync: at once with fsync: batch, flush_interval
 * after the last one with fsync: interval (a file opened by a rotation counts from its opening),
 * PC_TICK_NONE when nothing is unsynced or with fsync: never. */
static uint64_t sync_due_at(const jx_exporter *x, const jfile *f) {
  const pc_exporter_cfg *cfg = x->base.cfg;
  uint32_t every = cfg->flush_interval_ms ? cfg->flush_interval_ms : 1000;
  if (!f->unsynced) return PC_TICK_NONE;
  if (cfg->fsync == PC_FSYNC_BATCH) return 0;
  return cfg->fsync == PC_FSYNC_INTERVAL ? f->last_sync_ns + ms_ns(every) : PC_TICK_NONE;
}

static bool sync_due(const jx_exporter *x, const jfile *f, uint64_t now) {
  return now >= sync_due_at(x, f);
}

/* When pending bytes the disk did not take are retried. */
static uint64_t flush_due_at(const jx_exporter *x, const jfile *f) {
  return f->head < f->pend.len ? f->last_flush_ns + ms_ns(x->base.cfg->flush_interval_ms)
                               : PC_TICK_NONE;
}

/* Writes the rest of a touched file's batch. A failure takes the batch back if none of it was
 * written. */
static int finish_file(jx_exporter *x, jfile *f, uint64_t now) {
  if (x->base.cfg->format_otlp && f->n_rs && pf_buf_append(&f->pend, "]}\n", 3) != 0) {
    f->pend.len = f->mark;
    f->n_rs = 0;
    return PROFILIS_ERETRYABLE;
  }
  f->n_rs = 0;
  /* Every batch is written before the export returns (one write of up to batch.size lines):
   * only then may the pipeline count its spans as sent, and a full disk is a failed export,
   * counted, not bytes lost later in a buffer. */
  int rc = file_flush(x, f);
  if (rc && !f->committed) {
    f->pend.len = f->mark;
    return rc;
  }
  if (rc) /* partly written: the rest stays pending, finished by a later flush */
    pf_log_rl(&x->rl_write, PF_LOG_WARN, "jsonl: %s: batch partly written, the rest is kept",
              f->path);
  if (sync_due(x, f, now)) file_sync(x, f);
  return 0;
}

/* Takes back what this export added to every file it touched, but for files that already
 * hold part of it: there the whole chunks rendered so far are written, though the batch fails
 * (a durable queue retries it: at-least-once). Only a failure after the first piece can do
 * that: out of memory, or another tenant's file that cannot be opened. */
static void undo_batch(jx_exporter *x) {
  for (size_t i = 0; i < x->n_files; i++) {
    jfile *f = x->files[i];
    if (f->gen != x->gen) continue;
    f->n_rs = 0; /* no OTLP line is open any more */
    if (!f->committed) {
      f->pend.len = f->mark;
      continue;
    }
    pf_log_rl(&x->rl_write, PF_LOG_WARN, "jsonl: %s: part of a failed batch is in the file already",
              f->path);
    if (f->head < f->pend.len) (void)file_flush(x, f);
  }
}

static int jx_export(pc_exporter *e, pc_chunk *const *chunks, size_t n, const pf_deadline *dl,
                     uint64_t *rejected) {
  jx_exporter *x = (jx_exporter *)e;
  (void)dl; /* writes are local: nothing here waits */
  if (rejected) *rejected = 0;
  x->gen++;
  int rc = 0;
  for (size_t i = 0; i < n && !rc; i++) rc = add_chunk(x, chunks[i]);
  if (rc) {
    undo_batch(x);
    return rc;
  }
  uint64_t now = pf_mono_ns();
  for (size_t i = 0; i < x->n_files; i++) {
    if (x->files[i]->gen != x->gen) continue;
    int frc = finish_file(x, x->files[i], now);
    if (frc && !rc) rc = frc;
  }
  return rc;
}

static void jx_tick(pc_exporter *e) {
  jx_exporter *x = (jx_exporter *)e;
  uint64_t now = pf_mono_ns();
  for (size_t i = 0; i < x->n_files; i++) {
    jfile *f = x->files[i];
    if (now >= flush_due_at(x, f)) file_flush(x, f); /* a failure is logged; the bytes stay */
    if (f->head == f->pend.len && age_due(x, f, now)) file_rotate(x, f);
    if (sync_due(x, f, now)) file_sync(x, f);
  }
}

/* When jx_tick next has work: a flush retry of bytes the disk did not take, an fsync, a
 * rotation by age (once nothing is pending). Nothing while every file is written, synced and
 * young. */
static uint64_t jx_next_tick(pc_exporter *e) {
  jx_exporter *x = (jx_exporter *)e;
  uint64_t next = PC_TICK_NONE;
  for (size_t i = 0; i < x->n_files; i++) {
    const jfile *f = x->files[i];
    uint64_t at = f->head < f->pend.len ? flush_due_at(x, f) : age_due_at(x, f);
    uint64_t sync = sync_due_at(x, f);
    if (sync < at) at = sync;
    if (at < next) next = at;
  }
  return next;
}

static void jx_destroy(pc_exporter *e) {
  jx_exporter *x = (jx_exporter *)e;
  if (!x) return;
  for (size_t i = 0; i < x->n_files; i++) file_close(x, x->files[i]);
  pc_json_scratch_free(&x->js);
  free(x);
}

int pc_jsonl_exporter_new(pc_exporter **out, const pc_exporter_cfg *cfg) {
  *out = NULL;
  jx_exporter *x = calloc(1, sizeof *x);
  if (!x) return PROFILIS_ENOMEM;
  x->base.cfg = cfg;
  x->base.export_chunks = jx_export;
  x->base.tick = jx_tick;
  x->base.next_tick = jx_next_tick;
  x->base.destroy = jx_destroy;
  x->tmpl = cfg->path && *cfg->path ? cfg->path : JX_DEFAULT_PATH;
  x->templated = strstr(x->tmpl, "${tenant}") != NULL;
  if (!x->templated) { /* fail early: a directory that cannot be created stops the start */
    jfile *f;
    int rc = file_get(x, x->tmpl, &f);
    if (rc) {
      jx_destroy(&x->base);
      return PROFILIS_EIO;
    }
  }
  *out = &x->base;
  return 0;
}
