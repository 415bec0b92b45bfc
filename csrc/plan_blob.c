/* plan_blob.c: see plan_blob.h.  Packing runs in the supervisor (it may
 * allocate); unpacking runs in the shell program before any setup step. */
#include "sbx_sys.h"
#include "sandbox_core.h"
#include "plan_blob.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>

struct writer {
    char *buf;
    size_t cap, len;
};

/* Append n bytes aligned to `align`; returns the field value (offset + 1). */
static uintptr_t put(struct writer *w, const void *data, size_t n, size_t align)
{
    size_t at = (w->len + align - 1) & ~(align - 1);
    if (w->buf && data && at + n <= w->cap && n)   /* data NULL: reserve only */
        memcpy(w->buf + at, data, n);
    w->len = at + n;
    return (uintptr_t)at + 1;
}

static uintptr_t put_str(struct writer *w, const char *s)
{
    return s ? put(w, s, strlen(s) + 1, 1) : 0;
}

/* A NULL-terminated (n < 0) or counted (n >= 0) array of strings, stored as
 * count + 1 slots (NULL-terminated either way), then the strings. */
static uintptr_t put_strv(struct writer *w, const char *const *v, int n)
{
    uintptr_t at, s;
    size_t slots_len;
    int count = 0, i;
    if (!v)
        return 0;
    if (n < 0)
        while (v[count])
            count++;
    else
        count = n;
    slots_len = sizeof(uintptr_t) * (size_t)(count + 1);
    at = put(w, NULL, slots_len, sizeof(uintptr_t));
    for (i = 0; i <= count; i++) {
        s = i < count ? put_str(w, v[i]) : 0;
        if (w->buf && at - 1 + slots_len <= w->cap)
            memcpy(w->buf + (at - 1) + sizeof s * (size_t)i, &s, sizeof s);
    }
    return at;
}

size_t sbx_plan_pack(const struct sbx_plan *p, char *buf, size_t cap)
{
    struct writer w = {buf, cap, 0};
    struct sbx_plan copy = *p;
    uintptr_t ops_at = 0;
    int i;

    put(&w, NULL, sizeof copy, 8);   /* the struct itself, written last */
    copy.cgroup_procs_fds = (const int *)put(&w, p->cgroup_procs_fds,
                                             sizeof(int) * (size_t)(p->cgroup_procs_fds ? p->n_cgroup_procs_fds : 0), 8);
    if (!p->cgroup_procs_fds)
        copy.cgroup_procs_fds = NULL;
    copy.staging_dir = (const char *)put_str(&w, p->staging_dir);
    copy.root_data = (const char *)put_str(&w, p->root_data);
    if (p->ops && p->n_ops > 0) {
        ops_at = put(&w, NULL, sizeof(struct sbx_op) * (size_t)p->n_ops, 8);
        for (i = 0; i < p->n_ops; i++) {
            struct sbx_op op = p->ops[i];
            op.source = (const char *)put_str(&w, p->ops[i].source);
            op.path = (const char *)put_str(&w, p->ops[i].path);
            op.fstype = (const char *)put_str(&w, p->ops[i].fstype);
            op.data = NULL;
            if (p->ops[i].data) {   /* data_len bytes, then a NUL of our own */
                op.data = (const char *)put(&w, p->ops[i].data, p->ops[i].data_len, 1);
                put(&w, "", 1, 1);
            }
            if (w.buf && ops_at - 1 + sizeof op * (size_t)p->n_ops <= w.cap)
                memcpy(w.buf + (ops_at - 1) + sizeof op * (size_t)i, &op, sizeof op);
        }
    }
    copy.ops = (const struct sbx_op *)ops_at;
    copy.ro_paths = (const char *const *)put_strv(&w, p->ro_paths, p->n_ro_paths);
    copy.hostname = (const char *)put_str(&w, p->hostname);
    copy.rlimits = p->rlimits ? (const struct sbx_rlimit *)put(&w, p->rlimits,
                                                              sizeof(struct sbx_rlimit) * (size_t)p->n_rlimits, 8)
                              : NULL;
    copy.fd_map = p->fd_map ? (const int *)put(&w, p->fd_map, sizeof(int) * (size_t)p->n_fd_map, 8) : NULL;
    copy.cwd = (const char *)put_str(&w, p->cwd);
    copy.bpf = p->bpf ? (const unsigned char *)put(&w, p->bpf, p->bpf_len, 8) : NULL;
    copy.exec_paths = (const char *const *)put_strv(&w, p->exec_paths, p->n_exec_paths);
    copy.argv = (const char *const *)put_strv(&w, p->argv, -1);
    copy.envp = (const char *const *)put_strv(&w, p->envp, -1);
    if (w.buf && sizeof copy <= w.cap)
        memcpy(w.buf, &copy, sizeof copy);
    return w.len;
}

/* -- unpacking: trust nothing about the blob's insides ----------------------- */

struct reader {
    char *blob;
    size_t len;
    int bad;
};

