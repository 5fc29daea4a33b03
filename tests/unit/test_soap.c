/* tests/unit/test_soap: proto/soap, both directions: request parsing (operations, SOAPAction,
 * namespaces, XML hardening, values, shapes), response and fault writers, sender builders, and
 * round trips through both sides. */
#include <check.h>
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "common/arena.h"
#include "common/buf.h"
#include "proto/soap.h"
#include "proto/soap_xml.h"

#include <libxml/xmlmemory.h>

#define ENV_OPEN "<s:Envelope xmlns:s=\"" SOAP_ENV_NS "\">"
#define ENV_CLOSE "</s:Envelope>"
#define TOKEN_HEADER \
    "<s:Header><SignedToken s:mustUnderstand=\"1\" xmlns=\"" SOAP_NS "\">  tok.en.sig\n" \
    "</SignedToken></s:Header>"
#define NSA "xmlns=\"" SOAP_NS "\""
#define ACTION(op) "\"" SOAP_NS "/IMirroringClientService/" op "\""

static struct arena arena;
static struct soap_request req;
static struct fault env_fault;
static struct buf doc;

static void setup(void)
{
    arena_init(&arena);
    buf_init(&doc);
}

static void teardown(void)
{
    arena_free(&arena);
    buf_free(&doc);
}

static int parse_text(const char *xml, const char *action)
{
    return soap_parse_request(xml, strlen(xml), action, &arena, &req, &env_fault);
}

/* Parses a request whose Body holds body, with the SignedToken header. */
static int parse_body(const char *body, const char *action)
{
    buf_reset(&doc);
    buf_printf(&doc, ENV_OPEN TOKEN_HEADER "<s:Body>%s</s:Body>" ENV_CLOSE, body);
    return parse_text(doc.data, action);
}

static void assert_ok(int rc)
{
    ck_assert_int_eq(rc, 0);
    ck_assert_msg(req.op_fault.code == FAULT_NONE, "op fault: %s", req.op_fault.message);
    ck_assert_msg(req.body_fault.code == FAULT_NONE, "body fault: %s", req.body_fault.message);
}

static void assert_body_fault(int rc, const char *fragment)
{
    ck_assert_int_eq(rc, 0);
    ck_assert_int_eq(req.op_fault.code, FAULT_NONE);
    ck_assert_int_eq(req.body_fault.code, FAULT_MALFORMED_REQUEST);
    ck_assert_msg(strstr(req.body_fault.message, fragment), "\"%s\" lacks \"%s\"",
                  req.body_fault.message, fragment);
}

static void assert_env_fault(int rc)
{
    ck_assert_int_eq(rc, -1);
    ck_assert_int_eq(env_fault.code, FAULT_MALFORMED_REQUEST);
    ck_assert(env_fault.message[0] != '\0');
}

/* Minimal valid bodies, one per operation. */
static const char *const minimal_bodies[SOAP_OP_COUNT] = {
    [SOAP_OP_AUTHENTICATE] = "<AuthenticateRequest " NSA "><ClientState/></AuthenticateRequest>",
    [SOAP_OP_TABLESCHEMA] =
        "<TableSchemaRequest " NSA "><Tables><Table><Name>t</Name><Columns><Column><Name>a</Name>"
        "<Type>int</Type><Nullable>false</Nullable></Column></Columns><PrimaryKey><Column>a"
        "</Column></PrimaryKey></Table></Tables></TableSchemaRequest>",
    [SOAP_OP_WIPE] = "<WipeRequest " NSA "><Tables><Name>t</Name></Tables></WipeRequest>",
    [SOAP_OP_ROWDATA] = "<RowDataRequest " NSA "><Batches><Batch><Table>t</Table><Columns><Name>a"
                        "</Name></Columns><Rows><Row op=\"I\"><V>1</V></Row></Rows></Batch>"
                        "</Batches></RowDataRequest>",
    [SOAP_OP_REPLICATIONCOMPLETED] =
        "<ReplicationCompletedRequest " NSA "><Summary/></ReplicationCompletedRequest>",
};

START_TEST(test_each_operation_with_and_without_action)
{
    for (int op = 0; op < SOAP_OP_COUNT; op++) {
        char action[256];
        snprintf(action, sizeof(action), "%s/IMirroringClientService/%s", SOAP_NS,
                 soap_op_name((enum soap_op)op));
        const char *actions[] = {NULL, "", "\"\"", action};
        for (size_t i = 0; i < sizeof(actions) / sizeof(actions[0]); i++) {
            assert_ok(parse_body(minimal_bodies[op], actions[i]));
            ck_assert_int_eq(req.op, op);
            ck_assert_int_eq(req.ntokens, 1);
            ck_assert_str_eq(req.token, "tok.en.sig");
            ck_assert_uint_eq(req.token_len, 10);
        }
    }
}
END_TEST

START_TEST(test_quoted_action)
{
    assert_ok(parse_body(minimal_bodies[SOAP_OP_WIPE], ACTION("Wipe")));
    ck_assert_int_eq(req.op, SOAP_OP_WIPE);
    ck_assert_uint_eq(req.nwipe, 1);
    ck_assert_str_eq(req.wipe_tables[0], "t");
}
END_TEST

START_TEST(test_mismatched_action)
{
    ck_assert_int_eq(parse_body(minimal_bodies[SOAP_OP_WIPE], ACTION("RowData")), 0);
    ck_assert_int_eq(req.op_fault.code, FAULT_MALFORMED_REQUEST);
    ck_assert_ptr_nonnull(strstr(req.op_fault.message, "RowData"));
}
END_TEST

START_TEST(test_unknown_action)
{
    ck_assert_int_eq(parse_body(minimal_bodies[SOAP_OP_WIPE], ACTION("Drop")), 0);
    ck_assert_int_eq(req.op_fault.code, FAULT_UNKNOWN_OPERATION);
    ck_assert_int_eq(parse_body(minimal_bodies[SOAP_OP_WIPE], "urn:other/Wipe"), 0);
    ck_assert_int_eq(req.op_fault.code, FAULT_UNKNOWN_OPERATION);
    /* an unknown action wins even over an empty Body */
    ck_assert_int_eq(parse_body("", ACTION("Drop")), 0);
    ck_assert_int_eq(req.op_fault.code, FAULT_UNKNOWN_OPERATION);
}
END_TEST

START_TEST(test_unknown_body_element)
{
    ck_assert_int_eq(parse_body("<DropRequest " NSA "/>", NULL), 0);
    ck_assert_int_eq(req.op_fault.code, FAULT_UNKNOWN_OPERATION);
    ck_assert_int_eq(parse_body("<WipeRequest xmlns=\"urn:other\"/>", NULL), 0);
    ck_assert_int_eq(req.op_fault.code, FAULT_UNKNOWN_OPERATION);
    ck_assert_int_eq(parse_body("<DropRequest " NSA "/>", ACTION("Wipe")), 0);
    ck_assert_int_eq(req.op_fault.code, FAULT_UNKNOWN_OPERATION);
}
END_TEST

START_TEST(test_two_body_elements)
{
    buf_reset(&doc);
    char body[2048];
    snprintf(body, sizeof(body), "%s%s", minimal_bodies[SOAP_OP_WIPE],
             minimal_bodies[SOAP_OP_WIPE]);
    ck_assert_int_eq(parse_body(body, NULL), 0);
    ck_assert_int_eq(req.op_fault.code, FAULT_MALFORMED_REQUEST);
    ck_assert_ptr_nonnull(strstr(req.op_fault.message, "more than one"));
}
END_TEST

