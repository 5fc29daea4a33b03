/* proto/soap_xml: the one-pass SOAP reader shared by both sides of proto/soap. Owns the
 * libxml2 SAX2 parser (one per call, never shared) and its callbacks, the
 * Envelope/Header/Body structure and the table-driven shape matcher; see soap_xml.h. */
#include "proto/soap_xml.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <libxml/SAX2.h>
#include <libxml/parser.h>
#include <libxml/parserInternals.h>

#include "common/buf.h"
#include "common/utf8.h"
#include "common/xalloc.h"
#include "proto/soap.h"

/* Envelope, Body, the operation element and at most six levels of operation shapes. */
#define FRAMES_MAX 16
#define NO_CHILD ((size_t)-1)
#define SHOWN_VALUE_MAX 32   /* bytes of a bad value quoted in a shape error */
#define CANCEL_POLL 1024     /* elements between two calls of ops->cancelled */

enum frame_kind { FRAME_ENVELOPE, FRAME_HEADER, FRAME_BODY, FRAME_SHAPE };

struct frame {
    enum frame_kind kind;
    const struct shape *shape;   /* FRAME_SHAPE */
    size_t pos;                  /* children[pos] is the child matched last (ordered shapes) */
    size_t count;                /* how many times children[pos] matched */
    size_t nchildren;            /* children matched in all */
    size_t ordinal;              /* 1-based place among like siblings (for messages) */
};

/* One answer of find_child, for child_of. */
struct child_memo {
    const struct shape *parent;   /* NULL: empty */
    const char *ns, *name;
    size_t child;
};
#define CHILD_MEMO 16

struct soap_xml {
    xmlParserCtxtPtr parser;
    const struct soap_xml_ops *ops;
    void *ctx;
    struct soap_xml_result *res;
    struct frame frames[FRAMES_MAX];
    size_t depth;
    size_t skip;            /* > 0: inside an ignored subtree, this many levels deep */
    int seen_header, seen_body;
    int stopped;            /* a handler ended the parse (soap_xml_stop) */
    struct buf text;        /* character data of the open text element */
    struct buf attr;        /* the attribute value handed out last */
    const xmlChar **attrs;  /* the start tag being handled: nattrs times (localname, prefix,
                               URI, value, end); NULL outside startElementNs */
    int nattrs;
    size_t open_elements;   /* all of them, skipped ones too (see on_start_element) */
    size_t started;         /* elements started, for CANCEL_POLL */
    struct child_memo child_memo[CHILD_MEMO];   /* see child_of */
};

/* Where the construct opened at p ends (just past close), or NULL when it does not. */
static const char *past(const char *p, const char *end, const char *close)
{
    size_t n = strlen(close);
    const char *at = memmem(p, (size_t)(end - p), close, n);
    return at ? at + n : NULL;
}

static int opens(const char *p, const char *end, const char *prefix)
{
    size_t n = strlen(prefix);
    return (size_t)(end - p) >= n && memcmp(p, prefix, n) == 0;
}

/* The end of what opens at p when it is a comment, a CDATA section or a processing
 * instruction, which hold no attributes; NULL for a tag. */
static const char *unparsed_close(const char *p, const char *end)
{
    if (p + 1 == end || (p[1] != '!' && p[1] != '?'))
        return NULL;
    return opens(p, end, "<!--")        ? "-->"
           : opens(p, end, "<![CDATA[") ? "]]>"
           : p[1] == '?'                ? "?>"
                                        : NULL;
}

/* The first comment, CDATA section or processing instruction that opens in [p, to), or NULL. */
static const char *first_unparsed(const char *p, const char *to)
{
    const char *first = NULL;
    for (const char *mark = "!?"; *mark; mark++)
        for (const char *q = p + 1; q < to && (q = memchr(q, *mark, (size_t)(to - q))); q++)
            if (q[-1] == '<' && unparsed_close(q - 1, to + 1)) {
                if (!first || q - 1 < first)
                    first = q - 1;
                break;
            }
    return first;
}

