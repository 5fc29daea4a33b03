/* proto/soap_client: the sender's side of the wire (somirror-task): the request builders, the
 * check of what XML can carry, and the table-driven shapes of responses and faults with their
 * parser. The reading itself is proto/soap_xml.c. */
#include "proto/soap.h"

#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "proto/soap_xml.h"
#include "proto/value.h"

/* ---- request builders ---- */

static void request_open(struct buf *out, const char *token, enum soap_op op)
{
    buf_puts(out, SOAP_XML_ENVELOPE_OPEN);
    if (token) {
        buf_puts(out, "<s:Header><SignedToken s:mustUnderstand=\"1\" xmlns=\"" SOAP_NS "\">");
        soap_xml_put_text(out, token, strlen(token));
        buf_puts(out, "</SignedToken></s:Header>");
    }
    buf_printf(out, "<s:Body><%sRequest xmlns=\"" SOAP_NS "\">", soap_op_name(op));
}

static void request_close(struct buf *out, enum soap_op op)
{
    buf_printf(out, "</%sRequest></s:Body>" SOAP_XML_ENVELOPE_CLOSE, soap_op_name(op));
}

void soap_build_authenticate(struct buf *out, const char *token, const char *client_state)
{
    request_open(out, token, SOAP_OP_AUTHENTICATE);
    soap_xml_put_element_str(out, "ClientState", client_state);
    request_close(out, SOAP_OP_AUTHENTICATE);
}

static void put_column(struct buf *out, const struct column *c)
{
    buf_puts(out, "<Column>");
    soap_xml_put_element_str(out, "Name", c->name);
    soap_xml_put_element_str(out, "Type", c->type_text);
    soap_xml_put_element_str(out, "Nullable", c->nullable ? "true" : "false");
    if (c->default_text)
        soap_xml_put_element_str(out, "Default", c->default_text);
    buf_puts(out, "</Column>");
}

void soap_build_table_schema(struct buf *out, const char *token, const struct table_schema *tables,
                             size_t n)
{
    request_open(out, token, SOAP_OP_TABLESCHEMA);
    buf_puts(out, "<Tables>");
    for (size_t i = 0; i < n; i++) {
        const struct table_schema *t = &tables[i];
        buf_puts(out, "<Table>");
        soap_xml_put_element_str(out, "Name", t->name);
        buf_puts(out, "<Columns>");
        for (size_t c = 0; c < t->ncolumns; c++)
            put_column(out, &t->columns[c]);
        buf_puts(out, "</Columns><PrimaryKey>");
        for (size_t k = 0; k < t->npk; k++)
            soap_xml_put_element_str(out, "Column", t->pk_names[k]);
        buf_puts(out, "</PrimaryKey></Table>");
    }
    buf_puts(out, "</Tables>");
    request_close(out, SOAP_OP_TABLESCHEMA);
}

void soap_build_wipe(struct buf *out, const char *token, char *const *tables, size_t n)
{
    request_open(out, token, SOAP_OP_WIPE);
    buf_puts(out, "<Tables>");
    for (size_t i = 0; i < n; i++)
        soap_xml_put_element_str(out, "Name", tables[i]);
    buf_puts(out, "</Tables>");
    request_close(out, SOAP_OP_WIPE);
}

void soap_build_replication_completed(struct buf *out, const char *token,
                                      const struct table_summary *summary, size_t n)
{
    request_open(out, token, SOAP_OP_REPLICATIONCOMPLETED);
    buf_puts(out, "<Summary>");
    for (size_t i = 0; i < n; i++) {
        buf_puts(out, "<TableSummary>");
        soap_xml_put_element_str(out, "Name", summary[i].name);
        soap_xml_put_element_i64(out, "Inserted", summary[i].inserted);
        soap_xml_put_element_i64(out, "Updated", summary[i].updated);
        soap_xml_put_element_i64(out, "Deleted", summary[i].deleted);
        buf_puts(out, "</TableSummary>");
    }
    buf_puts(out, "</Summary>");
    request_close(out, SOAP_OP_REPLICATIONCOMPLETED);
}

void soap_build_rowdata_begin(struct buf *out, const char *token)
{
    request_open(out, token, SOAP_OP_ROWDATA);
    buf_puts(out, "<Batches>");
}

