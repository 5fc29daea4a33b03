/* config/yamldoc: see yamldoc.h. Owns nothing past a call: the document goes to the caller. */
#include "config/yamldoc.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/fdio.h"

__attribute__((format(printf, 3, 4)))
static int fail(struct yamldoc_error *err, const yaml_mark_t *mark, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof(err->message), fmt, ap);
    va_end(ap);
    err->has_mark = mark != NULL;
    if (mark)
        err->mark = *mark;
    return -1;
}

/* Where byte offset of file is, as a mark (libyaml gives a reader error, such as bytes that are
 * not UTF-8, no mark, only the offset), counted as libyaml counts: lines end at LF, CR LF or a
 * CR alone; columns are characters; a byte order mark is none. The file is read again. */
static yaml_mark_t mark_of_offset(FILE *file, size_t offset)
{
    yaml_mark_t mark = {.index = offset};
    unsigned char head[3];
    rewind(file);
    size_t i = fread(head, 1, sizeof(head), file);
    int bom = i == sizeof(head) && head[0] == 0xef && head[1] == 0xbb && head[2] == 0xbf;
    if (!bom) {   /* (with one, counting starts after it) */
        i = 0;
        rewind(file);
    }
    for (int previous = EOF; i < offset; i++) {
        int c = getc(file);
        if (c == EOF)
            break;
        if (c == '\n' && previous == '\r') {
            /* the CR before it ended the line */
        } else if (c == '\n' || c == '\r') {
            mark.line++;
            mark.column = 0;
        } else if ((c & 0xc0) != 0x80) {   /* a character's first byte */
            mark.column++;
        }
        previous = c;
    }
    return mark;
}

static int parser_failed(struct yamldoc_error *err, const yaml_parser_t *parser, FILE *file)
{
    const char *problem = parser->problem ? parser->problem : "cannot parse";
    if (parser->error == YAML_READER_ERROR) {
        yaml_mark_t at = mark_of_offset(file, parser->problem_offset);
        return fail(err, &at, "YAML syntax error: %s (byte %zu)", problem, parser->problem_offset);
    }
    if (parser->context)
        return fail(err, &parser->problem_mark, "YAML syntax error: %s (%s)", problem, parser->context);
    return fail(err, &parser->problem_mark, "YAML syntax error: %s", problem);
}

FILE *yamldoc_open(const char *path, struct yamldoc_error *err)
{
    const char *why;
    FILE *file = fopen_regular(path, &why);
    if (!file)
        fail(err, NULL, "cannot open: %s", why);
    return file;
}

/* The tag an event gives its node explicitly (!!binary, !local), or NULL. */
static const char *explicit_tag(const yaml_event_t *event)
{
    const yaml_char_t *tag = event->type == YAML_SCALAR_EVENT           ? event->data.scalar.tag
                             : event->type == YAML_SEQUENCE_START_EVENT ? event->data.sequence_start.tag
                             : event->type == YAML_MAPPING_START_EVENT  ? event->data.mapping_start.tag
                                                                        : NULL;
    return (const char *)tag;
}

/* Whether tag is one of the YAML core schema's, which say no more than the text itself does:
 * a value is read as its text, so !!binary's base64 or a local tag's meaning would be lost. */
static int core_tag(const char *tag)
{
    static const char *const core[] = {YAML_STR_TAG, YAML_INT_TAG,      YAML_FLOAT_TAG, YAML_BOOL_TAG,
                                       YAML_NULL_TAG, YAML_SEQ_TAG, YAML_MAP_TAG};
    for (size_t i = 0; i < sizeof(core) / sizeof(core[0]); i++)
        if (strcmp(tag, core[i]) == 0)
            return 1;
    return 0;
}

/* A first pass over the events that measures nesting, counts aliases and refuses tags that
 * would be lost, before libyaml builds a document (its scanner costs grow with the square of
 * the nesting depth). YAML errors are left to the load. */
static int shape_ok(FILE *file, struct yamldoc_error *err)
{
    yaml_parser_t parser;
    yaml_event_t event;
    int depth = 0, aliases = 0, rc = 0, done = 0;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, file);
    while (!done && yaml_parser_parse(&parser, &event)) {
        if (event.type == YAML_SEQUENCE_START_EVENT || event.type == YAML_MAPPING_START_EVENT) {
            if (++depth > YAMLDOC_NESTING_MAX)
                rc = fail(err, &event.start_mark, "nesting deeper than %d levels", YAMLDOC_NESTING_MAX);
        } else if (event.type == YAML_SEQUENCE_END_EVENT || event.type == YAML_MAPPING_END_EVENT) {
            depth--;
        } else if (event.type == YAML_ALIAS_EVENT && ++aliases > YAMLDOC_ALIASES_MAX) {
            rc = fail(err, &event.start_mark, "more than %d aliases (*name): a configuration needs "
                      "a few at most", YAMLDOC_ALIASES_MAX);
        }
        const char *tag = explicit_tag(&event);
        static const char yaml_tags[] = "tag:yaml.org,2002:";   /* written !!name */
        int short_form = tag && strncmp(tag, yaml_tags, sizeof(yaml_tags) - 1) == 0;
        if (rc == 0 && tag && !core_tag(tag))
            rc = fail(err, &event.start_mark, "the YAML tag %s%.80s is not supported (values are read "
                      "as their text; only the core schema's tags, such as !!str, may be written)",
                      short_form ? "!!" : "", short_form ? tag + sizeof(yaml_tags) - 1 : tag);
        done = rc != 0 || event.type == YAML_STREAM_END_EVENT;
        yaml_event_delete(&event);
    }
    yaml_parser_delete(&parser);
    rewind(file);
    return rc;
}

static int load_one(FILE *file, yaml_document_t *doc, struct yamldoc_error *err)
{
    yaml_parser_t parser;
    yaml_document_t extra;
    int rc = -1;
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, file);
    if (!yaml_parser_load(&parser, doc)) {
        parser_failed(err, &parser, file);
    } else if (!yaml_parser_load(&parser, &extra)) {
        parser_failed(err, &parser, file);
        yaml_document_delete(doc);
    } else {
        if (yaml_document_get_root_node(&extra)) {
            fail(err, &extra.start_mark, "expected one YAML document, got more");
            yaml_document_delete(doc);
        } else {
            rc = 0;
        }
        yaml_document_delete(&extra);
    }
    yaml_parser_delete(&parser);
    return rc;
}

int yamldoc_load(const char *path, yaml_document_t *doc, struct yamldoc_error *err)
{
    FILE *file = yamldoc_open(path, err);
    if (!file)
        return -1;
    int rc = shape_ok(file, err) == 0 ? load_one(file, doc, err) : -1;
    fclose(file);
    return rc;
}

yaml_node_t *yamldoc_earlier_key(yaml_document_t *doc, const yaml_node_t *map,
                                 const yaml_node_pair_t *pair, const char *name)
{
    for (const yaml_node_pair_t *p = map->data.mapping.pairs.start; p < pair; p++) {
        yaml_node_t *key = yaml_document_get_node(doc, p->key);
        if (key->type == YAML_SCALAR_NODE && strcmp((const char *)key->data.scalar.value, name) == 0)
            return key;
    }
    return NULL;
}