START_TEST(test_empty_body)
{
    ck_assert_int_eq(parse_body("  ", ACTION("Wipe")), 0);
    ck_assert_int_eq(req.op_fault.code, FAULT_MALFORMED_REQUEST);
}
END_TEST

START_TEST(test_prefix_variations)
{
    const char *xml =
        "<soapenv:Envelope xmlns:soapenv=\"" SOAP_ENV_NS "\" xmlns:ns0=\"" SOAP_NS "\">"
        "<soapenv:Header><ns0:SignedToken>abc</ns0:SignedToken></soapenv:Header>"
        "<soapenv:Body><ns0:WipeRequest><ns0:Tables><ns0:Name>a</ns0:Name>"
        "<Name xmlns=\"" SOAP_NS "\">b</Name></ns0:Tables></ns0:WipeRequest></soapenv:Body>"
        "</soapenv:Envelope>";
    assert_ok(parse_text(xml, NULL));
    ck_assert_int_eq(req.op, SOAP_OP_WIPE);
    ck_assert_str_eq(req.token, "abc");
    ck_assert_uint_eq(req.nwipe, 2);
    ck_assert_str_eq(req.wipe_tables[1], "b");
}
END_TEST

START_TEST(test_element_in_no_namespace)
{
    assert_body_fault(parse_body("<m:WipeRequest xmlns:m=\"" SOAP_NS "\"><m:Tables><Name>a</Name>"
                                 "</m:Tables></m:WipeRequest>", NULL),
                      "no namespace");
    assert_body_fault(parse_body("<WipeRequest " NSA "><Tables><Name xmlns=\"\">a</Name></Tables>"
                                 "</WipeRequest>", NULL),
                      "no namespace");
}
END_TEST

START_TEST(test_unknown_ns_element)
{
    assert_body_fault(parse_body("<WipeRequest " NSA "><Tables><Name>a</Name><Table>b</Table>"
                                 "</Tables></WipeRequest>", NULL),
                      "unexpected element <Table>");
}
END_TEST

START_TEST(test_foreign_element_skipped)
{
    assert_ok(parse_body("<WipeRequest " NSA "><x:Note xmlns:x=\"urn:other\"><Name>zz</Name>"
                         "<x:Deep><Tables/></x:Deep></x:Note><Tables><Name>a</Name>"
                         "<y:Extra xmlns:y=\"urn:y\"/></Tables></WipeRequest>", NULL));
    ck_assert_uint_eq(req.nwipe, 1);
    ck_assert_str_eq(req.wipe_tables[0], "a");
}
END_TEST

START_TEST(test_header_blocks)
{
    const char *xml =
        ENV_OPEN "<s:Header><x:Trace xmlns:x=\"urn:x\" s:mustUnderstand=\"1\">1</x:Trace>"
        "<Other " NSA ">2</Other><SignedToken " NSA ">first</SignedToken>"
        "<SignedToken " NSA ">second</SignedToken></s:Header><s:Body>"
        "<WipeRequest " NSA "><Tables><Name>a</Name></Tables></WipeRequest></s:Body>" ENV_CLOSE;
    assert_ok(parse_text(xml, NULL));
    ck_assert_int_eq(req.ntokens, 2);
    ck_assert_str_eq(req.token, "first");

    assert_ok(parse_text(ENV_OPEN "<s:Body>" "<WipeRequest " NSA "><Tables><Name>a</Name>"
                         "</Tables></WipeRequest></s:Body>" ENV_CLOSE, NULL));
    ck_assert_int_eq(req.ntokens, 0);
    ck_assert_ptr_null(req.token);
}
END_TEST

START_TEST(test_not_an_envelope)
{
    assert_env_fault(parse_text("not xml at all", NULL));
    assert_env_fault(parse_text("", NULL));
    assert_env_fault(parse_text("<Envelope/>", NULL));
    assert_env_fault(parse_text("<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\">"
                                "<s:Body/></s:Envelope>", NULL));
    assert_env_fault(parse_text(ENV_OPEN TOKEN_HEADER ENV_CLOSE, NULL));
    assert_env_fault(parse_text(ENV_OPEN "<s:Body/><s:Header/>" ENV_CLOSE, NULL));
    assert_env_fault(parse_text(ENV_OPEN "<s:Body/><s:Body/>" ENV_CLOSE, NULL));
    /* not well-formed deep inside a body that is otherwise fine */
    assert_env_fault(parse_body("<WipeRequest " NSA "><Tables><Name>a</Tables></WipeRequest>",
                                NULL));
    /* an undeclared prefix */
    assert_env_fault(parse_body("<m:WipeRequest><m:Tables/></m:WipeRequest>", NULL));
    /* a NUL byte after the root element, which libxml2 alone takes for the input's end */
    static const char after_nul[] = ENV_OPEN "<s:Body><WipeRequest " NSA "><Tables><Name>a</Name>"
                                    "</Tables></WipeRequest></s:Body>" ENV_CLOSE "\0<junk";
    for (size_t tail = 1; tail <= 6; tail += 5) {
        assert_env_fault(soap_parse_request(after_nul, sizeof(after_nul) - 1 - 6 + tail, NULL,
                                            &arena, &req, &env_fault));
        ck_assert_ptr_nonnull(strstr(env_fault.message, "NUL"));
    }
    /* the same document without it is fine */
    assert_ok(soap_parse_request(after_nul, sizeof(after_nul) - 1 - 6, NULL, &arena, &req,
                                 &env_fault));
}
END_TEST

START_TEST(test_xml_errors_stay_off_stderr)
{
    char path[] = "/tmp/test_soap_stderr_XXXXXX";
    int fd = mkstemp(path);
    ck_assert_int_ge(fd, 0);
    fflush(stderr);
    int saved = dup(STDERR_FILENO);
    dup2(fd, STDERR_FILENO);
    int rc = parse_text("<s:Envelope xmlns:s=\"" SOAP_ENV_NS "\"><oops></s:Envelope>", NULL);
    fflush(stderr);
    dup2(saved, STDERR_FILENO);
    close(saved);
    off_t size = lseek(fd, 0, SEEK_END);
    close(fd);
    unlink(path);
    assert_env_fault(rc);
    ck_assert_ptr_nonnull(strstr(env_fault.message, "line 1"));
    ck_assert_int_eq(size, 0);
}
END_TEST

START_TEST(test_dtd_refused)
{
    assert_env_fault(parse_text("<!DOCTYPE s:Envelope [<!ELEMENT s:Envelope ANY>]>" ENV_OPEN
                                "<s:Body/>" ENV_CLOSE, NULL));
    assert_env_fault(parse_text("<!DOCTYPE s:Envelope SYSTEM \"http://example.invalid/x.dtd\">"
                                ENV_OPEN "<s:Body/>" ENV_CLOSE, NULL));
    /* A malformed internal entity: libxml2 keeps a document of its own for entities in SAX
     * mode, left behind when the subset's error ends the parse, were the subset read (valgrind
     * and ASan see it leak). */
    assert_env_fault(parse_text("<!DOCTYPE s:Envelope [<!ENTITY e \"value\" junk>]>" ENV_OPEN
                                "<s:Body/>" ENV_CLOSE, NULL));
}
END_TEST