void soap_build_batch_begin(struct buf *out, const char *table, char *const *columns, size_t n)
{
    buf_puts(out, "<Batch>");
    soap_xml_put_element_str(out, "Table", table);
    buf_puts(out, "<Columns>");
    for (size_t i = 0; i < n; i++)
        soap_xml_put_element_str(out, "Name", columns[i]);
    buf_puts(out, "</Columns><Rows>");
}

void soap_build_row(struct buf *out, char op, int has_lsn, int64_t lsn,
                    const struct raw_value *values, size_t n)
{
    buf_printf(out, "<Row op=\"%c\"", op);
    if (has_lsn)
        buf_printf(out, " lsn=\"%lld\"", (long long)lsn);
    buf_putc(out, '>');
    for (size_t i = 0; i < n; i++) {
        const struct raw_value *v = &values[i];
        if (v->kind == RAW_NULL || (v->kind == RAW_TEXT && v->len == 0)) {
            buf_puts(out, v->kind == RAW_NULL ? "<N/>" : "<V/>");
            continue;
        }
        /* Not sanitised: text XML cannot carry must come as <B> (soap_text_needs_base64), and
         * a value is never altered on its way. Base64 has nothing to escape. */
        if (v->kind == RAW_TEXT) {
            buf_puts(out, "<V>");
            buf_put_xml_escaped(out, v->data, v->len);
            buf_puts(out, "</V>");
        } else {
            buf_puts(out, "<B>");
            buf_append(out, v->data, v->len);
            buf_puts(out, "</B>");
        }
    }
    buf_puts(out, "</Row>");
}

void soap_build_batch_end(struct buf *out, int has_lsn, int64_t lsn)
{
    buf_puts(out, "</Rows>");
    if (has_lsn)
        soap_xml_put_element_i64(out, "Lsn", lsn);
    buf_puts(out, "</Batch>");
}

void soap_build_rowdata_end(struct buf *out)
{
    buf_puts(out, "</Batches>");
    request_close(out, SOAP_OP_ROWDATA);
}

int soap_text_needs_base64(const char *text, size_t len)
{
    for (size_t i = 0; i < len;) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c < 0x80) {   /* printable ASCII, most of any text, without a call */
            i++;
            continue;
        }
        size_t n = soap_xml_char_len(text + i, len - i);
        if (n == 0 || c == '\r')
            return 1;
        i += n;
    }
    return 0;
}

/* ---- response parsing ---- */

struct response_builder {
    struct soap_response *resp;
    struct arena *arena;
    enum soap_op op;
    int server_fault;             /* faultcode s:Server */
    int has_mirror_code;          /* <MirrorFault><Code> seen */
    struct soap_vec states;
    char body_error[256];         /* the Body holds something else than the answer to op */
};

static char *copy_text(struct response_builder *b, const char *text, size_t len)
{
    return arena_strndup(b->arena, text, len);
}

static int read_bool(struct soap_xml *x, const char *what, const char *text, size_t len, int *out)
{
    *out = value_parse_bool(text, len);
    if (*out >= 0)
        return 0;
    return soap_xml_fail_value(x, what, text, len, "true or false");
}

static int read_number(struct soap_xml *x, const char *what, const char *text, size_t len,
                       int64_t *out)
{
    if (soap_xml_parse_int64(text, len, out) == 0)
        return 0;
    return soap_xml_fail_value(x, what, text, len, "a number");
}

/* Faults */
static int close_faultcode(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct response_builder *b = ctx;
    const char *colon = memchr(text, ':', len);
    const char *local = colon ? colon + 1 : text;
    size_t local_len = len - (size_t)(local - text);
    b->server_fault = local_len == 6 && memcmp(local, "Server", 6) == 0;
    return 0;
}

static int close_faultstring(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct response_builder *b = ctx;
    snprintf(b->resp->fault.message, sizeof(b->resp->fault.message), "%.*s", (int)len, text);
    return 0;
}

static int close_fault_code(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    struct response_builder *b = ctx;
    enum fault_code code = fault_code_from_name(copy_text(b, text, len));
    b->resp->fault.code = code == FAULT_NONE ? FAULT_INTERNAL : code;
    b->has_mirror_code = 1;
    (void)x;
    return 0;
}

