/* proto/soap: the receiver's side of the wire (protocol sections 1, 2, 4, 6). Owns the
 * table-driven shapes of the five request elements (the only place they are described), the
 * choice of the operation from SOAPAction and Body, and the writers of responses and faults.
 * The reading itself is proto/soap_xml.c. */
#include "proto/soap.h"

#include <string.h>
#include <strings.h>

#include "proto/soap_xml.h"
#include "proto/value.h"

#define SOAP_ACTION_PREFIX SOAP_NS "/IMirroringClientService/"
#define LSN_EXPECTED "a number from 0 to 9223372036854775807"

static const char *const op_names[SOAP_OP_COUNT] = {
    [SOAP_OP_AUTHENTICATE] = "Authenticate",
    [SOAP_OP_TABLESCHEMA] = "TableSchema",
    [SOAP_OP_WIPE] = "Wipe",
    [SOAP_OP_ROWDATA] = "RowData",
    [SOAP_OP_REPLICATIONCOMPLETED] = "ReplicationCompleted",
};

const char *soap_op_name(enum soap_op op)
{
    return op < SOAP_OP_COUNT ? op_names[op] : "?";
}

enum fault_code fault_code_from_name(const char *name)
{
    for (int code = FAULT_NONE + 1; code <= FAULT_INTERNAL; code++)
        if (strcmp(fault_code_name((enum fault_code)code), name) == 0)
            return (enum fault_code)code;
    return FAULT_NONE;
}

/* ---- request parsing ---- */

enum action_kind { ACTION_ABSENT, ACTION_KNOWN, ACTION_UNKNOWN };

struct request_builder {
    struct soap_request *req;
    struct arena *arena;
    enum action_kind action;
    enum soap_op action_op;          /* ACTION_KNOWN */
    struct soap_vec tables, columns, names, batches, rows, values, summary;
    const struct soap_row_listener *listener;   /* NULL: nothing is told before the end */
    void *listener_ctx;
};

static char *copy_text(struct request_builder *b, const char *text, size_t len)
{
    return arena_strndup(b->arena, text, len);
}

static int close_client_state(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct request_builder *b = ctx;
    b->req->client_state = copy_text(b, text, len);
    b->req->client_state_len = len;
    return 0;
}

/* TableSchema */
static int open_table(struct soap_xml *x, void *ctx)
{
    (void)x;
    struct request_builder *b = ctx;
    soap_vec_push(&b->tables);
    return 0;
}

static int close_table_name(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct request_builder *b = ctx;
    struct table_schema *t = soap_vec_last(&b->tables);
    t->name = copy_text(b, text, len);
    return 0;
}

static int open_column(struct soap_xml *x, void *ctx)
{
    (void)x;
    struct request_builder *b = ctx;
    soap_vec_push(&b->columns);
    return 0;
}

static int close_column_name(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct request_builder *b = ctx;
    struct column *c = soap_vec_last(&b->columns);
    c->name = copy_text(b, text, len);
    return 0;
}

static int close_column_type(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct request_builder *b = ctx;
    struct column *c = soap_vec_last(&b->columns);
    c->type_text = copy_text(b, text, len);
    return 0;
}

static int close_column_nullable(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    struct request_builder *b = ctx;
    struct column *c = soap_vec_last(&b->columns);
    c->nullable = value_parse_bool(text, len);
    if (c->nullable < 0) {
        soap_xml_fail(x, "Nullable \"%.*s\" is not true or false", (int)len, text);
        return -1;
    }
    return 0;
}

static int close_column_default(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct request_builder *b = ctx;
    struct column *c = soap_vec_last(&b->columns);
    c->default_text = copy_text(b, text, len);
    return 0;
}

static int close_table_columns(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x, (void)text, (void)len;
    struct request_builder *b = ctx;
    struct table_schema *t = soap_vec_last(&b->tables);
    t->columns = soap_vec_finish(&b->columns, b->arena, &t->ncolumns);
    return 0;
}

static int close_key_column(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct request_builder *b = ctx;
    *(char **)soap_vec_push(&b->names) = copy_text(b, text, len);
    return 0;
}