START_TEST(test_external_entity_refused)
{
    assert_env_fault(parse_text("<!DOCTYPE s:Envelope [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>"
                                ENV_OPEN "<s:Body><WipeRequest " NSA "><Tables><Name>&xxe;</Name>"
                                "</Tables></WipeRequest></s:Body>" ENV_CLOSE, NULL));
    /* without a DTD, an entity is simply undeclared */
    assert_env_fault(parse_body("<WipeRequest " NSA "><Tables><Name>&xxe;</Name></Tables>"
                                "</WipeRequest>", NULL));
}
END_TEST

START_TEST(test_billion_laughs_refused_quickly)
{
    struct buf x = BUF_INIT;
    buf_puts(&x, "<?xml version=\"1.0\"?><!DOCTYPE s:Envelope [<!ENTITY l0 \"lol\">");
    for (int i = 1; i <= 10; i++)
        buf_printf(&x, "<!ENTITY l%d \"&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;&l%d;\">", i,
                   i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1, i - 1);
    buf_puts(&x, "]>" ENV_OPEN "<s:Body><WipeRequest " NSA "><Tables><Name>&l10;</Name>"
                 "</Tables></WipeRequest></s:Body>" ENV_CLOSE);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int rc = parse_text(x.data, NULL);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    buf_free(&x);
    assert_env_fault(rc);
    double seconds = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    ck_assert_msg(seconds < 1.0, "took %.3f s", seconds);
}
END_TEST

/* Parses one row of values and returns them. */
static const struct raw_value *row_values(const char *values, size_t *n)
{
    char body[4096];
    snprintf(body, sizeof(body),
             "<RowDataRequest " NSA "><Batches><Batch><Table>t</Table><Columns/><Rows>"
             "<Row op=\"U\" unknown=\"x\">%s</Row></Rows></Batch></Batches></RowDataRequest>",
             values);
    assert_ok(parse_body(body, NULL));
    ck_assert_uint_eq(req.nbatches, 1);
    ck_assert_uint_eq(req.batches[0].nrows, 1);
    ck_assert_int_eq(req.batches[0].rows[0].op, 'U');
    *n = req.batches[0].rows[0].nvalues;
    return req.batches[0].rows[0].values;
}

static void assert_value(const struct raw_value *v, enum raw_kind kind, const char *data,
                         size_t len)
{
    ck_assert_int_eq(v->kind, kind);
    ck_assert_uint_eq(v->len, len);
    ck_assert_mem_eq(v->data, data, len);
    ck_assert_int_eq(v->utf8_checked, 1);   /* libxml2 checked it: value_check need not again */
}

/* An error found while libxml2 reads text (here "]]>" in a value, and text where the envelope
 * allows none) ends the parse without freeing the input under the reader: xmlStopParser did,
 * and a large body (its own mapping, see main) then crashed the parse. */
START_TEST(test_error_inside_large_text)
{
    struct buf rows = BUF_INIT;
    for (int i = 0; i < 20000; i++)
        buf_printf(&rows, "<Row op=\"I\"><V>%d</V><V>v%d</V></Row>", i, i);
    const char *cases[][3] = {
        {"<RowDataRequest xmlns=\"" SOAP_NS "\"><Batches><Batch><Table>t</Table><Columns><Name>a"
         "</Name><Name>b</Name></Columns><Rows><Row op=\"I\"><V>1</V><V>x]]>y</V></Row>",
         "</Rows></Batch></Batches></RowDataRequest>", "']]>' not allowed"},
        {"junk<RowDataRequest xmlns=\"" SOAP_NS "\"><Batches><Batch><Table>t</Table><Columns><Name>a"
         "</Name><Name>b</Name></Columns><Rows>", "</Rows></Batch></Batches></RowDataRequest>",
         "unexpected text in the SOAP envelope"},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        buf_reset(&doc);
        buf_printf(&doc, ENV_OPEN TOKEN_HEADER "<s:Body>%s%s%s</s:Body>" ENV_CLOSE, cases[i][0],
                   rows.data, cases[i][1]);
        if (i == 1)   /* the text sits in the Envelope itself, before the Body */
            memcpy(strstr(doc.data, "<s:Body>junk"), "junk<s:Body>", 12);
        ck_assert_int_eq(soap_parse_request(doc.data, doc.len, NULL, &arena, &req, &env_fault), -1);
        ck_assert_msg(strstr(env_fault.message, cases[i][2]), "%s", env_fault.message);
    }
    buf_free(&rows);
}
END_TEST

START_TEST(test_values)
{
    size_t n;
    const struct raw_value *v = row_values(
        "<V>a&amp;b&#x41;&lt;&#233;</V><V>   </V><V><![CDATA[<x> & ]]></V>"
        "<V> a<![CDATA[ b ]]><!-- c -->d </V><V/><N/><B> AAE= </B><V></V><N></N>"
        "<V>line1\r\nline2&#13;</V>", &n);
    ck_assert_uint_eq(n, 10);
    assert_value(&v[0], RAW_TEXT, "a&bA<\xC3\xA9", 7);
    assert_value(&v[1], RAW_TEXT, "   ", 3);
    assert_value(&v[2], RAW_TEXT, "<x> & ", 6);
    assert_value(&v[3], RAW_TEXT, " a b d ", 7);
    assert_value(&v[4], RAW_TEXT, "", 0);
    ck_assert_int_eq(v[5].kind, RAW_NULL);
    ck_assert_ptr_null(v[5].data);
    assert_value(&v[6], RAW_BASE64, "AAE=", 4);
    assert_value(&v[7], RAW_TEXT, "", 0);
    ck_assert_int_eq(v[8].kind, RAW_NULL);
    assert_value(&v[9], RAW_TEXT, "line1\nline2\r", 12);
}
END_TEST

START_TEST(test_null_with_content)
{
    assert_body_fault(parse_body("<RowDataRequest " NSA "><Batches><Batch><Table>t</Table><Columns/>"
                                 "<Rows><Row op=\"D\"><N>x</N></Row></Rows></Batch></Batches>"
                                 "</RowDataRequest>", NULL),
                      "RowData: batch 1: row 1: value 1: unexpected text in <N>");
}
END_TEST

static int parse_rows(const char *rows, const char *after_rows)
{
    char body[4096];
    snprintf(body, sizeof(body),
             "<RowDataRequest " NSA "><Batches><Batch><Table>t</Table><Columns><Name>a</Name>"
             "</Columns><Rows/></Batch><Batch><Table>u</Table><Columns><Name>a</Name></Columns>"
             "<Rows>%s</Rows>%s</Batch></Batches></RowDataRequest>", rows, after_rows);
    return parse_body(body, ACTION("RowData"));
}

#define FOUR_ROWS "<Row op=\"I\"/><Row op=\"U\" lsn=\"0\"/><Row op=\"D\" lsn=\"9223372036854775807\"/>" \
    "<Row op=\"I\"/>"

