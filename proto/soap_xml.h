/* proto/soap_xml: the one-pass SOAP reader under both sides of proto/soap (internal to it).
 * It owns the libxml2 SAX2 parser and its hardening (no network, no DTD, no entities, errors kept
 * off stderr), the Envelope/Header/Body structure, and a small table-driven matcher: the shapes
 * of operation elements are described by static `struct shape` tables (in soap.c for requests,
 * soap_client.c for responses) whose handlers build the caller's structs. */
#ifndef SOMIRROR_PROTO_SOAP_XML_H
#define SOMIRROR_PROTO_SOAP_XML_H
#include <stddef.h>
#include <stdint.h>

#include "common/arena.h"
#include "common/buf.h"


struct soap_xml;

enum shape_content {
    SHAPE_CHILDREN,   /* element children only (whitespace between them ignored) */
    SHAPE_TEXT,       /* text, trimmed of surrounding XML whitespace */
    SHAPE_VERBATIM,   /* text taken exactly as sent (text, CDATA, whitespace) */
    SHAPE_EMPTY       /* no content (whitespace tolerated) */
};
enum shape_occurs { OCCURS_ONE, OCCURS_OPTIONAL, OCCURS_ANY, OCCURS_SOME };

/* Handlers return 0, or -1 on a shape error (say what with soap_xml_fail(), else the error is
 * "invalid <element>"). ctx is the caller's builder. */
typedef int (*shape_open_fn)(struct soap_xml *x, void *ctx);
typedef int (*shape_close_fn)(struct soap_xml *x, void *ctx, const char *text, size_t len);
typedef void (*shape_inner_fn)(void *ctx);

struct shape {
    const char *ns;                  /* namespace URI; NULL: unqualified */
    const char *name;                /* local name; NULL ends a children table */
    enum shape_content content;
    enum shape_occurs occurs;
    const char *label;               /* names the element in messages ("batch" -> "batch 2"),
                                        or NULL */
    int unordered;                   /* children may come in any order */
    const struct shape *children;    /* SHAPE_CHILDREN */
    shape_open_fn open;              /* after the start tag; may be NULL */
    shape_close_fn close;            /* at the end tag, with the text; may be NULL */
    shape_inner_fn inner_element;    /* SHAPE_TEXT: an element inside is told here and skipped,
                                        not a shape error; may be NULL */
    int read_after_error;            /* still read, and its close called, after a shape error
                                        elsewhere (what an answer before the body's fault
                                        needs) */
};

struct soap_xml_ops {
    /* A SOAP header block: the shape to read it with, or NULL to ignore it. */
    const struct shape *(*header_block)(void *ctx, const char *ns, const char *name);
    /* The index-th (1-based) element of Body: the shape to read it with, or NULL to skip it. */
    const struct shape *(*body_element)(void *ctx, const char *ns, const char *name,
                                        size_t index);
    /* Whether an unqualified element inside a shape that does not expect it is an error
     * (requests) or is skipped like a foreign one (responses). */
    int unqualified_is_error;
    /* Asked now and then (every so many elements, also after a shape error) whether the parse
     * is still wanted; nonzero ends it as soap_xml_stop does. May be NULL. */
    int (*cancelled)(void *ctx);
};

struct soap_xml_result {
    char env_error[512];     /* not XML, refused XML, or not a SOAP 1.1 envelope; "" if none */
    int out_of_memory;       /* env_error is libxml2 running out of memory, not the document */
    char shape_error[1024];  /* the first shape error, with its location; "" if none */
    size_t nbody;            /* elements in Body */
};

/* Reads a whole document. Returns 0, -1 when env_error is set, or 1 when a handler ended the
 * parse early (soap_xml_stop). */
int soap_xml_parse(const char *doc, size_t len, const struct soap_xml_ops *ops, void *ctx,
                   struct soap_xml_result *res);