static int close_primary_key(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x, (void)text, (void)len;
    struct request_builder *b = ctx;
    struct table_schema *t = soap_vec_last(&b->tables);
    t->pk_names = soap_vec_finish(&b->names, b->arena, &t->npk);
    return 0;
}

static int close_table(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)text, (void)len;
    struct request_builder *b = ctx;
    const struct table_schema *tables = b->tables.items;
    const struct table_schema *t = &tables[b->tables.len - 1];
    for (size_t i = 0; i + 1 < b->tables.len; i++) {
        if (strcasecmp(tables[i].name, t->name) == 0) {
            soap_xml_fail(x, "table \"%s\" is listed twice", t->name);
            return -1;
        }
    }
    return 0;
}

static int close_schema_tables(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x, (void)text, (void)len;
    struct request_builder *b = ctx;
    b->req->tables = soap_vec_finish(&b->tables, b->arena, &b->req->ntables);
    return 0;
}

/* Wipe */
static int close_wipe_name(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct request_builder *b = ctx;
    *(char **)soap_vec_push(&b->names) = copy_text(b, text, len);
    return 0;
}

static int close_wipe_tables(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x, (void)text, (void)len;
    struct request_builder *b = ctx;
    b->req->wipe_tables = soap_vec_finish(&b->names, b->arena, &b->req->nwipe);
    return 0;
}

/* RowData */
static int open_batch(struct soap_xml *x, void *ctx)
{
    (void)x;
    struct request_builder *b = ctx;
    soap_vec_push(&b->batches);
    return 0;
}

static int close_batch_table(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct request_builder *b = ctx;
    struct batch *batch = soap_vec_last(&b->batches);
    batch->table = copy_text(b, text, len);
    return 0;
}

static int close_batch_column(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct request_builder *b = ctx;
    *(char **)soap_vec_push(&b->names) = copy_text(b, text, len);
    return 0;
}

static int close_batch_columns(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x, (void)text, (void)len;
    struct request_builder *b = ctx;
    struct batch *batch = soap_vec_last(&b->batches);
    batch->columns = soap_vec_finish(&b->names, b->arena, &batch->ncolumns);
    if (b->listener)
        b->listener->batch(b->listener_ctx, b->req, batch);
    return 0;
}

static int open_row(struct soap_xml *x, void *ctx)
{
    struct request_builder *b = ctx;
    struct row *row = soap_vec_push(&b->rows);
    size_t len;
    const char *op = soap_xml_attribute(x, "op", &len);
    if (!op) {
        soap_xml_fail(x, "missing op attribute");
        return -1;
    }
    if (len != 1 || !strchr("IUD", op[0]))
        return soap_xml_fail_value(x, "op", op, len, "I, U or D");
    row->op = op[0];
    const char *lsn = soap_xml_attribute(x, "lsn", &len);
    if (lsn) {
        if (soap_xml_parse_count(lsn, len, &row->lsn) < 0)
            return soap_xml_fail_value(x, "lsn", lsn, len, LSN_EXPECTED);
        row->has_lsn = 1;
    }
    return 0;
}

static void push_value(struct request_builder *b, enum raw_kind kind, const char *text, size_t len)
{
    struct raw_value *v = soap_vec_push(&b->values);
    v->kind = kind;
    if (kind != RAW_NULL) {
        v->data = copy_text(b, text, len);
        v->len = len;
        v->utf8_checked = 1;   /* libxml2 hands over nothing else (an encoding error is fatal) */
    }
}

static int close_text_value(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    push_value(ctx, RAW_TEXT, text, len);
    return 0;
}

static int close_base64_value(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    push_value(ctx, RAW_BASE64, text, len);
    return 0;
}

static int close_null_value(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    push_value(ctx, RAW_NULL, text, len);
    return 0;
}

static int close_row(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)text, (void)len;
    struct request_builder *b = ctx;
    struct row *row = soap_vec_last(&b->rows);
    row->values = soap_vec_finish(&b->values, b->arena, &row->nvalues);
    if (b->listener && b->listener->row(b->listener_ctx, row, soap_xml_offset(x)))
        soap_xml_stop(x);
    return 0;
}