START_TEST(test_row_ops_and_lsns)
{
    assert_ok(parse_rows(FOUR_ROWS "<Row op=\"D\" lsn=\"42\"><V>7</V></Row>", "<Lsn> 99 </Lsn>"));
    ck_assert_uint_eq(req.nbatches, 2);
    const struct batch *b0 = &req.batches[0], *b1 = &req.batches[1];
    ck_assert_str_eq(b0->table, "t");
    ck_assert_uint_eq(b0->nrows, 0);
    ck_assert_int_eq(b0->has_lsn, 0);
    ck_assert_str_eq(b1->table, "u");
    ck_assert_uint_eq(b1->ncolumns, 1);
    ck_assert_str_eq(b1->columns[0], "a");
    ck_assert_uint_eq(b1->nrows, 5);
    ck_assert_int_eq(b1->rows[0].has_lsn, 0);
    ck_assert_int_eq(b1->rows[1].has_lsn, 1);
    ck_assert_int_eq(b1->rows[1].lsn, 0);
    ck_assert_int_eq(b1->rows[2].op, 'D');
    ck_assert_int_eq(b1->rows[2].lsn, INT64_MAX);
    ck_assert_int_eq(b1->rows[4].lsn, 42);
    ck_assert_uint_eq(b1->rows[4].nvalues, 1);
    ck_assert_int_eq(b1->has_lsn, 1);
    ck_assert_int_eq(b1->lsn, 99);
}
END_TEST

START_TEST(test_bad_op)
{
    assert_body_fault(parse_rows(FOUR_ROWS "<Row lsn=\"5\"/>", ""),
                      "RowData: batch 2: row 5: missing op attribute");
    assert_body_fault(parse_rows("<Row op=\"X\"/>", ""), "row 1: op \"X\"");
    assert_body_fault(parse_rows("<Row op=\"i\"/>", ""), "op \"i\"");
    assert_body_fault(parse_rows("<Row op=\"\"/>", ""), "op \"\"");
    assert_body_fault(parse_rows("<Row op=\"ID\"/>", ""), "op \"ID\"");
}
END_TEST

START_TEST(test_bad_lsn)
{
    const char *bad[] = {"-1", "1e3", "9223372036854775808", " 1", "1 ", "+1", "", "0x10", "abc"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char rows[128], lsn[128];
        snprintf(rows, sizeof(rows), "<Row op=\"I\" lsn=\"%s\"/>", bad[i]);
        assert_body_fault(parse_rows(rows, ""), "row 1: lsn");
        snprintf(lsn, sizeof(lsn), "<Lsn>%s</Lsn>", bad[i]);
        if (strcmp(bad[i], " 1") != 0 && strcmp(bad[i], "1 ") != 0)   /* element text is trimmed */
            assert_body_fault(parse_rows("", lsn), "batch 2: Lsn");
    }
}
END_TEST

START_TEST(test_batch_shapes)
{
    assert_body_fault(parse_body("<RowDataRequest " NSA "><Batches><Batch><Table>t</Table><Columns/>"
                                 "<Lsn>1</Lsn></Batch></Batches></RowDataRequest>", NULL),
                      "batch 1: missing <Rows>");
    assert_body_fault(parse_body("<RowDataRequest " NSA "><Batches><Batch><Columns/><Rows/></Batch>"
                                 "</Batches></RowDataRequest>", NULL),
                      "missing <Table>");
    assert_body_fault(parse_body("<RowDataRequest " NSA "><Batches><Batch><Table>t</Table><Rows/>"
                                 "</Batch></Batches></RowDataRequest>", NULL),
                      "missing <Columns>");
    assert_body_fault(parse_body("<RowDataRequest " NSA "><Batches/></RowDataRequest>", NULL),
                      "no <Batch>");
    assert_body_fault(parse_body("<RowDataRequest " NSA "/>", NULL), "missing <Batches>");
    assert_body_fault(parse_rows("", "<Lsn>1</Lsn><Lsn>2</Lsn>"), "more than one <Lsn>");
    assert_body_fault(parse_body("<RowDataRequest " NSA "><Batches><Batch><Table>t</Table><Rows/>"
                                 "<Columns/></Batch></Batches></RowDataRequest>", NULL),
                      "batch 1: missing <Columns>");
    assert_body_fault(parse_rows("", "<Lsn>1</Lsn><Rows/>"), "batch 2: <Rows> after <Lsn>");
    assert_body_fault(parse_rows("<Row op=\"I\">text<V>1</V></Row>", ""),
                      "unexpected text in <Row>");
    assert_body_fault(parse_rows("<Row op=\"I\"><V>1<Q/></V></Row>", ""),
                      "unexpected element <Q> in <V>");
}
END_TEST

#define COLUMN(name, type, nullable, extra) \
    "<Column><Name>" name "</Name><Type>" type "</Type><Nullable>" nullable "</Nullable>" extra \
    "</Column>"

START_TEST(test_table_schema)
{
    assert_ok(parse_body(
        "<TableSchemaRequest " NSA "><Tables><Table><Name> contact </Name><Columns>"
        COLUMN("contact_id", "int", "false", "")
        COLUMN("name", "nvarchar(220)", "TRUE", "<Default> (N'') </Default>")
        COLUMN("registered", "datetime", "0", "<Default>(getutcdate())</Default>")
        COLUMN("amount", "decimal(18,4)", "1", "")
        "</Columns><PrimaryKey><Column>contact_id</Column></PrimaryKey></Table>"
        "<Table><Name>other</Name><Columns/></Table></Tables></TableSchemaRequest>",
        ACTION("TableSchema")));
    ck_assert_uint_eq(req.ntables, 2);
    const struct table_schema *t = &req.tables[0];
    ck_assert_str_eq(t->name, "contact");
    ck_assert_uint_eq(t->ncolumns, 4);
    ck_assert_str_eq(t->columns[1].name, "name");
    ck_assert_str_eq(t->columns[1].type_text, "nvarchar(220)");
    ck_assert_int_eq(t->columns[0].nullable, 0);
    ck_assert_int_eq(t->columns[1].nullable, 1);
    ck_assert_int_eq(t->columns[2].nullable, 0);
    ck_assert_int_eq(t->columns[3].nullable, 1);
    ck_assert_ptr_null(t->columns[0].default_text);
    ck_assert_str_eq(t->columns[1].default_text, "(N'')");
    ck_assert_str_eq(t->columns[2].default_text, "(getutcdate())");
    ck_assert_uint_eq(t->npk, 1);
    ck_assert_str_eq(t->pk_names[0], "contact_id");
    ck_assert_uint_eq(req.tables[1].ncolumns, 0);
    ck_assert_uint_eq(req.tables[1].npk, 0);
}
END_TEST

START_TEST(test_table_schema_faults)
{
    assert_body_fault(parse_body("<TableSchemaRequest " NSA "><Tables/></TableSchemaRequest>", NULL),
                      "no <Table>");
    assert_body_fault(parse_body("<TableSchemaRequest " NSA "><Tables><Table><Name>Contact</Name>"
                                 "<Columns/></Table><Table><Name>x</Name><Columns/></Table><Table>"
                                 "<Name>cONTACT</Name><Columns/></Table></Tables>"
                                 "</TableSchemaRequest>", NULL),
                      "table 3: table \"cONTACT\" is listed twice");
    assert_body_fault(parse_body("<TableSchemaRequest " NSA "><Tables><Table><Name>t</Name><Columns>"
                                 COLUMN("a", "int", "false", "") COLUMN("b", "int", "maybe", "")
                                 "</Columns></Table></Tables></TableSchemaRequest>", NULL),
                      "TableSchema: table 1: column 2: Nullable \"maybe\"");
    assert_body_fault(parse_body("<TableSchemaRequest " NSA "><Tables><Table><Name>t</Name><Columns>"
                                 "<Column><Name>a</Name><Nullable>true</Nullable></Column>"
                                 "</Columns></Table></Tables></TableSchemaRequest>", NULL),
                      "column 1: missing <Type>");
}
END_TEST