static int close_fault_table(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct fault *f = &((struct response_builder *)ctx)->resp->fault;
    snprintf(f->table, sizeof(f->table), "%.*s", (int)len, text);
    return 0;
}

static int close_fault_column(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct fault *f = &((struct response_builder *)ctx)->resp->fault;
    snprintf(f->column, sizeof(f->column), "%.*s", (int)len, text);
    return 0;
}

static int close_fault_row(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    struct fault *f = &((struct response_builder *)ctx)->resp->fault;
    int64_t row;
    if (read_number(x, "Row", text, len, &row) < 0)
        return -1;
    f->row = (long)row;
    return 0;
}

static int close_fault_retryable(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    struct response_builder *b = ctx;
    return read_bool(x, "Retryable", text, len, &b->resp->retryable);
}

static int close_fault(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x, (void)text, (void)len;
    struct response_builder *b = ctx;
    if (!b->has_mirror_code) {   /* a plain SOAP fault: say what little it tells */
        b->resp->fault.code = FAULT_INTERNAL;
        b->resp->retryable = b->server_fault;
    }
    return 0;
}

#define UNQUALIFIED_LEAF(name_, occurs_, close_) \
    {.ns = NULL, .name = (name_), .content = SHAPE_TEXT, .occurs = (occurs_), .close = (close_)}

static const struct shape mirror_fault_shapes[] = {
    SHAPE_LEAF("Code", SHAPE_TEXT, OCCURS_ONE, NULL, close_fault_code),
    SHAPE_LEAF("Table", SHAPE_TEXT, OCCURS_OPTIONAL, NULL, close_fault_table),
    SHAPE_LEAF("Column", SHAPE_TEXT, OCCURS_OPTIONAL, NULL, close_fault_column),
    SHAPE_LEAF("Row", SHAPE_TEXT, OCCURS_OPTIONAL, NULL, close_fault_row),
    SHAPE_LEAF("Retryable", SHAPE_TEXT, OCCURS_ONE, NULL, close_fault_retryable),
    SHAPES_END};
static const struct shape detail_shapes[] = {
    SHAPE_NODE("MirrorFault", OCCURS_OPTIONAL, NULL, mirror_fault_shapes, NULL, NULL),
    SHAPES_END};
static const struct shape fault_shapes[] = {
    UNQUALIFIED_LEAF("faultcode", OCCURS_ONE, close_faultcode),
    UNQUALIFIED_LEAF("faultstring", OCCURS_ONE, close_faultstring),
    UNQUALIFIED_LEAF("faultactor", OCCURS_OPTIONAL, NULL),
    {.ns = NULL, .name = "detail", .content = SHAPE_CHILDREN, .occurs = OCCURS_OPTIONAL,
     .children = detail_shapes},
    SHAPES_END};
static const struct shape fault_shape = {
    .ns = SOAP_ENV_NS, .name = "Fault", .content = SHAPE_CHILDREN, .occurs = OCCURS_ONE,
    .label = "Fault", .children = fault_shapes, .close = close_fault};

/* Authenticate */
static int close_auth_ok(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    struct response_builder *b = ctx;
    return read_bool(x, "IsSuccessful", text, len, &b->resp->auth.ok);
}

static int close_auth_error(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct response_builder *b = ctx;
    b->resp->auth.error_message = copy_text(b, text, len);
    return 0;
}

static int close_auth_token(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct response_builder *b = ctx;
    b->resp->auth.signed_app_token = copy_text(b, text, len);
    return 0;
}

static int close_auth_build(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct response_builder *b = ctx;
    b->resp->auth.build = copy_text(b, text, len);
    return 0;
}

static int close_auth_client_state(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    struct response_builder *b = ctx;
    b->resp->auth.client_state = copy_text(b, text, len);
    b->resp->auth.client_state_len = len;
    return 0;
}

/* {"doNotReplicate":"true"} (a JSON true is taken too); anything else replicates. */
static int close_auth_information(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    struct response_builder *b = ctx;
    if (len == 0)
        return 0;
    json_error_t error;
    json_t *info = json_loadb(text, len, 0, &error);
    if (!json_is_object(info)) {
        json_decref(info);
        soap_xml_fail(x, "AdditionalInformationJson is not a JSON object");
        return -1;
    }
    json_t *flag = json_object_get(info, "doNotReplicate");
    b->resp->auth.do_not_replicate =
        json_is_true(flag) || (json_is_string(flag) && strcmp(json_string_value(flag), "true") == 0);
    json_decref(info);
    return 0;
}

