/* fuzz/soap_request: fuzz target for the receiver's request parser (proto/soap.h). Each input is
 * parsed twice: whole, as a body with no SOAPAction; then without its first byte, with a
 * SOAPAction chosen by that byte (low three bits: one of the five operations, "" or an unknown
 * action; bit 3: quoted). Every string of a parsed request is read back (so a sanitizer sees
 * dangling or short ones), and TableSchema tables go through schema_prepare. The service's
 * attribute bound (soap_xml_attributes_bounded) scans every input as well. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "common/arena.h"
#include "common/log.h"
#include "proto/fault.h"
#include "proto/schema.h"
#include "proto/soap.h"
#include "proto/soap_xml.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* A running checksum of what was read, kept so the reads are not optimised away. */
static volatile size_t sink;

static size_t touch(const char *s)
{
    return s ? strlen(s) : 0;
}

static size_t touch_bytes(const char *s, size_t len)
{
    size_t sum = 0;
    for (size_t i = 0; i < len; i++)
        sum += (unsigned char)s[i];
    return sum;
}

static void walk(struct soap_request *req, struct arena *arena)
{
    size_t sum = (size_t)req->op + (size_t)req->ntokens + touch(req->op_fault.message) +
                 touch(req->body_fault.message);
    if (req->token)
        sum += touch_bytes(req->token, req->token_len);
    if (req->client_state)
        sum += touch_bytes(req->client_state, req->client_state_len);
    for (size_t t = 0; t < req->ntables; t++) {
        struct table_schema *ts = &req->tables[t];
        sum += touch(ts->name);
        for (size_t c = 0; c < ts->ncolumns; c++) {
            const struct column *col = &ts->columns[c];
            sum += touch(col->name) + touch(col->type_text) + touch(col->default_text) +
                   (size_t)col->nullable;
        }
        for (size_t k = 0; k < ts->npk; k++)
            sum += touch(ts->pk_names[k]);
        /* The next step a worker takes with a parsed table. */
        if (ts->name && ts->ncolumns > 0) {
            schema_prepare(ts, "Cust12020", NULL, arena);
            sum += touch(ts->reject) + touch(ts->canonical) + touch(ts->hash);
        }
    }
    for (size_t w = 0; w < req->nwipe; w++)
        sum += touch(req->wipe_tables[w]);
    for (size_t b = 0; b < req->nbatches; b++) {
        const struct batch *bt = &req->batches[b];
        sum += touch(bt->table) + (size_t)bt->lsn;
        for (size_t c = 0; c < bt->ncolumns; c++)
            sum += touch(bt->columns[c]);
        for (size_t r = 0; r < bt->nrows; r++) {
            const struct row *row = &bt->rows[r];
            sum += (size_t)row->op + (size_t)row->lsn;
            for (size_t v = 0; v < row->nvalues; v++) {
                const struct raw_value *rv = &row->values[v];
                sum += (size_t)rv->kind;
                if (rv->kind != RAW_NULL)
                    sum += touch_bytes(rv->data, rv->len);
            }
        }
    }
    for (size_t s = 0; s < req->nsummary; s++)
        sum += touch(req->summary[s].name) + (size_t)req->summary[s].inserted;
    sink += sum;
}

static void parse_one(const char *body, size_t len, const char *soapaction)
{
    struct arena arena;
    struct soap_request req;
    struct fault env_fault;
    arena_init(&arena);
    memset(&req, 0, sizeof(req));
    fault_clear(&env_fault);
    if (soap_parse_request(body, len, soapaction, &arena, &req, &env_fault) == 0)
        walk(&req, &arena);
    else
        sink += touch(env_fault.message);
    arena_free(&arena);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        log_set_level(LOG_LVL_ERROR);
        initialised = 1;
    }
    parse_one((const char *)data, size, NULL);
    sink += (size_t)soap_xml_attributes_bounded((const char *)data, size, 8);   /* the pre-check */
    if (size == 0)
        return 0;

    unsigned sel = data[0] & 7u;
    int quoted = (data[0] & 8u) != 0;
    char action[160];
    if (sel < SOAP_OP_COUNT)
        snprintf(action, sizeof(action), "%s%s/IMirroringClientService/%s%s", quoted ? "\"" : "",
                 SOAP_NS, soap_op_name((enum soap_op)sel), quoted ? "\"" : "");
    else if (sel == SOAP_OP_COUNT)
        snprintf(action, sizeof(action), "%s", quoted ? "\"\"" : "");
    else
        snprintf(action, sizeof(action), "%s%s/IMirroringClientService/Frobnicate%s",
                 quoted ? "\"" : "", SOAP_NS, quoted ? "\"" : "");
    parse_one((const char *)data + 1, size - 1, action);
    return 0;
}