START_TEST(test_wipe_empty)
{
    assert_body_fault(parse_body("<WipeRequest " NSA "><Tables/></WipeRequest>", NULL),
                      "no <Name>");
    assert_body_fault(parse_body("<WipeRequest " NSA "/>", NULL), "missing <Tables>");
}
END_TEST

START_TEST(test_replication_completed)
{
    assert_ok(parse_body("<ReplicationCompletedRequest " NSA "><Summary><TableSummary><Name>c</Name>"
                         "<Inserted>10</Inserted><Updated>3</Updated><Deleted>1</Deleted>"
                         "</TableSummary><TableSummary><Name>d</Name><Inserted>0</Inserted>"
                         "<Updated>0</Updated><Deleted>0</Deleted></TableSummary></Summary>"
                         "</ReplicationCompletedRequest>", NULL));
    ck_assert_uint_eq(req.nsummary, 2);
    ck_assert_str_eq(req.summary[0].name, "c");
    ck_assert_int_eq(req.summary[0].inserted, 10);
    ck_assert_int_eq(req.summary[0].updated, 3);
    ck_assert_int_eq(req.summary[0].deleted, 1);
    assert_ok(parse_body("<ReplicationCompletedRequest " NSA "/>", NULL));
    ck_assert_uint_eq(req.nsummary, 0);
    assert_body_fault(parse_body("<ReplicationCompletedRequest " NSA "><Summary><TableSummary>"
                                 "<Name>c</Name><Inserted>-1</Inserted><Updated>0</Updated>"
                                 "<Deleted>0</Deleted></TableSummary></Summary>"
                                 "</ReplicationCompletedRequest>", NULL),
                      "table 1: Inserted");
}
END_TEST

START_TEST(test_authenticate_client_state)
{
    assert_ok(parse_body("<AuthenticateRequest " NSA "><ClientState>  a &amp; <![CDATA[b]]>\n"
                         "</ClientState></AuthenticateRequest>", ACTION("Authenticate")));
    ck_assert_uint_eq(req.client_state_len, 8);
    ck_assert_mem_eq(req.client_state, "  a & b\n", 8);
    assert_ok(parse_body("<AuthenticateRequest " NSA "/>", NULL));
    ck_assert_ptr_null(req.client_state);
    assert_ok(parse_body("<AuthenticateRequest " NSA "><ClientState/></AuthenticateRequest>", NULL));
    ck_assert_ptr_nonnull(req.client_state);
    ck_assert_uint_eq(req.client_state_len, 0);
}
END_TEST

/* ---- round trips: the sender's builders through the receiver's parser ---- */

START_TEST(test_round_trip_requests)
{
    struct buf out = BUF_INIT;
    soap_build_authenticate(&out, "t.o.k", " state <&> ");
    assert_ok(parse_text(out.data, ACTION("Authenticate")));
    ck_assert_int_eq(req.op, SOAP_OP_AUTHENTICATE);
    ck_assert_str_eq(req.token, "t.o.k");
    ck_assert_str_eq(req.client_state, " state <&> ");

    struct column columns[2] = {
        {.name = "id", .type_text = "int", .nullable = 0},
        {.name = "note", .type_text = "nvarchar(max)", .nullable = 1, .default_text = "(N'x''y')"},
    };
    char *pk[] = {"id"};
    struct table_schema tables[1] = {
        {.name = "t", .columns = columns, .ncolumns = 2, .pk_names = pk, .npk = 1}};
    buf_reset(&out);
    soap_build_table_schema(&out, "t.o.k", tables, 1);
    assert_ok(parse_text(out.data, ACTION("TableSchema")));
    ck_assert_uint_eq(req.ntables, 1);
    ck_assert_uint_eq(req.tables[0].ncolumns, 2);
    ck_assert_int_eq(req.tables[0].columns[1].nullable, 1);
    ck_assert_str_eq(req.tables[0].columns[1].default_text, "(N'x''y')");
    ck_assert_ptr_null(req.tables[0].columns[0].default_text);
    ck_assert_str_eq(req.tables[0].pk_names[0], "id");

    char *wipe[] = {"a", "b"};
    buf_reset(&out);
    soap_build_wipe(&out, "t.o.k", wipe, 2);
    assert_ok(parse_text(out.data, NULL));
    ck_assert_uint_eq(req.nwipe, 2);
    ck_assert_str_eq(req.wipe_tables[1], "b");

    struct table_summary summary[1] = {{.name = "a", .inserted = 5, .updated = 6, .deleted = 7}};
    buf_reset(&out);
    soap_build_replication_completed(&out, "t.o.k", summary, 1);
    assert_ok(parse_text(out.data, NULL));
    ck_assert_uint_eq(req.nsummary, 1);
    ck_assert_int_eq(req.summary[0].deleted, 7);
    buf_reset(&out);
    soap_build_replication_completed(&out, NULL, NULL, 0);
    assert_ok(parse_text(out.data, NULL));
    ck_assert_int_eq(req.ntokens, 0);
    buf_free(&out);
}
END_TEST

START_TEST(test_round_trip_row_data)
{
    static const char text[] = " <a & 'b' \"c\">\r\n\t ";
    struct raw_value values[4] = {
        {.kind = RAW_TEXT, .data = text, .len = sizeof(text) - 1},
        {.kind = RAW_TEXT, .data = "", .len = 0},
        {.kind = RAW_NULL},
        {.kind = RAW_BASE64, .data = "AAEC", .len = 4}};
    char *columns[] = {"a", "b", "c", "d"};
    struct buf out = BUF_INIT;
    soap_build_rowdata_begin(&out, "tok");
    soap_build_batch_begin(&out, "t1", columns, 4);
    soap_build_row(&out, 'I', 1, 12, values, 4);
    soap_build_row(&out, 'D', 0, 0, values, 1);
    soap_build_batch_end(&out, 1, 13);
    soap_build_batch_begin(&out, "t2", columns, 1);
    soap_build_batch_end(&out, 0, 0);
    soap_build_rowdata_end(&out);
    assert_ok(parse_text(out.data, ACTION("RowData")));
    buf_free(&out);
    ck_assert_uint_eq(req.nbatches, 2);
    const struct batch *b = &req.batches[0];
    ck_assert_str_eq(b->table, "t1");
    ck_assert_uint_eq(b->ncolumns, 4);
    ck_assert_str_eq(b->columns[3], "d");
    ck_assert_uint_eq(b->nrows, 2);
    ck_assert_int_eq(b->rows[0].op, 'I');
    ck_assert_int_eq(b->rows[0].lsn, 12);
    ck_assert_uint_eq(b->rows[0].nvalues, 4);
    assert_value(&b->rows[0].values[0], RAW_TEXT, text, sizeof(text) - 1);
    assert_value(&b->rows[0].values[1], RAW_TEXT, "", 0);
    ck_assert_int_eq(b->rows[0].values[2].kind, RAW_NULL);
    assert_value(&b->rows[0].values[3], RAW_BASE64, "AAEC", 4);
    ck_assert_int_eq(b->rows[1].op, 'D');
    ck_assert_int_eq(b->rows[1].has_lsn, 0);
    ck_assert_int_eq(b->lsn, 13);
    ck_assert_uint_eq(req.batches[1].nrows, 0);
    ck_assert_int_eq(req.batches[1].has_lsn, 0);
}
END_TEST