static int open_rows(struct soap_xml *x, void *ctx)
{
    struct request_builder *b = ctx;
    if (b->listener)
        b->listener->rows(b->listener_ctx, soap_xml_offset(x));
    return 0;
}

static int close_rows(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x, (void)text, (void)len;
    struct request_builder *b = ctx;
    struct batch *batch = soap_vec_last(&b->batches);
    batch->rows = soap_vec_finish(&b->rows, b->arena, &batch->nrows);
    return 0;
}

static int close_batch_lsn(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    struct request_builder *b = ctx;
    struct batch *batch = soap_vec_last(&b->batches);
    if (soap_xml_parse_count(text, len, &batch->lsn) < 0)
        return soap_xml_fail_value(x, "Lsn", text, len, LSN_EXPECTED);
    batch->has_lsn = 1;
    return 0;
}

static int close_batch(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x, (void)text, (void)len;
    struct request_builder *b = ctx;
    if (b->listener)
        b->listener->batch_end(b->listener_ctx, soap_vec_last(&b->batches));
    return 0;
}

static int close_batches(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x, (void)text, (void)len;
    struct request_builder *b = ctx;
    b->req->batches = soap_vec_finish(&b->batches, b->arena, &b->req->nbatches);
    return 0;
}

/* ReplicationCompleted */
static int open_summary_table(struct soap_xml *x, void *ctx)
{
    (void)x;
    struct request_builder *b = ctx;
    soap_vec_push(&b->summary);
    return 0;
}

static int close_summary_name(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct request_builder *b = ctx;
    struct table_summary *s = soap_vec_last(&b->summary);
    s->name = copy_text(b, text, len);
    return 0;
}

static int set_count(struct soap_xml *x, const char *what, const char *text, size_t len,
                     int64_t *out)
{
    if (soap_xml_parse_count(text, len, out) == 0)
        return 0;
    return soap_xml_fail_value(x, what, text, len, "a count");
}

static int close_summary_inserted(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    struct table_summary *s = soap_vec_last(&((struct request_builder *)ctx)->summary);
    return set_count(x, "Inserted", text, len, &s->inserted);
}

static int close_summary_updated(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    struct table_summary *s = soap_vec_last(&((struct request_builder *)ctx)->summary);
    return set_count(x, "Updated", text, len, &s->updated);
}

static int close_summary_deleted(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    struct table_summary *s = soap_vec_last(&((struct request_builder *)ctx)->summary);
    return set_count(x, "Deleted", text, len, &s->deleted);
}

static int close_summary(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x, (void)text, (void)len;
    struct request_builder *b = ctx;
    b->req->summary = soap_vec_finish(&b->summary, b->arena, &b->req->nsummary);
    return 0;
}

/* The request shapes (protocol 4.1-4.5), leaves first. ClientState is read after a shape error
 * too: a token refusal comes before the body's fault, and echoes it (4.1). */
static const struct shape authenticate_shapes[] = {
    {.ns = SOAP_NS, .name = "ClientState", .content = SHAPE_VERBATIM, .occurs = OCCURS_OPTIONAL,
     .close = close_client_state, .read_after_error = 1},
    SHAPES_END};

static const struct shape column_shapes[] = {
    SHAPE_LEAF("Name", SHAPE_TEXT, OCCURS_ONE, NULL, close_column_name),
    SHAPE_LEAF("Type", SHAPE_TEXT, OCCURS_ONE, NULL, close_column_type),
    SHAPE_LEAF("Nullable", SHAPE_TEXT, OCCURS_ONE, NULL, close_column_nullable),
    SHAPE_LEAF("Default", SHAPE_TEXT, OCCURS_OPTIONAL, NULL, close_column_default),
    SHAPES_END};
static const struct shape columns_shapes[] = {
    SHAPE_NODE("Column", OCCURS_ANY, "column", column_shapes, open_column, NULL),
    SHAPES_END};
static const struct shape key_shapes[] = {
    SHAPE_LEAF("Column", SHAPE_TEXT, OCCURS_ANY, "key column", close_key_column),
    SHAPES_END};