/* For handlers: records a shape error prefixed with where it is ("RowData: batch 2: row 5: "). */
void soap_xml_fail(struct soap_xml *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* soap_xml_fail for a value that does not parse: what "<text>" is not <expected>, the text cut
 * at 32 bytes. Returns -1. */
int soap_xml_fail_value(struct soap_xml *x, const char *what, const char *text, size_t len,
                        const char *expected);
/* Whether c is XML whitespace (space, tab, line feed, carriage return). */
int soap_xml_is_space(char c);

/* Whether no start tag of body can hold more than max attributes (namespace declarations
 * included), found without parsing: libxml2 2.9 compares each attribute of a tag with every
 * one before it, so a tag of n attributes costs n^2/2 comparisons (200,000 in a 2.4 MB body
 * held a worker 23 s), before anything, the token included, is checked. Counts the '=' of
 * each tag outside its quoted values, skipping text, comments, CDATA sections and processing
 * instructions. */
#define SOAP_XML_ATTRIBUTES_MAX 1024
int soap_xml_attributes_bounded(const char *body, size_t len, size_t max);
/* For handlers: how many bytes of the document are read, or SIZE_MAX when libxml2 reads it
 * through an encoding conversion (its offsets are then not the document's). In an open handler
 * that is up to the start tag's closing '>' or "/>" (libxml2 reads it after telling); in a close
 * handler, through the end tag. */
size_t soap_xml_offset(const struct soap_xml *x);
/* For handlers: ends the parse after this handler, without an error (soap_xml_parse returns 1;
 * nothing of the document after this point is read or checked). */
void soap_xml_stop(struct soap_xml *x);
/* The value of an unqualified attribute of the element being opened, or NULL when absent;
 * valid until the next call. */
const char *soap_xml_attribute(struct soap_xml *x, const char *name, size_t *len);

/* Length (1-4) of the valid UTF-8 sequence of one XML 1.0 character at s, or 0 when the bytes
 * there are not one (invalid UTF-8, C0 control other than tab/newline/CR, U+FFFE/FFFF). */
size_t soap_xml_char_len(const char *s, size_t len);
/* Decimal integers: "0".."9223372036854775807" (a count or position), and optionally
 * negative ones; no sign (or only '-'), no spaces. Return 0, or -1. */
int soap_xml_parse_count(const char *s, size_t len, int64_t *out);
int soap_xml_parse_int64(const char *s, size_t len, int64_t *out);

/* Shape table entries in SOAP_NS: text leaves and elements with children. */
#define SHAPE_LEAF(name_, content_, occurs_, label_, close_) \
    {.ns = SOAP_NS, .name = (name_), .content = (content_), .occurs = (occurs_), \
     .label = (label_), .close = (close_)}
#define SHAPE_NODE(name_, occurs_, label_, children_, open_, close_) \
    {.ns = SOAP_NS, .name = (name_), .content = SHAPE_CHILDREN, .occurs = (occurs_), \
     .label = (label_), .children = (children_), .open = (open_), .close = (close_)}
#define SHAPES_END {.name = NULL}

int soap_xml_ns_is(const char *ns, const char *want);   /* ns may be NULL */

/* Writing: the start every envelope shares (the XML declaration, then the Envelope tag). */
#define SOAP_XML_ENVELOPE_OPEN \
    "<?xml version=\"1.0\" encoding=\"utf-8\"?>" \
    "<s:Envelope xmlns:s=\"" SOAP_ENV_NS "\">"
#define SOAP_XML_ENVELOPE_CLOSE "</s:Envelope>"
/* Escaped text; bytes XML cannot carry (invalid UTF-8, most C0 controls) become U+FFFD, so
 * that whatever a message quotes, the document stays well-formed. */
void soap_xml_put_text(struct buf *out, const char *s, size_t len);
/* <name>text</name>, or <name/> when text is NULL or empty. */
void soap_xml_put_element(struct buf *out, const char *name, const char *text, size_t len);
void soap_xml_put_element_str(struct buf *out, const char *name, const char *text);
void soap_xml_put_element_i64(struct buf *out, const char *name, int64_t value);

/* A growable array for the lists a handler builds (rows, values...): grown geometrically on
 * the heap, reused from one list to the next, and copied to the arena, exactly sized, when the
 * list ends. */
struct soap_vec {
    void *items;
    size_t len, cap, size;
};
#define SOAP_VEC_INIT(type) {NULL, 0, 0, sizeof(type)}
void *soap_vec_push(struct soap_vec *v);          /* a new zeroed last item */
void *soap_vec_last(const struct soap_vec *v);    /* NULL when empty */
/* The items, copied into a (NULL when none); *n gets their number; v is left empty. */
void *soap_vec_finish(struct soap_vec *v, struct arena *a, size_t *n);
void soap_vec_free(struct soap_vec *v);

#endif