static const struct shape authenticate_shapes[] = {
    SHAPE_LEAF("IsSuccessful", SHAPE_TEXT, OCCURS_ONE, NULL, close_auth_ok),
    SHAPE_LEAF("ErrorMessage", SHAPE_TEXT, OCCURS_OPTIONAL, NULL, close_auth_error),
    SHAPE_LEAF("SignedApplicationToken", SHAPE_TEXT, OCCURS_OPTIONAL, NULL, close_auth_token),
    SHAPE_LEAF("SupportedInterfaces", SHAPE_TEXT, OCCURS_OPTIONAL, NULL, NULL),
    SHAPE_LEAF("SuperOfficeMirroringBuild", SHAPE_TEXT, OCCURS_OPTIONAL, NULL, close_auth_build),
    SHAPE_LEAF("ClientState", SHAPE_VERBATIM, OCCURS_OPTIONAL, NULL, close_auth_client_state),
    SHAPE_LEAF("AdditionalInformationJson", SHAPE_TEXT, OCCURS_OPTIONAL, NULL,
               close_auth_information),
    SHAPES_END};

/* TableState answers */
static struct table_state *last_state(void *ctx)
{
    return soap_vec_last(&((struct response_builder *)ctx)->states);
}

static int open_state(struct soap_xml *x, void *ctx)
{
    (void)x;
    soap_vec_push(&((struct response_builder *)ctx)->states);
    return 0;
}

static int close_state_name(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    last_state(ctx)->name = copy_text(ctx, text, len);
    return 0;
}

static int close_state_lsn(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    return read_number(x, "Lsn", text, len, &last_state(ctx)->lsn);
}

static int close_state_change(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    for (int c = CHANGE_CREATED; c <= CHANGE_REJECTED; c++) {
        const char *name = table_change_name((enum table_change)c);
        if (strlen(name) == len && memcmp(name, text, len) == 0) {
            last_state(ctx)->change = (enum table_change)c;
            return 0;
        }
    }
    soap_xml_fail(x, "unknown Change \"%.*s\"", (int)(len > 32 ? 32 : len), text);
    return -1;
}

static int close_state_error(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x;
    last_state(ctx)->error = copy_text(ctx, text, len);
    return 0;
}

static int close_state_inserted(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    return read_number(x, "Inserted", text, len, &last_state(ctx)->inserted);
}

static int close_state_updated(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    return read_number(x, "Updated", text, len, &last_state(ctx)->updated);
}

static int close_state_deleted(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    return read_number(x, "Deleted", text, len, &last_state(ctx)->deleted);
}

static int close_state_skipped(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    return read_number(x, "Skipped", text, len, &last_state(ctx)->skipped);
}

static int close_states(struct soap_xml *x, void *ctx, const char *text, size_t len)
{
    (void)x, (void)text, (void)len;
    struct response_builder *b = ctx;
    b->resp->states = soap_vec_finish(&b->states, b->arena, &b->resp->nstates);
    return 0;
}

#define STATE_NAME_LSN \
    SHAPE_LEAF("Name", SHAPE_TEXT, OCCURS_ONE, NULL, close_state_name), \
    SHAPE_LEAF("Lsn", SHAPE_TEXT, OCCURS_ONE, NULL, close_state_lsn)
#define STATE_LIST(state_shapes) \
    {SHAPE_NODE("TableState", OCCURS_ANY, "table", (state_shapes), open_state, NULL), SHAPES_END}
#define TABLES_OF(list_shapes) \
    {SHAPE_NODE("Tables", OCCURS_ONE, NULL, (list_shapes), NULL, close_states), SHAPES_END}

static const struct shape schema_state_shapes[] = {
    STATE_NAME_LSN,
    SHAPE_LEAF("Change", SHAPE_TEXT, OCCURS_ONE, NULL, close_state_change),
    SHAPE_LEAF("Error", SHAPE_TEXT, OCCURS_OPTIONAL, NULL, close_state_error),
    SHAPES_END};
