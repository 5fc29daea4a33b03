/* master/master: somirrord's master process. It loads and checks the configuration and keys,
 * opens the listeners, creates the shared-memory registry, forks the workers and then only
 * supervises: reaps and respawns them (throttled), reloads on SIGHUP in a new generation,
 * stops on SIGTERM (graceful) or SIGINT/SIGQUIT (at once), reopens logs on SIGUSR1 and serves
 * the status socket. It never parses a request and never opens a mirror database.
 * In the registry the master writes only the generation, its own counters, worker slot
 * claims/releases and the lock words of workers it reaps. */
#ifndef SOMIRROR_MASTER_MASTER_H
#define SOMIRROR_MASTER_MASTER_H
#include <stddef.h>

struct master_options {
    const char *config_path;    /* -c, default SYSCONFDIR "/somirrord.yaml" */
    int foreground;             /* -f */
    int test_config;            /* -t */
    int show_version;           /* -v */
    int show_help;              /* -h */
};

/* Parses the command line. 0, or -1 with err (a usage error). */
int master_parse_args(int argc, char **argv, struct master_options *opts, char *err, size_t errlen);

/* The whole program; returns the exit status. */
int master_main(int argc, char **argv);

#endif