START_TEST(test_large_row_data)
{
    struct raw_value values[3] = {{.kind = RAW_TEXT, .data = "12345", .len = 5},
                                  {.kind = RAW_TEXT, .data = "some text here", .len = 14},
                                  {.kind = RAW_NULL}};
    char *columns[] = {"a", "b", "c"};
    struct buf out = BUF_INIT;
    soap_build_rowdata_begin(&out, "tok");
    for (int batch = 0; batch < 4; batch++) {
        soap_build_batch_begin(&out, "t", columns, 3);
        for (int i = 0; i < 50000; i++)
            soap_build_row(&out, 'U', 1, i, values, 3);
        soap_build_batch_end(&out, 1, 50000);
    }
    soap_build_rowdata_end(&out);
    assert_ok(parse_text(out.data, NULL));
    buf_free(&out);
    ck_assert_uint_eq(req.nbatches, 4);
    ck_assert_uint_eq(req.batches[3].nrows, 50000);
    ck_assert_int_eq(req.batches[3].rows[49999].lsn, 49999);
    assert_value(&req.batches[3].rows[49999].values[1], RAW_TEXT, "some text here", 14);
}
END_TEST

START_TEST(test_needs_base64)
{
    ck_assert_int_eq(soap_text_needs_base64("plain text", 10), 0);
    ck_assert_int_eq(soap_text_needs_base64("tab\tnl\n", 7), 0);
    ck_assert_int_eq(soap_text_needs_base64("\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80", 9), 0);
    ck_assert_int_eq(soap_text_needs_base64("\xEF\xBF\xBD", 3), 0);        /* U+FFFD */
    ck_assert_int_eq(soap_text_needs_base64("cr\r", 3), 1);
    ck_assert_int_eq(soap_text_needs_base64("a\x01", 2), 1);
    ck_assert_int_eq(soap_text_needs_base64("a\0b", 3), 1);
    ck_assert_int_eq(soap_text_needs_base64("\xEF\xBF\xBE", 3), 1);        /* U+FFFE */
    ck_assert_int_eq(soap_text_needs_base64("\xEF\xBF\xBF", 3), 1);        /* U+FFFF */
    ck_assert_int_eq(soap_text_needs_base64("\xC3", 1), 1);                /* truncated */
    ck_assert_int_eq(soap_text_needs_base64("\xC0\x80", 2), 1);            /* overlong */
    ck_assert_int_eq(soap_text_needs_base64("\xED\xA0\x80", 3), 1);        /* surrogate */
    ck_assert_int_eq(soap_text_needs_base64("\xF4\x90\x80\x80", 4), 1);    /* > U+10FFFF */
    ck_assert_int_eq(soap_text_needs_base64("\xFF", 1), 1);
}
END_TEST

/* ---- writers through the sender's response parser ---- */

static struct soap_response resp;

static void parse_response_ok(const struct buf *b, enum soap_op op)
{
    char err[256] = "";
    int rc = soap_parse_response(b->data, b->len, op, &arena, &resp, err, sizeof(err));
    ck_assert_msg(rc == 0, "%s in %s", err, b->data);
}

START_TEST(test_authenticate_response_exact)
{
    struct buf out = BUF_INIT;
    struct auth_answer a = {.ok = 1, .error_message = "", .signed_app_token = "n.202611261125.s=",
                            .build = "somirrord/1.0.0"};
    soap_write_authenticate(&out, &a);
    ck_assert_str_eq(out.data,
                     "<?xml version=\"1.0\" encoding=\"utf-8\"?>" ENV_OPEN "<s:Body>"
                     "<AuthenticateResponse " NSA "><IsSuccessful>true</IsSuccessful>"
                     "<ErrorMessage/><SignedApplicationToken>n.202611261125.s="
                     "</SignedApplicationToken><SupportedInterfaces>1</SupportedInterfaces>"
                     "<SuperOfficeMirroringBuild>somirrord/1.0.0</SuperOfficeMirroringBuild>"
                     "<ClientState/><AdditionalInformationJson/></AuthenticateResponse>"
                     "</s:Body>" ENV_CLOSE);
    buf_free(&out);
}
END_TEST

START_TEST(test_authenticate_response_round_trip)
{
    struct buf out = BUF_INIT;
    static const char state[] = "  <x> & \"y\"\r ";
    struct auth_answer a = {.ok = 0, .error_message = "TokenExpired: token expired",
                            .signed_app_token = "", .build = "somirrord/1.0.0",
                            .client_state = state, .client_state_len = sizeof(state) - 1,
                            .do_not_replicate = 1};
    soap_write_authenticate(&out, &a);
    parse_response_ok(&out, SOAP_OP_AUTHENTICATE);
    ck_assert_int_eq(resp.is_fault, 0);
    ck_assert_int_eq(resp.auth.ok, 0);
    ck_assert_str_eq(resp.auth.error_message, "TokenExpired: token expired");
    ck_assert_str_eq(resp.auth.signed_app_token, "");
    ck_assert_str_eq(resp.auth.build, "somirrord/1.0.0");
    ck_assert_uint_eq(resp.auth.client_state_len, sizeof(state) - 1);
    ck_assert_mem_eq(resp.auth.client_state, state, sizeof(state) - 1);
    ck_assert_int_eq(resp.auth.do_not_replicate, 1);

    buf_reset(&out);
    a.ok = 1;
    a.do_not_replicate = 0;
    a.client_state = NULL;
    soap_write_authenticate(&out, &a);
    parse_response_ok(&out, SOAP_OP_AUTHENTICATE);
    ck_assert_int_eq(resp.auth.ok, 1);
    ck_assert_int_eq(resp.auth.do_not_replicate, 0);
    ck_assert_uint_eq(resp.auth.client_state_len, 0);
    buf_free(&out);
}
END_TEST

