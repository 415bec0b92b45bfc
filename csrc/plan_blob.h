/*
 * plan_blob.h: a struct sbx_plan as one flat, position-independent byte string.
 *
 * Why: a pre-made sandbox execs the small shell program (csrc/sandbox_shell.c)
 * right after its clone, so it stops being a copy-on-write copy of the
 * supervisor's memory; the plan must then travel to it as bytes.  The blob is
 * the struct itself, with every pointer replaced by (offset + 1) into the blob
 * (0 stays NULL), followed by the pointed-to data.
 *
 * Every pointer field of struct sbx_plan (and struct sbx_op) must be handled
 * in plan_blob.c: a field added to the struct and not there would reach the
 * shell as a meaningless number (tests/unit/test_plan_blob.py fails first).
 */
#ifndef SBX_PLAN_BLOB_H
#define SBX_PLAN_BLOB_H
#include <stddef.h>
/* Include after sandbox_core.h (the cffi cdef, which can have no include guard). */

#define SBX_PLAN_BLOB_MAX (4u << 20)   /* far above any real plan (ops, env, BPF) */

/* The descriptors the shell program starts with (0-2 are stdio, as before). */
#define SBX_SHELL_FD_ERROR 3     /* error pipe (write end) */
#define SBX_SHELL_FD_CONTROL 4   /* launch socket, when deferred_launch */
#define SBX_SHELL_FD_PLAN 5      /* read end of a pipe holding the packed plan */
#define SBX_SHELL_FD_INIT 6      /* the init program, when init */
#define SBX_SHELL_FD_CGROUP 7    /* cgroup.procs files (v1), n_cgroup_procs_fds of them */
#define SBX_SHELL_MAX_CGROUP_FDS 16

/* sbx_plan_pack / sbx_plan_unpack are declared in sandbox_core.h (the cdef:
 * tests round-trip and fuzz them through cffi). */

#endif