/* From one '=' to the next (a body holds few: a RowData row has one), back to the tag it may
 * be in, then that tag's '=' counted to its end (a quoted value may hold '>' or '=', never a
 * '<' nor its quote). Text costs a few memchr-like passes, not a visit of every tag. */
int soap_xml_attributes_bounded(const char *body, size_t len, size_t max)
{
    const char *p = body, *end = body + len, *eq;
    while (p < end && (eq = memchr(p, '=', (size_t)(end - p)))) {
        const char *unparsed = first_unparsed(p, eq);
        if (unparsed) {
            p = past(unparsed, end, unparsed_close(unparsed, end));
            if (!p)
                return 1;   /* not well-formed: the parser says so */
            continue;
        }
        const char *open = memrchr(p, '<', (size_t)(eq - p));
        if (!open) {
            p = eq + 1;   /* in text */
            continue;
        }
        size_t n = 0;
        for (p = open + 1; p < end && *p != '>' && *p != '<'; p++) {
            if (*p == '"' || *p == '\'') {
                const char *quote = memchr(p + 1, *p, (size_t)(end - p - 1));
                if (!quote)
                    return 1;
                p = quote;
            } else if (*p == '=' && ++n > max) {
                return 0;
            }
        }
    }
    return 1;
}

int soap_xml_is_space(char c)
{
    return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

static int all_space(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (!soap_xml_is_space(s[i]))
            return 0;
    return 1;
}

int soap_xml_ns_is(const char *ns, const char *want)
{
    return ns && strcmp(ns, want) == 0;
}

/* Ends the parse: no callback after the current one, and libxml2's loops end. Not
 * xmlStopParser: in libxml2 2.9 it frees the input at once, while the reader that called us
 * (xmlParseCharData, say, reporting "]]>" in text, or handing over text) goes on reading
 * through its own pointer into it: a use-after-free, a crash once the input was large enough
 * to be a mapping of its own. The input is freed with the parser. disableSAX 2 is what
 * xmlStopParser sets: 2.9 tests it for nonzero and its loops test the EOF state, later
 * versions test it for "stopped" (above 1) and no longer the state. */
static void halt(struct soap_xml *x)
{
    x->parser->disableSAX = 2;
    x->parser->instate = XML_PARSER_EOF;
}

static void env_fail(struct soap_xml *x, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void env_fail(struct soap_xml *x, const char *fmt, ...)
{
    if (x->res->env_error[0])
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(x->res->env_error, sizeof(x->res->env_error), fmt, ap);
    va_end(ap);
    if (x->parser)
        halt(x);   /* the answer is decided: read no further */
}

#if LIBXML_VERSION >= 21200
typedef const xmlError *xml_error_ptr;
#else
typedef xmlErrorPtr xml_error_ptr;
#endif

/* libxml2 reports here instead of stderr; the first error becomes the envelope fault. */
static void on_xml_error(void *arg, xml_error_ptr error)
{
    struct soap_xml *x = arg;
    if (error->level < XML_ERR_ERROR || x->stopped)
        return;
    /* libxml2 2.9 reports running out of memory as XML_ERR_NO_MEMORY, or, when it cannot even
     * format the message, as whatever error comes next with none. */
    if (error->code == XML_ERR_NO_MEMORY || !error->message ||
        (x->parser && x->parser->errNo == XML_ERR_NO_MEMORY)) {
        x->res->out_of_memory = 1;
        env_fail(x, "out of memory reading the document");
        return;
    }
    const char *msg = error->message;
    size_t len = strlen(msg);
    while (len > 0 && soap_xml_is_space(msg[len - 1]))
        len--;
    env_fail(x, "XML error at line %d: %.*s", error->line, (int)len, msg);
}

void soap_xml_fail(struct soap_xml *x, const char *fmt, ...)
{
    if (x->res->shape_error[0])
        return;
    struct buf where = BUF_INIT;
    for (size_t i = 0; i < x->depth; i++) {
        const struct frame *f = &x->frames[i];
        if (f->kind != FRAME_SHAPE || !f->shape->label)
            continue;
        if (f->shape->occurs == OCCURS_ANY || f->shape->occurs == OCCURS_SOME)
            buf_printf(&where, "%s %zu: ", f->shape->label, f->ordinal);
        else
            buf_printf(&where, "%s: ", f->shape->label);
    }
    va_list ap;
    va_start(ap, fmt);
    buf_vprintf(&where, fmt, ap);
    va_end(ap);
    snprintf(x->res->shape_error, sizeof(x->res->shape_error), "%s", where.data);
    buf_free(&where);
}

int soap_xml_fail_value(struct soap_xml *x, const char *what, const char *text, size_t len,
                        const char *expected)
{
    int shown = (int)(len > SHOWN_VALUE_MAX ? SHOWN_VALUE_MAX : len);
    soap_xml_fail(x, "%s \"%.*s\" is not %s", what, shown, text, expected);
    return -1;
}

const char *soap_xml_attribute(struct soap_xml *x, const char *name, size_t *len)
{
    /* Unqualified attributes of the start tag being handled. Without entity substitution,
     * libxml2 hands an attribute's '&' (from &amp; or &#38;) over as "&#38;"; decode it back. */
    for (int i = 0; x->attrs && i < x->nattrs; i++) {
        const xmlChar *const *a = &x->attrs[i * 5];
        if (a[2] || strcmp((const char *)a[0], name) != 0)
            continue;
        const char *v = (const char *)a[3], *end = (const char *)a[4];
        buf_reset(&x->attr);
        while (v < end) {
            const char *amp = memchr(v, '&', (size_t)(end - v));
            if (!amp) {
                buf_append(&x->attr, v, (size_t)(end - v));
                break;
            }
            buf_append(&x->attr, v, (size_t)(amp - v));
            buf_append(&x->attr, "&", 1);
            v = amp + ((size_t)(end - amp) >= 5 && memcmp(amp, "&#38;", 5) == 0 ? 5 : 1);
        }
        *len = x->attr.len;
        return x->attr.data ? x->attr.data : "";
    }
    return NULL;
}

static struct frame *push(struct soap_xml *x, enum frame_kind kind, const struct shape *shape,
                          size_t ordinal)
{
    if (x->depth == FRAMES_MAX) {   /* no shape nests this deep; refuse rather than overflow */
        env_fail(x, "elements nested too deeply");
        return NULL;
    }
    struct frame *f = &x->frames[x->depth++];
    memset(f, 0, sizeof(*f));
    f->kind = kind;
    f->shape = shape;
    f->pos = NO_CHILD;
    f->ordinal = ordinal;
    return f;
}

static int required(const struct shape *s)
{
    return s->occurs == OCCURS_ONE || s->occurs == OCCURS_SOME;
}

static int repeatable(const struct shape *s)
{
    return s->occurs == OCCURS_ANY || s->occurs == OCCURS_SOME;
}

/* Reports the first required child in children[from, to) (to may be past the end) that did
 * not come. */
static int check_required(struct soap_xml *x, const struct frame *f, size_t from, size_t to)
{
    for (size_t i = from; i < to && f->shape->children[i].name; i++) {
        const struct shape *child = &f->shape->children[i];
        if (required(child) && !(i == f->pos && f->count > 0)) {
            if (child->occurs == OCCURS_SOME)
                soap_xml_fail(x, "no <%s> in <%s>", child->name, f->shape->name);
            else
                soap_xml_fail(x, "missing <%s> in <%s>", child->name, f->shape->name);
            return -1;
        }
    }
    return 0;
}

static size_t find_child(const struct shape *parent, const char *ns, const char *name)
{
    if (!parent->children)
        return NO_CHILD;
    for (size_t i = 0; parent->children[i].name; i++) {
        const struct shape *c = &parent->children[i];
        int same_ns = c->ns ? soap_xml_ns_is(ns, c->ns) : ns == NULL;
        if (same_ns && strcmp(c->name, name) == 0)
            return i;
    }
    return NO_CHILD;
}

/* find_child, remembering its answers by pointer. libxml2 hands out each element name and
 * namespace name as one pointer for the whole parse (interned in its dictionary), and a RowData
 * body asks the same few questions for every element: comparing the names and namespace URIs
 * each time was 6% of a large parse. The slot mixes both pointers' bits (interned names sit
 * side by side, so their low bits alone would share slots); a clash only costs a find_child. */
static size_t child_of(struct soap_xml *x, const struct shape *parent, const char *ns,
                       const char *name)
{
    uint64_t key = (uint64_t)(uintptr_t)name ^ ((uint64_t)(uintptr_t)parent << 1);
    struct child_memo *m = &x->child_memo[(key * UINT64_C(0x9E3779B97F4A7C15)) >> 60];
    if (m->parent != parent || m->ns != ns || m->name != name)
        *m = (struct child_memo){.parent = parent, .ns = ns, .name = name,
                                 .child = find_child(parent, ns, name)};
    return m->child;
}

/* Places child i among its siblings; returns its ordinal, or 0 after a shape error. */
static size_t match_child(struct soap_xml *x, struct frame *f, size_t i)
{
    const struct shape *child = &f->shape->children[i];
    f->nchildren++;
    if (f->shape->unordered)
        return f->nchildren;
    if (f->pos != NO_CHILD && i < f->pos) {
        soap_xml_fail(x, "<%s> after <%s>", child->name, f->shape->children[f->pos].name);
        return 0;
    }
    if (i == f->pos) {
        if (!repeatable(child)) {
            soap_xml_fail(x, "more than one <%s> in <%s>", child->name, f->shape->name);
            return 0;
        }
        return ++f->count;
    }
    if (check_required(x, f, f->pos == NO_CHILD ? 0 : f->pos, i) < 0)
        return 0;
    f->pos = i;
    f->count = 1;
    return 1;
}

static void open_shape(struct soap_xml *x, const struct shape *shape, size_t ordinal)
{
    if (!push(x, FRAME_SHAPE, shape, ordinal))
        return;
    buf_reset(&x->text);
    if (shape->open && shape->open(x, x->ctx) < 0)
        soap_xml_fail(x, "invalid <%s>", shape->name);   /* kept only if the handler said nothing */
}

/* Whether the content of shape s is still read: always until a shape error, then only where s
 * asks for it. */
static int still_read(const struct soap_xml *x, const struct shape *s)
{
    return !x->res->shape_error[0] || s->read_after_error;
}

static void shape_child_start(struct soap_xml *x, struct frame *parent, const char *ns,
                              const char *name)
{
    size_t i = child_of(x, parent->shape, ns, name);
    if (x->res->shape_error[0] && (i == NO_CHILD || !parent->shape->children[i].read_after_error)) {
        x->skip = 1;
        return;
    }
    if (i == NO_CHILD && parent->shape->inner_element) {
        parent->shape->inner_element(x->ctx);
        x->skip = 1;
        return;
    }
    if (i == NO_CHILD) {
        if (soap_xml_ns_is(ns, SOAP_NS))
            soap_xml_fail(x, "unexpected element <%s> in <%s>", name, parent->shape->name);
        else if (!ns && x->ops->unqualified_is_error)
            soap_xml_fail(x, "element <%s> in <%s> has no namespace", name, parent->shape->name);
        x->skip = 1;
        return;
    }
    size_t ordinal = match_child(x, parent, i);
    if (ordinal == 0) {
        x->skip = 1;
        return;
    }
    open_shape(x, &parent->shape->children[i], ordinal);
}

static void envelope_child_start(struct soap_xml *x, const char *ns, const char *name)
{
    int is_env = soap_xml_ns_is(ns, SOAP_ENV_NS);
    if (is_env && strcmp(name, "Header") == 0) {
        if (x->seen_header || x->seen_body)
            env_fail(x, "<Header> must come once, before <Body>");
        x->seen_header = 1;
        push(x, FRAME_HEADER, NULL, 0);
    } else if (is_env && strcmp(name, "Body") == 0) {
        if (x->seen_body)
            env_fail(x, "more than one <Body>");
        x->seen_body = 1;
        push(x, FRAME_BODY, NULL, 0);
    } else if (is_env) {
        env_fail(x, "unexpected element <%s> in <Envelope>", name);
    } else {
        x->skip = 1;
    }
}

static void element_start(struct soap_xml *x, const char *ns, const char *name)
{
    if (x->skip) {
        x->skip++;
        return;
    }
    if (x->depth == 0) {
        if (!soap_xml_ns_is(ns, SOAP_ENV_NS) || strcmp(name, "Envelope") != 0)
            env_fail(x, "not a SOAP 1.1 envelope: the root element is <%s>%s%s", name,
                     ns ? " in " : " in no namespace", ns ? ns : "");
        else
            push(x, FRAME_ENVELOPE, NULL, 0);
        return;
    }
    struct frame *top = &x->frames[x->depth - 1];
    const struct shape *shape;
    switch (top->kind) {
    case FRAME_ENVELOPE:
        envelope_child_start(x, ns, name);
        break;
    case FRAME_HEADER:
        shape = x->ops->header_block ? x->ops->header_block(x->ctx, ns, name) : NULL;
        if (shape)
            open_shape(x, shape, 1);
        else
            x->skip = 1;
        break;
    case FRAME_BODY:
        shape = x->ops->body_element(x->ctx, ns, name, ++x->res->nbody);
        if (shape)
            open_shape(x, shape, 1);
        else
            x->skip = 1;
        break;
    case FRAME_SHAPE:
        shape_child_start(x, top, ns, name);
        break;
    }
}

static void shape_end(struct soap_xml *x, const struct frame *f)
{
    if (!still_read(x, f->shape))
        return;
    const struct shape *s = f->shape;
    if (s->content == SHAPE_CHILDREN && s->children && !s->unordered &&
        check_required(x, f, f->pos == NO_CHILD ? 0 : f->pos, SIZE_MAX) < 0)
        return;
    if (!s->close)
        return;
    const char *text = x->text.data ? x->text.data : "";
    size_t len = x->text.len;
    if (s->content == SHAPE_TEXT) {
        while (len > 0 && soap_xml_is_space(text[0])) {
            text++;
            len--;
        }
        while (len > 0 && soap_xml_is_space(text[len - 1]))
            len--;
    }
    if (s->close(x, x->ctx, text, len) < 0)
        soap_xml_fail(x, "invalid <%s>", s->name);   /* kept only if the handler said nothing */
}

static void element_end(struct soap_xml *x)
{
    if (x->skip) {
        x->skip--;
        return;
    }
    if (x->depth == 0)
        return;
    const struct frame *f = &x->frames[x->depth - 1];
    if (f->kind == FRAME_ENVELOPE && !x->seen_body)
        env_fail(x, "the Envelope has no <Body>");
    else if (f->kind == FRAME_SHAPE)
        shape_end(x, f);
    x->depth--;
}

static void character_data(struct soap_xml *x, const char *value, size_t len)
{
    if (x->skip || x->depth == 0)
        return;
    const struct frame *top = &x->frames[x->depth - 1];
    if (top->kind != FRAME_SHAPE) {
        if (!all_space(value, len))
            env_fail(x, "unexpected text in the SOAP envelope");
        return;
    }
    if (!still_read(x, top->shape))
        return;
    switch (top->shape->content) {
    case SHAPE_TEXT:
    case SHAPE_VERBATIM:
        buf_append(&x->text, value, len);
        break;
    case SHAPE_CHILDREN:
    case SHAPE_EMPTY:
        if (!all_space(value, len))
            soap_xml_fail(x, "unexpected text in <%s>", top->shape->name);
        break;
    }
}

/* ---- SAX2 callbacks (user data: the struct soap_xml). Once an envelope error is recorded
 * they do nothing more, and env_fail has ended the parse (halt). ---- */

/* The depth limit libxml2 enforces only while building a tree (the reader's), kept without one
 * and reported in the same words as its own error. (Its 10 MB limit on a text node is not kept:
 * values of the (max) types have none.) */
static void tree_limit_fail(struct soap_xml *x, const char *what)
{
    env_fail(x, "XML error at line %d: %s", xmlSAX2GetLineNumber(x->parser), what);
}

static void on_start_element(void *arg, const xmlChar *localname, const xmlChar *prefix,
                             const xmlChar *uri, int nb_namespaces, const xmlChar **namespaces,
                             int nb_attributes, int nb_defaulted, const xmlChar **attributes)
{
    (void)prefix, (void)nb_namespaces, (void)namespaces, (void)nb_defaulted;
    struct soap_xml *x = arg;
    if (x->res->env_error[0])
        return;
    /* libxml2 refuses an element with more than xmlParserMaxDepth ancestors. */
    if (++x->open_elements > (size_t)xmlParserMaxDepth + 1) {
        char what[96];
        snprintf(what, sizeof(what), "Excessive depth in document: %u use XML_PARSE_HUGE option",
                 xmlParserMaxDepth);
        tree_limit_fail(x, what);
        return;
    }
    if (x->ops->cancelled && ++x->started % CANCEL_POLL == 0 && x->ops->cancelled(x->ctx)) {
        soap_xml_stop(x);
        return;
    }
    x->attrs = attributes;
    x->nattrs = nb_attributes;
    element_start(x, (const char *)uri, (const char *)localname);
    x->attrs = NULL;
    x->nattrs = 0;
}

static void on_end_element(void *arg, const xmlChar *localname, const xmlChar *prefix,
                           const xmlChar *uri)
{
    (void)localname, (void)prefix, (void)uri;
    struct soap_xml *x = arg;
    if (x->res->env_error[0])
        return;
    x->open_elements--;
    element_end(x);
}

/* Text (also whitespace, and the five predefined entities and character references, which
 * libxml2 resolves), possibly in several calls for one run. No length limit but the body's:
 * values of the (max) types have none (protocol section 5), so the 10 MB a text node may hold
 * in a libxml2 tree does not apply here. */
static void on_characters(void *arg, const xmlChar *ch, int len)
{
    struct soap_xml *x = arg;
    if (!x->res->env_error[0])
        character_data(x, (const char *)ch, (size_t)len);
}

static void on_cdata(void *arg, const xmlChar *value, int len)
{
    struct soap_xml *x = arg;
    if (!x->res->env_error[0])
        character_data(x, (const char *)value, (size_t)len);
}

/* A DOCTYPE: refused before its internal subset is even read. Here (and for the other DTD
 * callbacks) libxml2 holds no pointer into its input across the call and looks at its state
 * right after, so xmlStopParser is safe, and needed: halt's EOF would be overwritten as
 * libxml2 goes on to read the internal subset (without callbacks, but at a cost, and keeping
 * a document of its own for the entities it declares). */
static void refuse_dtd(struct soap_xml *x)
{
    env_fail(x, "a DTD is not allowed");
    xmlStopParser(x->parser);
}

static void on_internal_subset(void *arg, const xmlChar *name, const xmlChar *external_id,
                               const xmlChar *system_id)
{
    (void)name, (void)external_id, (void)system_id;
    refuse_dtd(arg);
}

static void on_external_subset(void *arg, const xmlChar *name, const xmlChar *external_id,
                               const xmlChar *system_id)
{
    on_internal_subset(arg, name, external_id, system_id);
}

static void on_entity_decl(void *arg, const xmlChar *name, int type, const xmlChar *public_id,
                           const xmlChar *system_id, xmlChar *content)
{
    (void)name, (void)type, (void)public_id, (void)system_id, (void)content;
    refuse_dtd(arg);
}

/* No entity is ever resolved (the predefined ones never get here): an undeclared one is then
 * libxml2's well-formedness error. */
static xmlEntityPtr on_get_entity(void *arg, const xmlChar *name)
{
    (void)arg, (void)name;
    return NULL;
}

static void on_reference(void *arg, const xmlChar *name)
{
    (void)name;
    env_fail(arg, "entity references are not allowed");
}

static const xmlSAXHandler sax_handler = {
    .initialized = XML_SAX2_MAGIC,
    .startElementNs = on_start_element,
    .endElementNs = on_end_element,
    .characters = on_characters,
    .ignorableWhitespace = on_characters,   /* the same callback: libxml2 then never guesses */
    .cdataBlock = on_cdata,
    .internalSubset = on_internal_subset,
    .externalSubset = on_external_subset,
    .entityDecl = on_entity_decl,
    .getEntity = on_get_entity,
    .getParameterEntity = on_get_entity,
    .reference = on_reference,
    .serror = on_xml_error,
};

int soap_xml_parse(const char *doc, size_t len, const struct soap_xml_ops *ops, void *ctx,
                   struct soap_xml_result *res)
{
    memset(res, 0, sizeof(*res));
    struct soap_xml x = {.ops = ops, .ctx = ctx, .res = res};
    if (len == 0 || len > INT_MAX) {
        env_fail(&x, len == 0 ? "empty request body" : "cannot read the document");
        return -1;
    }
    /* The whole body is in memory already (the HTTP layer read it), so libxml2's pull parser
     * reads it in one go: a fifth faster than feeding its push parser in chunks, for a copy
     * of the body (memory stays bounded by the largest request). */
    x.parser = xmlCreateMemoryParserCtxt(doc, (int)len);   /* NULL: out of memory (len > 0) */
    xmlSAXHandler *sax = x.parser ? xmlMalloc(sizeof(*sax)) : NULL;   /* freed with the parser */
    if (!sax) {
        if (x.parser)
            xmlFreeParserCtxt(x.parser);
        x.parser = NULL;
        res->out_of_memory = 1;
        env_fail(&x, "out of memory reading the document");
        return -1;
    }
    *sax = sax_handler;
    xmlFree(x.parser->sax);
    x.parser->sax = sax;
    x.parser->userData = &x;
    /* No XML_PARSE_NOENT (entities stay unsubstituted), no DTD loading or validation, no
     * XML_PARSE_HUGE (libxml2's default limits hold: depth, names, attribute values, CDATA
     * sections), no network. */
    xmlCtxtUseOptions(x.parser, XML_PARSE_NONET);
    buf_init(&x.text);
    buf_init(&x.attr);
    int rc = xmlParseDocument(x.parser);
    /* libxml2 makes a document of its own for an entity declaration even in SAX mode ("for
     * expat compatibility"), also after a refused DTD: freed here, as xmlSAXUserParseMemory
     * does. */
    if (x.parser->myDoc) {
        xmlFreeDoc(x.parser->myDoc);
        x.parser->myDoc = NULL;
    }
    if (!res->env_error[0] && !x.stopped) {
        if (rc != 0 || !x.parser->wellFormed)
            env_fail(&x, "not well-formed XML");
        else if (x.parser->input->cur < x.parser->input->end)
            /* libxml2 takes a NUL byte after the root element for the end of the input. */
            env_fail(&x, "not well-formed XML: a NUL byte after the root element");
        else if (!x.seen_body)
            env_fail(&x, "not a SOAP envelope");
    }
    xmlFreeParserCtxt(x.parser);
    buf_free(&x.text);
    buf_free(&x.attr);
    return res->env_error[0] ? -1 : x.stopped;
}

size_t soap_xml_offset(const struct soap_xml *x)
{
    const xmlParserInput *in = x->parser->input;
    if (!in || !in->buf || in->buf->encoder)
        return SIZE_MAX;
    return (size_t)in->consumed + (size_t)(in->cur - in->base);
}

void soap_xml_stop(struct soap_xml *x)
{
    x->stopped = 1;
    halt(x);   /* no callback comes after this handler's own */
}

size_t soap_xml_char_len(const char *s, size_t len)
{
    unsigned char c = (unsigned char)s[0];
    if (c < 0x80)   /* ASCII, the common case, without a call */
        return c >= 0x20 || c == '\t' || c == '\n' || c == '\r';
    uint32_t cp;
    size_t n = utf8_decode(s, len, &cp);
    return n > 0 && cp != 0xFFFE && cp != 0xFFFF ? n : 0;
}

int soap_xml_parse_count(const char *s, size_t len, int64_t *out)
{
    if (len == 0)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return -1;
        int digit = s[i] - '0';
        if (v > (INT64_MAX - digit) / 10)
            return -1;
        v = v * 10 + digit;
    }
    *out = v;
    return 0;
}

int soap_xml_parse_int64(const char *s, size_t len, int64_t *out)
{
    if (len > 0 && s[0] == '-') {
        int64_t magnitude;
        /* INT64_MIN itself is refused: no position or count is that far down. */
        if (soap_xml_parse_count(s + 1, len - 1, &magnitude) < 0)
            return -1;
        *out = -magnitude;
        return 0;
    }
    return soap_xml_parse_count(s, len, out);
}

void *soap_vec_push(struct soap_vec *v)
{
    v->items = xgrow(v->items, &v->cap, v->len + 1, v->size);
    void *item = (char *)v->items + v->len++ * v->size;
    memset(item, 0, v->size);
    return item;
}

void *soap_vec_last(const struct soap_vec *v)
{
    return v->len ? (char *)v->items + (v->len - 1) * v->size : NULL;
}

void *soap_vec_finish(struct soap_vec *v, struct arena *a, size_t *n)
{
    *n = v->len;
    if (v->len == 0)
        return NULL;
    void *copy = arena_alloc(a, v->len * v->size);
    memcpy(copy, v->items, v->len * v->size);
    v->len = 0;
    return copy;
}

void soap_vec_free(struct soap_vec *v)
{
    free(v->items);
    v->items = NULL;
    v->len = v->cap = 0;
}

void soap_xml_put_text(struct buf *out, const char *s, size_t len)
{
    size_t run = 0;   /* start of the valid run not yet written */
    size_t i = 0;
    while (i < len) {
        size_t n = soap_xml_char_len(s + i, len - i);
        if (n > 0) {
            i += n;
            continue;
        }
        buf_put_xml_escaped(out, s + run, i - run);
        buf_puts(out, "\xEF\xBF\xBD");
        run = ++i;
    }
    buf_put_xml_escaped(out, s + run, len - run);
}

void soap_xml_put_element(struct buf *out, const char *name, const char *text, size_t len)
{
    if (!text || len == 0) {
        buf_printf(out, "<%s/>", name);
        return;
    }
    buf_printf(out, "<%s>", name);
    soap_xml_put_text(out, text, len);
    buf_printf(out, "</%s>", name);
}

void soap_xml_put_element_str(struct buf *out, const char *name, const char *text)
{
    soap_xml_put_element(out, name, text, text ? strlen(text) : 0);
}

void soap_xml_put_element_i64(struct buf *out, const char *name, int64_t value)
{
    buf_printf(out, "<%s>%lld</%s>", name, (long long)value, name);
}
