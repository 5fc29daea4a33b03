/* ctl/commands: the status socket's commands (help, show, metrics, pause, resume, resync, reset,
 * reload), one function each, executed by the master for one command line. Reads the registry;
 * writes to it only operator request words and pause flags (shm/registry.h), and the pause
 * state file (ctl/statefile.h). */
#ifndef SOMIRROR_CTL_COMMANDS_H
#define SOMIRROR_CTL_COMMANDS_H
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "common/buf.h"
#include "config/config.h"
#include "shm/registry.h"

/* Longest command line, the final newline included. */
#define CTL_LINE_MAX 4096

struct ctl_context {
    struct registry *reg;
    const struct config *cfg;           /* current config (config/config.h) */
    pid_t pid; int64_t started_ms; const char *version;   /* started_ms: monotonic */
    uint32_t generation; int workers;
    const char *const *restart_required; size_t nrestart;   /* settings changed that need a restart */
    /* "reload" command: 0, or -1 with why the reload failed */
    int (*reload)(void *arg, char *why, size_t whylen); void *reload_arg;
    const char *state_file;                 /* NULL: pauses and requests not persisted */
};

/* Executes one command line; appends the whole answer to out. Returns 0, or 1 for an error
 * answer (a single line starting with "error: "). */
int ctl_execute(struct ctl_context *ctx, const char *line, size_t len, struct buf *out);

#endif