START_TEST(test_state_responses_round_trip)
{
    struct table_state states[3] = {
        {.name = "contact", .lsn = -1, .change = CHANGE_CREATED},
        {.name = "geo", .lsn = -1, .change = CHANGE_REJECTED,
         .error = "column shape: unsupported type geography"},
        {.name = "sale", .lsn = 884211, .change = CHANGE_UNCHANGED, .inserted = 1, .updated = 2,
         .deleted = 3, .skipped = 4},
    };
    struct buf out = BUF_INIT;
    soap_write_table_schema(&out, states, 3);
    ck_assert_ptr_nonnull(strstr(out.data, "<TableState><Name>contact</Name><Lsn>-1</Lsn>"
                                           "<Change>Created</Change></TableState>"));
    parse_response_ok(&out, SOAP_OP_TABLESCHEMA);
    ck_assert_uint_eq(resp.nstates, 3);
    ck_assert_int_eq(resp.states[1].change, CHANGE_REJECTED);
    ck_assert_str_eq(resp.states[1].error, "column shape: unsupported type geography");
    ck_assert_ptr_null(resp.states[0].error);
    ck_assert_int_eq(resp.states[2].lsn, 884211);
    ck_assert_int_eq(resp.states[2].change, CHANGE_UNCHANGED);

    buf_reset(&out);
    soap_write_wipe(&out, states, 1);
    ck_assert_ptr_nonnull(strstr(out.data, "<WipeResponse " NSA "><Tables><TableState><Name>"
                                           "contact</Name><Lsn>-1</Lsn></TableState></Tables>"
                                           "</WipeResponse>"));
    parse_response_ok(&out, SOAP_OP_WIPE);
    ck_assert_uint_eq(resp.nstates, 1);
    ck_assert_str_eq(resp.states[0].name, "contact");

    buf_reset(&out);
    soap_write_row_data(&out, &states[2], 1);
    parse_response_ok(&out, SOAP_OP_ROWDATA);
    ck_assert_uint_eq(resp.nstates, 1);
    ck_assert_int_eq(resp.states[0].inserted, 1);
    ck_assert_int_eq(resp.states[0].updated, 2);
    ck_assert_int_eq(resp.states[0].deleted, 3);
    ck_assert_int_eq(resp.states[0].skipped, 4);

    buf_reset(&out);
    soap_write_replication_completed(&out);
    ck_assert_ptr_nonnull(strstr(out.data, "<s:Body><ReplicationCompletedResponse " NSA "/>"));
    parse_response_ok(&out, SOAP_OP_REPLICATIONCOMPLETED);
    ck_assert_int_eq(resp.is_fault, 0);

    char err[256];
    ck_assert_int_eq(soap_parse_response(out.data, out.len, SOAP_OP_WIPE, &arena, &resp, err,
                                         sizeof(err)), -1);
    ck_assert_ptr_nonnull(strstr(err, "WipeResponse"));
    buf_free(&out);
}
END_TEST

START_TEST(test_fault_exact)
{
    struct fault f;
    fault_clear(&f);
    fault_set(&f, FAULT_INVALID_VALUE, "row 17 of table contact: column amount: value "
                                       "123456789012345678901 does not fit decimal(18,4)");
    fault_at(&f, "contact", "amount", 17);
    struct buf out = BUF_INIT;
    soap_write_fault(&out, &f);
    ck_assert_str_eq(out.data,
                     "<?xml version=\"1.0\" encoding=\"utf-8\"?>" ENV_OPEN "<s:Body><s:Fault>"
                     "<faultcode>s:Client</faultcode><faultstring>row 17 of table contact: "
                     "column amount: value 123456789012345678901 does not fit decimal(18,4)"
                     "</faultstring><detail><MirrorFault " NSA "><Code>InvalidValue</Code>"
                     "<Table>contact</Table><Column>amount</Column><Row>17</Row>"
                     "<Retryable>false</Retryable></MirrorFault></detail></s:Fault></s:Body>"
                     ENV_CLOSE);
    buf_free(&out);
}
END_TEST

START_TEST(test_fault_round_trip)
{
    for (int code = FAULT_REQUEST_TOO_LARGE; code <= FAULT_INTERNAL; code++) {
        struct fault f;
        fault_clear(&f);
        fault_set(&f, (enum fault_code)code, "bad \x01 \xFF <thing> & more");
        if (code == FAULT_INVALID_VALUE)
            fault_at(&f, "t", "c", 3);
        struct buf out = BUF_INIT;
        soap_write_fault(&out, &f);
        ck_assert_ptr_nonnull(strstr(out.data, fault_is_server(f.code) ? "s:Server" : "s:Client"));
        parse_response_ok(&out, SOAP_OP_ROWDATA);
        buf_free(&out);
        ck_assert_int_eq(resp.is_fault, 1);
        ck_assert_int_eq(resp.fault.code, code);
        ck_assert_int_eq(resp.retryable, fault_retryable(f.code));
        ck_assert_str_eq(resp.fault.message, "bad \xEF\xBF\xBD \xEF\xBF\xBD <thing> & more");
        ck_assert_str_eq(resp.fault.table, code == FAULT_INVALID_VALUE ? "t" : "");
        ck_assert_str_eq(resp.fault.column, code == FAULT_INVALID_VALUE ? "c" : "");
        ck_assert_int_eq(resp.fault.row, code == FAULT_INVALID_VALUE ? 3 : 0);
    }
}
END_TEST

START_TEST(test_foreign_faults)
{
    const char *plain = ENV_OPEN "<s:Body><s:Fault><faultcode>s:Server</faultcode>"
                        "<faultstring>boom</faultstring></s:Fault></s:Body>" ENV_CLOSE;
    struct buf b = BUF_INIT;
    buf_puts(&b, plain);
    parse_response_ok(&b, SOAP_OP_WIPE);
    ck_assert_int_eq(resp.is_fault, 1);
    ck_assert_int_eq(resp.fault.code, FAULT_INTERNAL);
    ck_assert_int_eq(resp.retryable, 1);
    ck_assert_str_eq(resp.fault.message, "boom");
    buf_reset(&b);
    buf_puts(&b, ENV_OPEN "<s:Body><s:Fault><faultcode>s:Client</faultcode><faultstring>x"
                 "</faultstring><detail><MirrorFault " NSA "><Code>SomethingNew</Code><Retryable>"
                 "false</Retryable></MirrorFault></detail></s:Fault></s:Body>" ENV_CLOSE);
    parse_response_ok(&b, SOAP_OP_WIPE);
    ck_assert_int_eq(resp.fault.code, FAULT_INTERNAL);
    ck_assert_int_eq(resp.retryable, 0);
    buf_free(&b);
}
END_TEST

START_TEST(test_fault_code_from_name)
{
    for (int code = FAULT_REQUEST_TOO_LARGE; code <= FAULT_INTERNAL; code++)
        ck_assert_int_eq(fault_code_from_name(fault_code_name((enum fault_code)code)), code);
    ck_assert_int_eq(fault_code_from_name("invalidvalue"), FAULT_NONE);
    ck_assert_int_eq(fault_code_from_name(""), FAULT_NONE);
    ck_assert_str_eq(soap_op_name(SOAP_OP_REPLICATIONCOMPLETED), "ReplicationCompleted");
}
END_TEST

START_TEST(test_bad_responses)
{
    const char *bad[] = {
        "garbage",
        ENV_OPEN "<s:Body/>" ENV_CLOSE,
        ENV_OPEN "<s:Body><WipeResponse " NSA "><Tables><TableState><Name>a</Name><Lsn>x</Lsn>"
        "</TableState></Tables></WipeResponse></s:Body>" ENV_CLOSE,
        ENV_OPEN "<s:Body><WipeResponse " NSA "><Tables/></WipeResponse><x/></s:Body>" ENV_CLOSE,
        ENV_OPEN "<s:Body><WipeResponse " NSA "/></s:Body>" ENV_CLOSE,
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        char err[256] = "";
        ck_assert_int_eq(soap_parse_response(bad[i], strlen(bad[i]), SOAP_OP_WIPE, &arena, &resp,
                                             err, sizeof(err)), -1);
        ck_assert_msg(strncmp(err, "Wipe response: ", 15) == 0, "%s", err);
    }
}
END_TEST

/* A body of open, n attributes on one element, and close. malloc'd. */
static char *many_attributes(const char *open, size_t n, const char *close)
{
    struct buf b = BUF_INIT;
    buf_puts(&b, open);
    for (size_t i = 0; i < n; i++)
        buf_printf(&b, " a%zu=\"%zu\"", i, i);
    buf_puts(&b, close);
    buf_putc(&b, '\0');
    return b.data;
}