/* A table without <PrimaryKey> is well-formed; the store rejects it (no key). */
static const struct shape table_shapes[] = {
    SHAPE_LEAF("Name", SHAPE_TEXT, OCCURS_ONE, NULL, close_table_name),
    SHAPE_NODE("Columns", OCCURS_ONE, NULL, columns_shapes, NULL, close_table_columns),
    SHAPE_NODE("PrimaryKey", OCCURS_OPTIONAL, NULL, key_shapes, NULL, close_primary_key),
    SHAPES_END};
static const struct shape schema_tables_shapes[] = {
    SHAPE_NODE("Table", OCCURS_SOME, "table", table_shapes, open_table, close_table),
    SHAPES_END};
static const struct shape table_schema_shapes[] = {
    SHAPE_NODE("Tables", OCCURS_ONE, NULL, schema_tables_shapes, NULL, close_schema_tables),
    SHAPES_END};

static const struct shape wipe_tables_shapes[] = {
    SHAPE_LEAF("Name", SHAPE_TEXT, OCCURS_SOME, "table", close_wipe_name),
    SHAPES_END};
static const struct shape wipe_shapes[] = {
    SHAPE_NODE("Tables", OCCURS_ONE, NULL, wipe_tables_shapes, NULL, close_wipe_tables),
    SHAPES_END};

static const struct shape value_shapes[] = {
    SHAPE_LEAF("V", SHAPE_VERBATIM, OCCURS_ANY, "value", close_text_value),
    SHAPE_LEAF("B", SHAPE_TEXT, OCCURS_ANY, "value", close_base64_value),
    SHAPE_LEAF("N", SHAPE_EMPTY, OCCURS_ANY, "value", close_null_value),
    SHAPES_END};
static const struct shape rows_shapes[] = {
    {.ns = SOAP_NS, .name = "Row", .content = SHAPE_CHILDREN, .occurs = OCCURS_ANY,
     .label = "row", .unordered = 1, .children = value_shapes, .open = open_row,
     .close = close_row},
    SHAPES_END};
static const struct shape batch_column_shapes[] = {
    SHAPE_LEAF("Name", SHAPE_TEXT, OCCURS_ANY, NULL, close_batch_column),
    SHAPES_END};
static const struct shape batch_shapes[] = {
    SHAPE_LEAF("Table", SHAPE_TEXT, OCCURS_ONE, NULL, close_batch_table),
    SHAPE_NODE("Columns", OCCURS_ONE, NULL, batch_column_shapes, NULL, close_batch_columns),
    SHAPE_NODE("Rows", OCCURS_ONE, NULL, rows_shapes, open_rows, close_rows),
    SHAPE_LEAF("Lsn", SHAPE_TEXT, OCCURS_OPTIONAL, NULL, close_batch_lsn),
    SHAPES_END};
static const struct shape batches_shapes[] = {
    SHAPE_NODE("Batch", OCCURS_SOME, "batch", batch_shapes, open_batch, close_batch),
    SHAPES_END};
static const struct shape row_data_shapes[] = {
    SHAPE_NODE("Batches", OCCURS_ONE, NULL, batches_shapes, NULL, close_batches),
    SHAPES_END};

static const struct shape summary_table_shapes[] = {
    SHAPE_LEAF("Name", SHAPE_TEXT, OCCURS_ONE, NULL, close_summary_name),
    SHAPE_LEAF("Inserted", SHAPE_TEXT, OCCURS_ONE, NULL, close_summary_inserted),
    SHAPE_LEAF("Updated", SHAPE_TEXT, OCCURS_ONE, NULL, close_summary_updated),
    SHAPE_LEAF("Deleted", SHAPE_TEXT, OCCURS_ONE, NULL, close_summary_deleted),
    SHAPES_END};
static const struct shape summary_shapes[] = {
    SHAPE_NODE("TableSummary", OCCURS_ANY, "table", summary_table_shapes, open_summary_table,
               NULL),
    SHAPES_END};
/* A missing <Summary> reads as an empty one. */
static const struct shape replication_completed_shapes[] = {
    SHAPE_NODE("Summary", OCCURS_OPTIONAL, NULL, summary_shapes, NULL, close_summary),
    SHAPES_END};