/* The pointer for field value v that must have `size` bytes behind it. */
static void *at(struct reader *r, uintptr_t v, size_t size)
{
    if (v == 0)
        return NULL;
    if (v - 1 > r->len || size > r->len - (v - 1)) {
        r->bad = 1;
        return NULL;
    }
    return r->blob + (v - 1);
}

static const char *str_at(struct reader *r, uintptr_t v)
{
    const char *s = at(r, v, 1);
    if (s && !memchr(s, '\0', r->len - (size_t)(s - r->blob)))
        r->bad = 1;
    return r->bad ? NULL : s;
}

static int count_ok(struct reader *r, int n, size_t each)
{
    if (n < 0 || (size_t)n > r->len / (each ? each : 1)) {
        r->bad = 1;
        return 0;
    }
    return 1;
}

/* A NULL-terminated string array, each slot fixed up in place; `want` >= 0:
 * it must hold exactly that many strings. */
static const char *const *strv_at(struct reader *r, uintptr_t v, int want)
{
    uintptr_t *slots;
    size_t i, max;
    if (v == 0) {
        if (want > 0)
            r->bad = 1;
        return NULL;
    }
    slots = at(r, v, sizeof(uintptr_t));
    if (!slots || ((uintptr_t)slots & (sizeof(uintptr_t) - 1))) {
        r->bad = 1;
        return NULL;
    }
    max = (r->len - (size_t)((char *)slots - r->blob)) / sizeof(uintptr_t);
    for (i = 0; i < max && slots[i]; i++)
        slots[i] = (uintptr_t)str_at(r, slots[i]);
    if (i == max || r->bad || (want >= 0 && i != (size_t)want)) {
        r->bad = 1;
        return NULL;
    }
    return (const char *const *)slots;
}

struct sbx_plan *sbx_plan_unpack(char *blob, size_t len)
{
    struct reader r = {blob, len, 0};
    struct sbx_plan *p = (struct sbx_plan *)blob;
    struct sbx_op *ops;
    int i;

    if (len < sizeof *p || ((uintptr_t)blob & 7)) {
        errno = EINVAL;
        return NULL;
    }
    if (count_ok(&r, p->n_cgroup_procs_fds, sizeof(int)))
        p->cgroup_procs_fds = at(&r, (uintptr_t)p->cgroup_procs_fds, sizeof(int) * (size_t)p->n_cgroup_procs_fds);
    p->staging_dir = str_at(&r, (uintptr_t)p->staging_dir);
    p->root_data = str_at(&r, (uintptr_t)p->root_data);
    ops = NULL;
    if (count_ok(&r, p->n_ops, sizeof *ops))
        ops = at(&r, (uintptr_t)p->ops, sizeof *ops * (size_t)p->n_ops);
    for (i = 0; ops && !r.bad && i < p->n_ops; i++) {
        ops[i].source = str_at(&r, (uintptr_t)ops[i].source);
        ops[i].path = str_at(&r, (uintptr_t)ops[i].path);
        ops[i].fstype = str_at(&r, (uintptr_t)ops[i].fstype);
        ops[i].data = ops[i].data ? at(&r, (uintptr_t)ops[i].data, ops[i].data_len) : NULL;
    }
    p->ops = ops;
    p->ro_paths = strv_at(&r, (uintptr_t)p->ro_paths, p->n_ro_paths);
    p->hostname = str_at(&r, (uintptr_t)p->hostname);
    if (count_ok(&r, p->n_rlimits, sizeof(struct sbx_rlimit)))
        p->rlimits = at(&r, (uintptr_t)p->rlimits, sizeof(struct sbx_rlimit) * (size_t)p->n_rlimits);
    if (count_ok(&r, p->n_fd_map, sizeof(int)))
        p->fd_map = at(&r, (uintptr_t)p->fd_map, sizeof(int) * (size_t)p->n_fd_map);
    p->cwd = str_at(&r, (uintptr_t)p->cwd);
    p->bpf = p->bpf_len <= len ? at(&r, (uintptr_t)p->bpf, p->bpf_len) : NULL;
    if (p->bpf_len > len)
        r.bad = 1;
    p->exec_paths = strv_at(&r, (uintptr_t)p->exec_paths, p->n_exec_paths);
    p->argv = strv_at(&r, (uintptr_t)p->argv, -1);
    p->envp = strv_at(&r, (uintptr_t)p->envp, -1);
    /* A count without its array would send the setup through NULL. */
    if ((p->n_cgroup_procs_fds && !p->cgroup_procs_fds) || (p->n_ops && !p->ops) || (p->n_rlimits && !p->rlimits)
        || (p->n_fd_map && !p->fd_map) || (p->bpf_len && !p->bpf))
        r.bad = 1;
    for (i = 0; ops && !r.bad && i < p->n_ops; i++)
        if (ops[i].data_len && !ops[i].data)
            r.bad = 1;
    if (r.bad) {
        errno = EINVAL;
        return NULL;
    }
    return p;
}