/* The attribute bound is found without parsing, and counts only what a tag can hold. */
/* Appends text n times. */
static void put_times(struct buf *b, const char *text, int n)
{
    for (int i = 0; i < n; i++)
        buf_puts(b, text);
}

START_TEST(test_attributes_bounded)
{
    char *fine = many_attributes("<e", 10, "/>");
    ck_assert(soap_xml_attributes_bounded(fine, strlen(fine), 10));
    ck_assert(!soap_xml_attributes_bounded(fine, strlen(fine), 9));
    free(fine);
    char *tag = many_attributes("<s:Envelope xmlns:s=\"x\"><s:Body><V", 2000, ">x</V></s:Body></s:Envelope>");
    ck_assert(!soap_xml_attributes_bounded(tag, strlen(tag), SOAP_XML_ATTRIBUTES_MAX));
    free(tag);
    /* Values holding '>' do not end the tag early. */
    struct buf gt = BUF_INIT;
    buf_puts(&gt, "<r><e");
    for (int i = 0; i < 2000; i++)
        buf_printf(&gt, " a%d='>=<'", i);
    buf_puts(&gt, "/></r>");
    ck_assert(!soap_xml_attributes_bounded(gt.data, gt.len, SOAP_XML_ATTRIBUTES_MAX));
    buf_free(&gt);
    /* '=' in text, comments, CDATA sections and processing instructions is not counted. */
    struct buf b = BUF_INIT;
    buf_puts(&b, "<r>");
    put_times(&b, "a=b ", 3000);
    buf_puts(&b, "<!-- <x ");
    put_times(&b, "= ", 3000);
    buf_puts(&b, "--><![CDATA[ <y ");
    put_times(&b, "=", 3000);
    buf_puts(&b, "]]><?pi <z ");
    put_times(&b, "=", 3000);
    buf_puts(&b, "?></r>");
    ck_assert(soap_xml_attributes_bounded(b.data, b.len, 10));
    buf_free(&b);
    /* A value's own "=" counts too: the count is an upper bound. */
    ck_assert(soap_xml_attributes_bounded("<a b='1' c=\"=\"/>", 17, 3));
}
END_TEST

/* libxml2 running out of memory is the receiver's trouble, not the sender's: whichever of
 * libxml2's allocations fails, the call is an Internal fault (s:Server, retryable), never a
 * MalformedRequest that a sender would not retry. libxml2's allocator is swapped for one that
 * fails from its n-th call on, for every n until the parse needs fewer. */
static long allocations_left;

static void *failing_malloc(size_t size)
{
    return allocations_left-- > 0 ? malloc(size) : NULL;
}

static void *failing_realloc(void *p, size_t size)
{
    return allocations_left-- > 0 ? realloc(p, size) : NULL;
}

static char *failing_strdup(const char *text)
{
    return allocations_left-- > 0 ? strdup(text) : NULL;
}

START_TEST(test_out_of_memory_is_internal)
{
    xmlMemSetup(free, failing_malloc, failing_realloc, failing_strdup);
    const char *body = "<RowDataRequest " NSA "><Batches><Batch><Table>contact</Table><Columns>"
                       "<Name>id</Name><Name>name</Name></Columns><Rows><Row op=\"I\" lsn=\"5\">"
                       "<V>1</V><V>M\xc3\xbcller &amp; S\xc3\xb6hne</V></Row></Rows><Lsn>5</Lsn>"
                       "</Batch></Batches></RowDataRequest>";
    int failures = 0, n;
    for (n = 0; n < 2000; n++) {
        allocations_left = n;
        arena_free(&arena);
        arena_init(&arena);
        int rc = parse_body(body, ACTION("RowData"));
        if (allocations_left >= 0)
            break;   /* nothing failed: the parse is whole */
        failures++;
        ck_assert_msg(rc == -1 && env_fault.code == FAULT_INTERNAL,
                      "allocation %d failed: rc %d, fault %s: %s", n, rc,
                      fault_code_name(env_fault.code), env_fault.message);
    }
    allocations_left = 1L << 40;
    xmlMemSetup(free, malloc, realloc, strdup);
    ck_assert_int_lt(n, 2000);
    ck_assert_int_gt(failures, 5);
    assert_ok(parse_body(body, ACTION("RowData")));
}
END_TEST

static Suite *soap_suite(void)
{
    Suite *s = suite_create("soap");
    TCase *tc = tcase_create("requests");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, test_each_operation_with_and_without_action);
    tcase_add_test(tc, test_quoted_action);
    tcase_add_test(tc, test_mismatched_action);
    tcase_add_test(tc, test_unknown_action);
    tcase_add_test(tc, test_unknown_body_element);
    tcase_add_test(tc, test_two_body_elements);
    tcase_add_test(tc, test_empty_body);
    tcase_add_test(tc, test_prefix_variations);
    tcase_add_test(tc, test_element_in_no_namespace);
    tcase_add_test(tc, test_unknown_ns_element);
    tcase_add_test(tc, test_foreign_element_skipped);
    tcase_add_test(tc, test_header_blocks);
    tcase_add_test(tc, test_not_an_envelope);
    tcase_add_test(tc, test_xml_errors_stay_off_stderr);
    tcase_add_test(tc, test_dtd_refused);
    tcase_add_test(tc, test_external_entity_refused);
    tcase_add_test(tc, test_billion_laughs_refused_quickly);
    tcase_add_test(tc, test_error_inside_large_text);
    tcase_add_test(tc, test_values);
    tcase_add_test(tc, test_null_with_content);
    tcase_add_test(tc, test_row_ops_and_lsns);
    tcase_add_test(tc, test_bad_op);
    tcase_add_test(tc, test_bad_lsn);
    tcase_add_test(tc, test_batch_shapes);
    tcase_add_test(tc, test_table_schema);
    tcase_add_test(tc, test_table_schema_faults);
    tcase_add_test(tc, test_wipe_empty);
    tcase_add_test(tc, test_replication_completed);
    tcase_add_test(tc, test_authenticate_client_state);
    suite_add_tcase(s, tc);

    tc = tcase_create("round trips");
    tcase_add_checked_fixture(tc, setup, teardown);
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, test_round_trip_requests);
    tcase_add_test(tc, test_round_trip_row_data);
    tcase_add_test(tc, test_large_row_data);
    tcase_add_test(tc, test_needs_base64);
    tcase_add_test(tc, test_authenticate_response_exact);
    tcase_add_test(tc, test_authenticate_response_round_trip);
    tcase_add_test(tc, test_state_responses_round_trip);
    tcase_add_test(tc, test_fault_exact);
    tcase_add_test(tc, test_fault_round_trip);
    tcase_add_test(tc, test_foreign_faults);
    tcase_add_test(tc, test_fault_code_from_name);
    tcase_add_test(tc, test_bad_responses);
    tcase_add_test(tc, test_attributes_bounded);
    tcase_add_test(tc, test_out_of_memory_is_internal);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    /* Blocks of 64 KiB and more get mappings of their own, unmapped when freed: a read of a freed
     * large input then crashes here instead of reading stale memory (valgrind sees it anyway). */
    mallopt(M_MMAP_THRESHOLD, 64 * 1024);
    SRunner *runner = srunner_create(soap_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