static const struct shape request_shapes[SOAP_OP_COUNT] = {
    [SOAP_OP_AUTHENTICATE] = SHAPE_NODE("AuthenticateRequest", OCCURS_ONE, "Authenticate",
                                        authenticate_shapes, NULL, NULL),
    [SOAP_OP_TABLESCHEMA] = SHAPE_NODE("TableSchemaRequest", OCCURS_ONE, "TableSchema",
                                       table_schema_shapes, NULL, NULL),
    [SOAP_OP_WIPE] = SHAPE_NODE("WipeRequest", OCCURS_ONE, "Wipe", wipe_shapes, NULL, NULL),
    [SOAP_OP_ROWDATA] = SHAPE_NODE("RowDataRequest", OCCURS_ONE, "RowData", row_data_shapes,
                                   NULL, NULL),
    [SOAP_OP_REPLICATIONCOMPLETED] =
        SHAPE_NODE("ReplicationCompletedRequest", OCCURS_ONE, "ReplicationCompleted",
                   replication_completed_shapes, NULL, NULL),
};

static int close_token(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct request_builder *b = ctx;
    if (!b->req->token) {
        b->req->token = copy_text(b, text, len);
        b->req->token_len = len;
    }
    return 0;
}

/* An element inside SignedToken makes it no token: an InvalidToken in its turn (section 6
 * order), not a shape error, which would stop the rest of the request being read (an
 * Authenticate's ClientState is echoed in its refusal). */
static void token_holds_element(void *ctx)
{
    struct request_builder *b = ctx;
    b->req->token_has_element = 1;
}

static const struct shape signed_token_shape = {
    .ns = SOAP_NS, .name = "SignedToken", .content = SHAPE_TEXT, .occurs = OCCURS_ONE,
    .label = "SignedToken", .close = close_token, .inner_element = token_holds_element};

static const struct shape *request_header_block(void *ctx, const char *ns, const char *name)
{
    struct request_builder *b = ctx;
    if (!soap_xml_ns_is(ns, SOAP_NS) || strcmp(name, "SignedToken") != 0)
        return NULL;
    b->req->ntokens++;
    return &signed_token_shape;
}

static const struct shape *request_body_element(void *ctx, const char *ns, const char *name,
                                                size_t index)
{
    struct request_builder *b = ctx;
    struct soap_request *req = b->req;
    if (req->op_fault.code != FAULT_NONE)
        return NULL;
    if (index > 1) {
        fault_set(&req->op_fault, FAULT_MALFORMED_REQUEST,
                  "the SOAP Body holds more than one element");
        return NULL;
    }
    enum soap_op op = SOAP_OP_COUNT;
    for (int i = 0; i < SOAP_OP_COUNT && soap_xml_ns_is(ns, SOAP_NS); i++)
        if (strcmp(name, request_shapes[i].name) == 0)
            op = (enum soap_op)i;
    if (op == SOAP_OP_COUNT) {
        fault_set(&req->op_fault, FAULT_UNKNOWN_OPERATION, "unknown operation element <%.128s>%s%.200s",
                  name, ns ? " in " : " in no namespace", ns ? ns : "");
        return NULL;
    }
    if (b->action == ACTION_KNOWN && b->action_op != op) {
        fault_set(&req->op_fault, FAULT_MALFORMED_REQUEST,
                  "SOAPAction names %s but the Body holds <%s>", soap_op_name(b->action_op),
                  request_shapes[op].name);
        return NULL;
    }
    req->op = op;
    return &request_shapes[op];
}

static int request_cancelled(void *ctx)
{
    const struct request_builder *b = ctx;
    return b->listener && b->listener->cancelled && b->listener->cancelled(b->listener_ctx);
}

static const struct soap_xml_ops request_ops = {
    .header_block = request_header_block,
    .body_element = request_body_element,
    .unqualified_is_error = 1,
    .cancelled = request_cancelled,
};

