/* config/yamldoc: reads a configuration file's one YAML document (libyaml's document API),
 * for both configurations, somirrord.yaml (config.c) and task.yaml (task/taskconf.c), with the
 * limits a configuration needs and a YAML library does not set, and the lookup of a key given
 * twice (task.yaml's; config.c notes where each of its keys was first). */
#ifndef SOMIRROR_CONFIG_YAMLDOC_H
#define SOMIRROR_CONFIG_YAMLDOC_H

#include <stddef.h>
#include <stdio.h>
#include <yaml.h>

/* No configuration nests deeper, or needs more aliases (each one walks its anchor's node
 * again: a few aliased mappings would otherwise be read millions of times). */
#define YAMLDOC_NESTING_MAX 32
#define YAMLDOC_ALIASES_MAX 64

/* Why a file was not read: the message, and where in the file when known (has_mark). */
struct yamldoc_error {
    char message[256];
    int has_mark;
    yaml_mark_t mark;
};

/* Opens path for reading if it is a regular file, without blocking on a FIFO. NULL with err. */
FILE *yamldoc_open(const char *path, struct yamldoc_error *err);

/* Reads path's one document into doc (to be freed with yaml_document_delete; an empty file
 * gives a document with no root node). The file must be a regular file (opened without
 * blocking: a FIFO would hold the reader until something writes to it), nest no deeper than
 * YAMLDOC_NESTING_MAX, hold at most YAMLDOC_ALIASES_MAX aliases and one document, and tag
 * nodes with none but the core schema's tags (!!str, !!int, ...). 0, or -1 with err. */
int yamldoc_load(const char *path, yaml_document_t *doc, struct yamldoc_error *err);
/* The key node before pair in the mapping map with the scalar key name (a key given twice), or
 * NULL. */
yaml_node_t *yamldoc_earlier_key(yaml_document_t *doc, const yaml_node_t *map,
                                 const yaml_node_pair_t *pair, const char *name);

#endif