static const struct shape schema_list_shapes[] = STATE_LIST(schema_state_shapes);
static const struct shape schema_response_shapes[] = TABLES_OF(schema_list_shapes);

static const struct shape wipe_state_shapes[] = {STATE_NAME_LSN, SHAPES_END};
static const struct shape wipe_list_shapes[] = STATE_LIST(wipe_state_shapes);
static const struct shape wipe_response_shapes[] = TABLES_OF(wipe_list_shapes);

static const struct shape row_data_state_shapes[] = {
    STATE_NAME_LSN,
    SHAPE_LEAF("Inserted", SHAPE_TEXT, OCCURS_ONE, NULL, close_state_inserted),
    SHAPE_LEAF("Updated", SHAPE_TEXT, OCCURS_ONE, NULL, close_state_updated),
    SHAPE_LEAF("Deleted", SHAPE_TEXT, OCCURS_ONE, NULL, close_state_deleted),
    SHAPE_LEAF("Skipped", SHAPE_TEXT, OCCURS_ONE, NULL, close_state_skipped),
    SHAPES_END};
static const struct shape row_data_list_shapes[] = STATE_LIST(row_data_state_shapes);
static const struct shape row_data_response_shapes[] = TABLES_OF(row_data_list_shapes);

static const struct shape response_shapes[SOAP_OP_COUNT] = {
    [SOAP_OP_AUTHENTICATE] = SHAPE_NODE("AuthenticateResponse", OCCURS_ONE,
                                        "AuthenticateResponse", authenticate_shapes, NULL, NULL),
    [SOAP_OP_TABLESCHEMA] = SHAPE_NODE("TableSchemaResponse", OCCURS_ONE, "TableSchemaResponse",
                                       schema_response_shapes, NULL, NULL),
    [SOAP_OP_WIPE] = SHAPE_NODE("WipeResponse", OCCURS_ONE, "WipeResponse", wipe_response_shapes,
                                NULL, NULL),
    [SOAP_OP_ROWDATA] = SHAPE_NODE("RowDataResponse", OCCURS_ONE, "RowDataResponse",
                                   row_data_response_shapes, NULL, NULL),
    [SOAP_OP_REPLICATIONCOMPLETED] =
        SHAPE_NODE("ReplicationCompletedResponse", OCCURS_ONE, "ReplicationCompletedResponse",
                   NULL, NULL, NULL),
};

static const struct shape *response_body_element(void *ctx, const char *ns, const char *name,
                                                 size_t index)
{
    struct response_builder *b = ctx;
    if (b->body_error[0])
        return NULL;
    if (index > 1) {
        snprintf(b->body_error, sizeof(b->body_error), "the SOAP Body holds more than one element");
        return NULL;
    }
    if (soap_xml_ns_is(ns, SOAP_ENV_NS) && strcmp(name, "Fault") == 0) {
        b->resp->is_fault = 1;
        return &fault_shape;
    }
    const struct shape *want = &response_shapes[b->op];
    if (soap_xml_ns_is(ns, SOAP_NS) && strcmp(name, want->name) == 0)
        return want;
    snprintf(b->body_error, sizeof(b->body_error), "expected <%s> or a Fault, got <%.100s>",
             want->name, name);
    return NULL;
}

static const struct soap_xml_ops response_ops = {
    .body_element = response_body_element,
    .unqualified_is_error = 0,
};

int soap_parse_response(const char *body, size_t len, enum soap_op op, struct arena *arena,
                        struct soap_response *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    out->auth.error_message = out->auth.signed_app_token = out->auth.build = "";
    struct response_builder b = {
        .resp = out, .arena = arena, .op = op, .states = SOAP_VEC_INIT(struct table_state)};
    struct soap_xml_result res;
    int rc = soap_xml_parse(body, len, &response_ops, &b, &res);
    soap_vec_free(&b.states);
    const char *problem = rc < 0 ? res.env_error
                          : b.body_error[0] ? b.body_error
                          : res.shape_error[0] ? res.shape_error
                          : res.nbody == 0 ? "the SOAP Body is empty"
                          : NULL;
    if (!problem)
        return 0;
    snprintf(err, errlen, "%s response: %s", soap_op_name(op), problem);
    return -1;
}