/* Reads the SOAPAction value: absent or empty, one of the five, or something else. */
static enum action_kind read_action(const char *action, enum soap_op *op)
{
    if (!action)
        return ACTION_ABSENT;
    size_t len = strlen(action);
    while (len > 0 && (*action == ' ' || *action == '\t'))
        action++, len--;
    while (len > 0 && (action[len - 1] == ' ' || action[len - 1] == '\t'))
        len--;
    if (len >= 2 && action[0] == '"' && action[len - 1] == '"')
        action++, len -= 2;
    if (len == 0)
        return ACTION_ABSENT;
    size_t prefix = strlen(SOAP_ACTION_PREFIX);
    if (len <= prefix || memcmp(action, SOAP_ACTION_PREFIX, prefix) != 0)
        return ACTION_UNKNOWN;
    for (int i = 0; i < SOAP_OP_COUNT; i++) {
        if (len - prefix == strlen(op_names[i]) &&
            memcmp(action + prefix, op_names[i], len - prefix) == 0) {
            *op = (enum soap_op)i;
            return ACTION_KNOWN;
        }
    }
    return ACTION_UNKNOWN;
}

int soap_parse_request(const char *body, size_t len, const char *soapaction, struct arena *arena,
                       struct soap_request *out, struct fault *env_fault)
{
    return soap_parse_request_told(body, len, soapaction, arena, out, env_fault, NULL, NULL);
}

int soap_parse_request_told(const char *body, size_t len, const char *soapaction,
                            struct arena *arena, struct soap_request *out, struct fault *env_fault,
                            const struct soap_row_listener *listener, void *listener_ctx)
{
    memset(out, 0, sizeof(*out));
    out->op = SOAP_OP_COUNT;
    fault_clear(env_fault);
    struct request_builder b = {
        .req = out,
        .arena = arena,
        .tables = SOAP_VEC_INIT(struct table_schema),
        .columns = SOAP_VEC_INIT(struct column),
        .names = SOAP_VEC_INIT(char *),
        .batches = SOAP_VEC_INIT(struct batch),
        .rows = SOAP_VEC_INIT(struct row),
        .values = SOAP_VEC_INIT(struct raw_value),
        .summary = SOAP_VEC_INIT(struct table_summary),
        .listener = listener,
        .listener_ctx = listener_ctx,
    };
    b.action = read_action(soapaction, &b.action_op);
    if (b.action == ACTION_UNKNOWN)
        fault_set(&out->op_fault, FAULT_UNKNOWN_OPERATION, "unknown SOAPAction %.200s",
                  soapaction);

    struct soap_xml_result res;
    int rc = soap_xml_parse(body, len, &request_ops, &b, &res);
    if (rc == 1) {   /* ended by the listener (at a row's end, unless cancelled): keep the rows */
        if (soap_vec_last(&b.batches))
            close_rows(NULL, &b, NULL, 0);
        close_batches(NULL, &b, NULL, 0);
    }
    struct soap_vec *vecs[] = {&b.tables, &b.columns, &b.names, &b.batches,
                               &b.rows, &b.values, &b.summary};
    for (size_t i = 0; i < sizeof(vecs) / sizeof(vecs[0]); i++)
        soap_vec_free(vecs[i]);
    if (rc < 0) {   /* libxml2 out of memory is the receiver's trouble: a retry may pass */
        fault_set(env_fault, res.out_of_memory ? FAULT_INTERNAL : FAULT_MALFORMED_REQUEST, "%s",
                  res.env_error);
        return -1;
    }
    if (rc == 1)
        return 1;
    if (out->op_fault.code == FAULT_NONE && res.nbody == 0)
        fault_set(&out->op_fault, FAULT_MALFORMED_REQUEST, "the SOAP Body is empty");
    if (res.shape_error[0])
        fault_set(&out->body_fault, FAULT_MALFORMED_REQUEST, "%s", res.shape_error);
    return 0;
}

/* ---- responses and faults ---- */

static void response_open(struct buf *out, enum soap_op op)
{
    buf_printf(out, SOAP_XML_ENVELOPE_OPEN "<s:Body><%sResponse xmlns=\"" SOAP_NS "\">",
               soap_op_name(op));
}

static void response_close(struct buf *out, enum soap_op op)
{
    buf_printf(out, "</%sResponse></s:Body>" SOAP_XML_ENVELOPE_CLOSE, soap_op_name(op));
}

