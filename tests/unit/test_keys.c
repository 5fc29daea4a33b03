/* tests/unit/test_keys: keys_* on keys made at test time by the openssl command (found in
 * PATH): PKCS#1 and PKCS#8 private keys, public keys, certificates and their thumbprints, the
 * .NET XML form written by keys_write_xml and read back, and every kind of bad key. */
#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/core_names.h>

#include "common/buf.h"
#include "common/xalloc.h"
#include "config/config.h"
#include "config/keys.h"

static char tmpdir[256];

/* tmpdir/name, in a static buffer of its own per slot. */
static const char *in_tmp(const char *name)
{
    static char paths[8][512];
    static unsigned slot;
    char *path = paths[slot++ % 8];
    snprintf(path, 512, "%s/%s", tmpdir, name);
    return path;
}

static void run(const char *command)
{
    char line[2048];
    snprintf(line, sizeof(line), "cd '%s' && { %s; } >/dev/null 2>&1", tmpdir, command);
    if (system(line) != 0) {
        fprintf(stderr, "test_keys: failed: %s\n", command);
        exit(EXIT_FAILURE);
    }
}

static void make_keys(void)
{
    snprintf(tmpdir, sizeof(tmpdir), "%s/test_keys.XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(tmpdir))
        abort();
    run("openssl genrsa -traditional -out rsa.pem 2048");
    run("openssl pkcs8 -topk8 -nocrypt -in rsa.pem -out rsa8.pem");
    run("openssl rsa -in rsa.pem -pubout -out spki.pem");
    run("openssl rsa -in rsa.pem -RSAPublicKey_out -out pkcs1pub.pem");
    run("openssl req -x509 -new -key rsa.pem -subj /CN=vendor -days 2 -out cert.pem");
    run("openssl x509 -in cert.pem -noout -fingerprint -sha1 | sed 's/.*=//; s/://g' | tr A-F a-f > cert.kid");
    run("openssl x509 -in cert.pem -outform DER | openssl dgst -sha1 -binary | openssl base64 | "
        "tr '+/' '-_' | tr -d '=\\n' > cert.x5t");
    run("openssl req -x509 -new -key rsa8.pem -subj /CN=second -days 2 -out cert2.pem");
    run("openssl genrsa -traditional -out rsa1024.pem 1024");
    run("openssl pkcs8 -topk8 -in rsa1024.pem -passout pass:secret -out encrypted.pem");
    run("openssl ecparam -name prime256v1 -genkey -noout -out ec.pem");
    run("openssl req -x509 -new -key ec.pem -subj /CN=ec -days 2 -out eccert.pem");
    run("head -c 700 rsa.pem > truncated.pem");
}

static void remove_keys(void)
{
    char line[512];
    snprintf(line, sizeof(line), "rm -rf '%s'", tmpdir);
    if (system(line) != 0)
        fprintf(stderr, "test_keys: cannot remove %s\n", tmpdir);
}

static char *read_text(const char *path)
{
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(f);
    char *text = xcalloc(1, 65536);
    size_t len = fread(text, 1, 65535, f);
    fclose(f);
    text[len] = '\0';
    text[strcspn(text, "\n")] = '\0';
    return text;
}

static void write_text(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    fputs(text, f);
    fclose(f);
}

/* The text of <element> in xml (malloc'd). */
static char *element_text(const char *xml, const char *element)
{
    char open[32], close[32];
    snprintf(open, sizeof(open), "<%s>", element);
    snprintf(close, sizeof(close), "</%s>", element);
    const char *start = strstr(xml, open);
    ck_assert_ptr_nonnull(start);
    start += strlen(open);
    const char *end = strstr(start, close);
    ck_assert_ptr_nonnull(end);
    return xstrndup(start, (size_t)(end - start));
}

/* text with every `from` replaced by `to` (malloc'd). */
static char *replace_all(const char *text, const char *from, const char *to)
{
    struct buf out = BUF_INIT;
    for (const char *hit; (hit = strstr(text, from)) != NULL; text = hit + strlen(from)) {
        buf_append(&out, text, (size_t)(hit - text));
        buf_puts(&out, to);
    }
    buf_puts(&out, text);
    return buf_steal(&out);
}

/* xml with the text of <element> replaced by text (malloc'd). */
static char *replace_element(const char *xml, const char *element, const char *text)
{
    char open[32], close[32];
    snprintf(open, sizeof(open), "<%s>", element);
    snprintf(close, sizeof(close), "</%s>", element);
    const char *start = strstr(xml, open) + strlen(open);
    const char *end = strstr(start, close);
    size_t len = strlen(xml) - (size_t)(end - start) + strlen(text) + 1;
    char *out = xmalloc(len);
    snprintf(out, len, "%.*s%s%s", (int)(start - xml), xml, text, end);
    return out;
}

static EVP_PKEY *load_private_ok(const char *path, char *warning, size_t warnlen)
{
    char err[512] = "";
    EVP_PKEY *key = keys_load_private(path, err, sizeof(err), warning, warnlen);
    ck_assert_msg(key != NULL, "%s", err);
    return key;
}

static void expect_private_error(const char *path, const char *tail)
{
    char err[512] = "", expected[1024];
    ck_assert_ptr_null(keys_load_private(path, err, sizeof(err), NULL, 0));
    snprintf(expected, sizeof(expected), "%s%s", path, tail);
    ck_assert_str_eq(err, expected);
}

static void write_xml(EVP_PKEY *key, int include_private, const char *path)
{
    FILE *f = fopen(path, "w");
    ck_assert_ptr_nonnull(f);
    ck_assert_int_eq(keys_write_xml(key, include_private, f), 0);
    fclose(f);
}

static int same_param(const EVP_PKEY *a, const EVP_PKEY *b, const char *name)
{
    BIGNUM *x = NULL, *y = NULL;
    int same = EVP_PKEY_get_bn_param(a, name, &x) == 1 && EVP_PKEY_get_bn_param(b, name, &y) == 1 &&
               BN_cmp(x, y) == 0;
    BN_free(x);
    BN_free(y);
    return same;
}

START_TEST(test_pem_private)
{
    char warning[256] = "x";
    EVP_PKEY *pkcs1 = load_private_ok(in_tmp("rsa.pem"), warning, sizeof(warning));
    ck_assert_str_eq(warning, "");
    ck_assert_int_eq(EVP_PKEY_get_bits(pkcs1), 2048);
    EVP_PKEY *pkcs8 = load_private_ok(in_tmp("rsa8.pem"), NULL, 0);
    ck_assert_int_eq(EVP_PKEY_eq(pkcs1, pkcs8), 1);
    ck_assert(same_param(pkcs1, pkcs8, OSSL_PKEY_PARAM_RSA_D));
    EVP_PKEY_free(pkcs1);
    EVP_PKEY_free(pkcs8);
}
END_TEST

START_TEST(test_xml_round_trip)
{
    EVP_PKEY *key = load_private_ok(in_tmp("rsa.pem"), NULL, 0);
    write_xml(key, 1, in_tmp("app.xml"));
    char *xml = read_text(in_tmp("app.xml"));
    ck_assert_msg(strncmp(xml, "<RSAKeyValue><Modulus>", 22) == 0, "%s", xml);
    static const struct {
        const char *element;
        size_t base64_len;
    } lengths[] = {
        {"Modulus", 344}, {"Exponent", 4}, {"P", 172}, {"Q", 172}, {"DP", 172}, {"DQ", 172},
        {"InverseQ", 172}, {"D", 344},
    };
    for (size_t i = 0; i < sizeof(lengths) / sizeof(lengths[0]); i++) {
        char *text = element_text(xml, lengths[i].element);
        ck_assert_msg(strlen(text) == lengths[i].base64_len, "<%s> has %zu characters", lengths[i].element,
                      strlen(text));
        free(text);
    }
    char *exponent = element_text(xml, "Exponent");
    ck_assert_str_eq(exponent, "AQAB");
    free(exponent);

    EVP_PKEY *again = load_private_ok(in_tmp("app.xml"), NULL, 0);
    ck_assert_int_eq(EVP_PKEY_eq(key, again), 1);
    ck_assert(same_param(key, again, OSSL_PKEY_PARAM_RSA_D));
    ck_assert(same_param(key, again, OSSL_PKEY_PARAM_RSA_COEFFICIENT1));

    /* .NET tools write it indented, and base64 text may be wrapped. */
    char *indented = replace_all(xml, "><", ">\n  <");
    char *pretty = replace_all(indented, "<Modulus>", "<Modulus>\n    ");
    write_text(in_tmp("pretty.xml"), pretty);
    EVP_PKEY *from_pretty = load_private_ok(in_tmp("pretty.xml"), NULL, 0);
    ck_assert_int_eq(EVP_PKEY_eq(key, from_pretty), 1);

    free(indented);
    free(pretty);
    free(xml);
    EVP_PKEY_free(from_pretty);
    EVP_PKEY_free(again);
    EVP_PKEY_free(key);
}
END_TEST

START_TEST(test_public_keys)
{
    EVP_PKEY *key = load_private_ok(in_tmp("rsa.pem"), NULL, 0);
    write_xml(key, 0, in_tmp("public.xml"));
    char *xml = read_text(in_tmp("public.xml"));
    ck_assert_ptr_null(strstr(xml, "<D>"));
    ck_assert_ptr_null(strstr(xml, "<P>"));
    free(xml);
    write_xml(key, 1, in_tmp("full.xml"));
    static const char *const files[] = {"spki.pem", "pkcs1pub.pem", "cert.pem", "public.xml", "full.xml"};
    for (size_t i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        char err[512] = "";
        EVP_PKEY *pub = keys_load_public(in_tmp(files[i]), err, sizeof(err));
        ck_assert_msg(pub != NULL, "%s: %s", files[i], err);
        ck_assert_msg(EVP_PKEY_eq(key, pub) == 1, "%s differs", files[i]);
        EVP_PKEY_free(pub);
    }
    char err[512];
    ck_assert_ptr_null(keys_load_public(in_tmp("ec.pem"), err, sizeof(err)));
    expect_private_error(in_tmp("public.xml"), ": <P> is missing");
    EVP_PKEY_free(key);
}
END_TEST

START_TEST(test_certificate)
{
    struct vendor_cert cert;
    char err[512] = "";
    ck_assert_msg(keys_load_cert(in_tmp("cert.pem"), &cert, err, sizeof(err)) == 0, "%s", err);
    char *kid = read_text(in_tmp("cert.kid"));
    char *x5t = read_text(in_tmp("cert.x5t"));
    ck_assert_uint_eq(strlen(kid), 40);
    ck_assert_str_eq(cert.kid, kid);
    ck_assert_uint_eq(strlen(x5t), 27);
    ck_assert_str_eq(cert.x5t, x5t);
    ck_assert_str_eq(cert.path, in_tmp("cert.pem"));
    ck_assert_ptr_nonnull(cert.cert);
    EVP_PKEY *key = load_private_ok(in_tmp("rsa.pem"), NULL, 0);
    ck_assert_int_eq(EVP_PKEY_eq(key, cert.public_key), 1);
    keys_cert_free(&cert);
    ck_assert_ptr_null(cert.cert);
    EVP_PKEY_free(key);
    free(kid);
    free(x5t);

    const char *path = in_tmp("eccert.pem");
    char expected[1024];
    ck_assert_int_eq(keys_load_cert(path, &cert, err, sizeof(err)), -1);
    snprintf(expected, sizeof(expected), "%s: the certificate's key is not RSA", path);
    ck_assert_str_eq(err, expected);
    path = in_tmp("rsa.pem");
    ck_assert_int_eq(keys_load_cert(path, &cert, err, sizeof(err)), -1);
    snprintf(expected, sizeof(expected), "%s: not a PEM certificate", path);
    ck_assert_str_eq(err, expected);
}
END_TEST

START_TEST(test_bad_keys)
{
    expect_private_error(in_tmp("absent.pem"), ": cannot open: No such file or directory");
    expect_private_error(in_tmp("truncated.pem"), ": not a PEM private key or <RSAKeyValue> XML");
    expect_private_error(in_tmp("ec.pem"), ": not an RSA key (it is EC)");
    expect_private_error(in_tmp("encrypted.pem"), ": the private key is encrypted; somirrord needs it unencrypted");
    expect_private_error(in_tmp("cert.pem"), ": not a PEM private key or <RSAKeyValue> XML");
    /* Refused at once, whatever the path names, key or certificate: opening a FIFO to read
     * waits for a writer, and a reload would hold the master with it. */
    ck_assert_int_eq(mkfifo(in_tmp("key.fifo"), 0600), 0);
    expect_private_error(in_tmp("key.fifo"), ": cannot open: not a regular file");
    struct vendor_cert cert;
    char err[1024], expected[1024];
    ck_assert_int_eq(keys_load_cert(in_tmp("key.fifo"), &cert, err, sizeof(err)), -1);
    snprintf(expected, sizeof(expected), "%s: cannot open: not a regular file", in_tmp("key.fifo"));
    ck_assert_str_eq(err, expected);
    unlink(in_tmp("key.fifo"));

    write_text(in_tmp("bad.xml"), "<RSAKeyValue><Modulus>abc");
    expect_private_error(in_tmp("bad.xml"), ": not well-formed XML");
    write_text(in_tmp("bad.xml"), "<RSAKeyValue><Modulus>!!!!</Modulus></RSAKeyValue>");
    expect_private_error(in_tmp("bad.xml"), ": <Modulus> is not base64");
    write_text(in_tmp("bad.xml"), "<RSAKeyValue><Modulus>AQAB</Modulus><Modulus>AQAB</Modulus></RSAKeyValue>");
    expect_private_error(in_tmp("bad.xml"), ": <Modulus> appears twice");
    write_text(in_tmp("bad.xml"), "<RSAKeyValue><Modulus>AQAB</Modulus><Extra/></RSAKeyValue>");
    expect_private_error(in_tmp("bad.xml"), ": unexpected content in <RSAKeyValue>");
    write_text(in_tmp("bad.xml"), "<KeyValue><Modulus>AQAB</Modulus></KeyValue>");
    expect_private_error(in_tmp("bad.xml"), ": expected an <RSAKeyValue> document");
    write_text(in_tmp("bad.xml"), "<?xml version=\"1.0\"?>\n<!DOCTYPE RSAKeyValue [<!ENTITY e \"AQAB\">]>\n"
                                  "<RSAKeyValue><Exponent>&e;</Exponent></RSAKeyValue>");
    expect_private_error(in_tmp("bad.xml"), ": XML with a DTD is not accepted");
}
END_TEST

START_TEST(test_mismatched_xml)
{
    EVP_PKEY *key = load_private_ok(in_tmp("rsa.pem"), NULL, 0);
    write_xml(key, 1, in_tmp("good.xml"));
    char *xml = read_text(in_tmp("good.xml"));
    char *q = element_text(xml, "Q");
    char *p_replaced = replace_element(xml, "P", q);
    write_text(in_tmp("mismatch.xml"), p_replaced);
    expect_private_error(in_tmp("mismatch.xml"), ": the key's parts do not match: Modulus is not P times Q");

    char *dq = element_text(xml, "DQ");
    char *dp_replaced = replace_element(xml, "DP", dq);
    write_text(in_tmp("mismatch.xml"), dp_replaced);
    expect_private_error(in_tmp("mismatch.xml"), ": the key's parts do not match: DP does not match D and P");

    char *inverse_replaced = replace_element(xml, "InverseQ", dq);
    write_text(in_tmp("mismatch.xml"), inverse_replaced);
    expect_private_error(in_tmp("mismatch.xml"), ": the key's parts do not match: InverseQ does not match P and Q");

    char *no_d = replace_element(xml, "D", "");
    write_text(in_tmp("mismatch.xml"), no_d);
    expect_private_error(in_tmp("mismatch.xml"), ": <D> is not base64");

    free(no_d);
    free(inverse_replaced);
    free(dp_replaced);
    free(dq);
    free(p_replaced);
    free(q);
    free(xml);
    EVP_PKEY_free(key);
}
END_TEST

START_TEST(test_short_key_warns)
{
    char warning[256] = "";
    EVP_PKEY *key = load_private_ok(in_tmp("rsa1024.pem"), warning, sizeof(warning));
    char expected[1024];
    snprintf(expected, sizeof(expected), "%s: the key has only 1024 bits; use 2048 or more", in_tmp("rsa1024.pem"));
    ck_assert_str_eq(warning, expected);
    /* The 1024-bit XML form pads P..InverseQ to 64 bytes and Modulus and D to 128. */
    write_xml(key, 1, in_tmp("short.xml"));
    EVP_PKEY *again = load_private_ok(in_tmp("short.xml"), NULL, 0);
    ck_assert_int_eq(EVP_PKEY_eq(key, again), 1);
    EVP_PKEY_free(again);
    EVP_PKEY_free(key);
}
END_TEST

START_TEST(test_keyring)
{
    struct config cfg = {0};
    char *certs[] = {xstrdup(in_tmp("cert.pem")), xstrdup(in_tmp("cert2.pem"))};
    cfg.path = "somirrord.yaml";
    cfg.app_private_key = xstrdup(in_tmp("rsa8.pem"));
    cfg.vendor_certificates.items = certs;
    cfg.vendor_certificates.n = 2;
    struct cfg_errors errs;
    cfg_errors_init(&errs);
    struct keyring *ring = keys_load(&cfg, &errs);
    ck_assert_msg(ring != NULL, "%s", errs.n ? errs.messages[0] : "");
    ck_assert_uint_eq(ring->ncerts, 2);
    ck_assert_int_eq(EVP_PKEY_eq(ring->app_key, ring->certs[0].public_key), 1);
    ck_assert_str_ne(ring->certs[0].kid, ring->certs[1].kid);
    keys_free(ring);

    free(certs[1]);
    certs[1] = xstrdup(in_tmp("absent.crt"));
    free(cfg.app_private_key);
    cfg.app_private_key = xstrdup(in_tmp("ec.pem"));
    ck_assert_ptr_null(keys_load(&cfg, &errs));
    ck_assert_uint_eq(errs.n, 2);
    char expected[1024];
    snprintf(expected, sizeof(expected), "somirrord.yaml: application.private_key: %s: not an RSA key (it is EC)",
             in_tmp("ec.pem"));
    ck_assert_str_eq(errs.messages[0], expected);
    snprintf(expected, sizeof(expected),
             "somirrord.yaml: vendor.certificates[1]: %s: cannot open: No such file or directory", in_tmp("absent.crt"));
    ck_assert_str_eq(errs.messages[1], expected);
    cfg_errors_free(&errs);
    free(cfg.app_private_key);
    free(certs[0]);
    free(certs[1]);
}
END_TEST

static Suite *keys_suite(void)
{
    Suite *s = suite_create("keys");
    TCase *tc = tcase_create("keys");
    tcase_set_timeout(tc, 60);
    tcase_add_unchecked_fixture(tc, make_keys, remove_keys);
    tcase_add_test(tc, test_pem_private);
    tcase_add_test(tc, test_xml_round_trip);
    tcase_add_test(tc, test_public_keys);
    tcase_add_test(tc, test_certificate);
    tcase_add_test(tc, test_bad_keys);
    tcase_add_test(tc, test_mismatched_xml);
    tcase_add_test(tc, test_short_key_warns);
    tcase_add_test(tc, test_keyring);
    suite_add_tcase(s, tc);
    return s;
}

int main(void)
{
    if (system("openssl version >/dev/null 2>&1") != 0) {
        fprintf(stderr, "test_keys: the openssl command is not in PATH; skipped\n");
        return 77;
    }
    SRunner *runner = srunner_create(keys_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