static const char *bool_text(int value)
{
    return value ? "true" : "false";
}

void soap_write_fault(struct buf *out, const struct fault *f)
{
    buf_puts(out, SOAP_XML_ENVELOPE_OPEN "<s:Body><s:Fault>");
    buf_printf(out, "<faultcode>%s</faultcode>",
               fault_is_server(f->code) ? "s:Server" : "s:Client");
    soap_xml_put_element_str(out, "faultstring", f->message);
    buf_puts(out, "<detail><MirrorFault xmlns=\"" SOAP_NS "\">");
    soap_xml_put_element_str(out, "Code", fault_code_name(f->code));
    if (f->names_table)
        soap_xml_put_element_str(out, "Table", f->table);
    if (f->names_column)
        soap_xml_put_element_str(out, "Column", f->column);
    if (f->row > 0)
        soap_xml_put_element_i64(out, "Row", f->row);
    soap_xml_put_element_str(out, "Retryable", bool_text(fault_retryable(f->code)));
    buf_puts(out, "</MirrorFault></detail></s:Fault></s:Body>" SOAP_XML_ENVELOPE_CLOSE);
}

void soap_write_authenticate(struct buf *out, const struct auth_answer *a)
{
    response_open(out, SOAP_OP_AUTHENTICATE);
    soap_xml_put_element_str(out, "IsSuccessful", bool_text(a->ok));
    soap_xml_put_element_str(out, "ErrorMessage", a->error_message);
    soap_xml_put_element_str(out, "SignedApplicationToken", a->signed_app_token);
    soap_xml_put_element_str(out, "SupportedInterfaces", "1");
    soap_xml_put_element_str(out, "SuperOfficeMirroringBuild", a->build);
    soap_xml_put_element(out, "ClientState", a->client_state, a->client_state_len);
    soap_xml_put_element_str(out, "AdditionalInformationJson",
                             a->do_not_replicate ? "{\"doNotReplicate\":\"true\"}" : NULL);
    response_close(out, SOAP_OP_AUTHENTICATE);
}

static void write_states(struct buf *out, enum soap_op op, const struct table_state *states,
                         size_t n)
{
    response_open(out, op);
    buf_puts(out, "<Tables>");
    for (size_t i = 0; i < n; i++) {
        const struct table_state *s = &states[i];
        buf_puts(out, "<TableState>");
        soap_xml_put_element_str(out, "Name", s->name);
        soap_xml_put_element_i64(out, "Lsn", s->lsn);
        if (op == SOAP_OP_TABLESCHEMA) {
            soap_xml_put_element_str(out, "Change", table_change_name(s->change));
            if (s->change == CHANGE_REJECTED)
                soap_xml_put_element_str(out, "Error", s->error);
        } else if (op == SOAP_OP_ROWDATA) {
            soap_xml_put_element_i64(out, "Inserted", s->inserted);
            soap_xml_put_element_i64(out, "Updated", s->updated);
            soap_xml_put_element_i64(out, "Deleted", s->deleted);
            soap_xml_put_element_i64(out, "Skipped", s->skipped);
        }
        buf_puts(out, "</TableState>");
    }
    buf_puts(out, "</Tables>");
    response_close(out, op);
}

void soap_write_table_schema(struct buf *out, const struct table_state *states, size_t n)
{
    write_states(out, SOAP_OP_TABLESCHEMA, states, n);
}

void soap_write_wipe(struct buf *out, const struct table_state *states, size_t n)
{
    write_states(out, SOAP_OP_WIPE, states, n);
}

void soap_write_row_data(struct buf *out, const struct table_state *states, size_t n)
{
    write_states(out, SOAP_OP_ROWDATA, states, n);
}

void soap_write_replication_completed(struct buf *out)
{
    buf_printf(out, SOAP_XML_ENVELOPE_OPEN "<s:Body><%sResponse xmlns=\"" SOAP_NS "\"/></s:Body>"
               SOAP_XML_ENVELOPE_CLOSE, soap_op_name(SOAP_OP_REPLICATIONCOMPLETED));
}
