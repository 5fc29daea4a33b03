/* tests/unit/test_common: the strict base64 core (common/base64: both forms, every shape rule,
 * texts longer than one OpenSSL chunk), the UTF-8 decoder (common/utf8), arena_adopt
 * (common/arena), the buffer's escaping and number writers (common/buf) and the log file's
 * refusal of links (common/log). */
#include <check.h>
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "common/arena.h"
#include "common/base64.h"
#include "common/buf.h"
#include "common/log.h"
#include "tests/unit/link_fixture.h"
#include "common/utf8.h"

/* Encodes bytes in form, checks the text and its length, and decodes it back. */
static void roundtrip(const char *bytes, size_t len, enum base64_form form, const char *text)
{
    char out[64];
    ck_assert_uint_eq(base64_encode_into((const unsigned char *)bytes, len, form, out),
                      strlen(text));
    ck_assert_str_eq(out, text);
    unsigned char decoded[64];
    size_t decoded_len = 99;
    ck_assert_int_eq(base64_decode_into(text, strlen(text), form, decoded, &decoded_len), 0);
    ck_assert_uint_eq(decoded_len, len);
    ck_assert(memcmp(decoded, bytes, len) == 0);
}

static int decodes(const char *text, enum base64_form form)
{
    unsigned char out[64];
    size_t len = 99;
    int rc = base64_decode_into(text, strlen(text), form, out, &len);
    if (rc != 0)
        ck_assert_uint_eq(len, 99);   /* untouched on failure */
    return rc == 0;
}

START_TEST(test_base64_vectors)
{
    roundtrip("", 0, BASE64_PADDED, "");
    roundtrip("", 0, BASE64_URL, "");
    roundtrip("f", 1, BASE64_PADDED, "Zg==");
    roundtrip("f", 1, BASE64_URL, "Zg");
    roundtrip("fo", 2, BASE64_PADDED, "Zm8=");
    roundtrip("fo", 2, BASE64_URL, "Zm8");
    roundtrip("foo", 3, BASE64_PADDED, "Zm9v");
    roundtrip("foo", 3, BASE64_URL, "Zm9v");
    roundtrip("\xfb\xff", 2, BASE64_PADDED, "+/8=");
    roundtrip("\xfb\xff", 2, BASE64_URL, "-_8");
    roundtrip("\0\0\0\0", 4, BASE64_PADDED, "AAAAAA==");
    ck_assert_uint_eq(BASE64_ENCODED_LEN(0), 0);
    ck_assert_uint_eq(BASE64_ENCODED_LEN(1), 4);
    ck_assert_uint_eq(BASE64_ENCODED_LEN(3), 4);
    ck_assert_uint_eq(BASE64_ENCODED_LEN(4), 8);
    ck_assert_uint_eq(BASE64_DECODED_MAX(0), 0);
    ck_assert_uint_eq(BASE64_DECODED_MAX(2), 3);   /* unpadded base64url */
    ck_assert_uint_eq(BASE64_DECODED_MAX(4), 3);
}
END_TEST

START_TEST(test_base64_padded_shape)
{
    ck_assert(decodes("Zg==", BASE64_PADDED));          /* two '=' */
    ck_assert(decodes("Zm8=", BASE64_PADDED));          /* one '=' */
    ck_assert(!decodes("Z===", BASE64_PADDED));         /* a third '=' */
    ck_assert(!decodes("====", BASE64_PADDED));
    ck_assert(!decodes("Zg=a", BASE64_PADDED));         /* '=' in the middle */
    ck_assert(!decodes("Z=8=", BASE64_PADDED));
    ck_assert(!decodes("Zg==Zg==", BASE64_PADDED));     /* padding, then more quanta */
    ck_assert(!decodes("=Zm9", BASE64_PADDED));
    ck_assert(!decodes("Zm8", BASE64_PADDED));          /* not whole quanta */
    ck_assert(!decodes("Z", BASE64_PADDED));
    ck_assert(!decodes("Zm9vZ", BASE64_PADDED));
    ck_assert(!decodes("Zm9vZg=", BASE64_PADDED));
    ck_assert(!decodes("Zm!v", BASE64_PADDED));         /* outside the alphabet */
    ck_assert(!decodes("Zm\x80v", BASE64_PADDED));
    ck_assert(!decodes("-_8=", BASE64_PADDED));         /* base64url's characters */
    ck_assert(!decodes("Zm9v\n", BASE64_PADDED));       /* no blanks in the core */
    ck_assert(!decodes(" Zm9", BASE64_PADDED));
    ck_assert(!decodes("Zm9v----", BASE64_PADDED));     /* EVP_DecodeBlock drops these */
    unsigned char out[4];
    size_t len = 99;
    ck_assert_int_eq(base64_decode_into("Zm9v\0AAA", 8, BASE64_PADDED, out, &len), -1);
}
END_TEST

START_TEST(test_base64url_shape)
{
    ck_assert(decodes("Zg", BASE64_URL));
    ck_assert(decodes("Zm8", BASE64_URL));
    ck_assert(decodes("-_8", BASE64_URL));
    ck_assert(!decodes("Zg==", BASE64_URL));            /* no padding at all */
    ck_assert(!decodes("Zg=", BASE64_URL));
    ck_assert(!decodes("Zm8=", BASE64_URL));
    ck_assert(!decodes("Z", BASE64_URL));               /* length % 4 == 1 */
    ck_assert(!decodes("Zm9vY", BASE64_URL));
    ck_assert(!decodes("Z+8", BASE64_URL));             /* the standard alphabet's */
    ck_assert(!decodes("Z/8", BASE64_URL));
    ck_assert(!decodes("Zm 9", BASE64_URL));
}
END_TEST

/* Each byte value in each place of a text, also the last ones of an OpenSSL chunk and the
 * first of the next: decoded only where it is of the alphabet (the padded form leaves all but
 * '=' to EVP_DecodeBlock's own refusal). */
START_TEST(test_base64_every_byte)
{
    enum { LEN = 4104 };   /* one chunk of 4096 characters, and two quanta */
    static const size_t places[] = {0, 1, 2, 3, 4094, 4095, 4096, 4097, LEN - 2, LEN - 1};
    char *text = malloc(LEN);
    unsigned char *out = malloc(BASE64_DECODED_MAX(LEN));
    for (size_t p = 0; p < sizeof(places) / sizeof(places[0]); p++) {
        for (int c = 0; c < 256; c++) {
            memset(text, 'A', LEN);
            text[places[p]] = (char)c;
            int in_alphabet = isalnum(c) || c == '+' || c == '/';
            int padding = c == '=' && places[p] == LEN - 1;
            size_t len = 0;
            ck_assert_msg((base64_decode_into(text, LEN, BASE64_PADDED, out, &len) == 0) ==
                              (in_alphabet || padding), "byte %d at %zu", c, places[p]);
        }
    }
    free(text);
    free(out);
}
END_TEST

/* Texts longer than one OpenSSL chunk: the same as one EVP_EncodeBlock call, and back. */
START_TEST(test_base64_chunks)
{
    static const size_t sizes[] = {3071, 3072, 3073, 12292, 12293, 12294};
    for (size_t s = 0; s < sizeof(sizes) / sizeof(sizes[0]); s++) {
        size_t len = sizes[s];
        unsigned char *bytes = malloc(len);
        for (size_t i = 0; i < len; i++)
            bytes[i] = (unsigned char)(i * 131 + i / 7);
        char *whole = malloc(BASE64_ENCODED_LEN(len) + 1);
        char *text = malloc(BASE64_ENCODED_LEN(len) + 1);
        unsigned char *decoded = malloc(BASE64_DECODED_MAX(BASE64_ENCODED_LEN(len)));
        EVP_EncodeBlock((unsigned char *)whole, bytes, (int)len);
        for (int form = BASE64_PADDED; form <= BASE64_URL; form++) {
            size_t n = base64_encode_into(bytes, len, (enum base64_form)form, text);
            size_t padding = form == BASE64_URL ? (3 - len % 3) % 3 : 0;
            ck_assert_uint_eq(n, BASE64_ENCODED_LEN(len) - padding);
            for (size_t i = 0; i < n; i++) {
                char want = whole[i];
                if (form == BASE64_URL)
                    want = want == '+' ? '-' : want == '/' ? '_' : want;
                ck_assert_msg(text[i] == want, "size %zu form %d: character %zu", len, form, i);
            }
            size_t decoded_len = 0;
            ck_assert_int_eq(base64_decode_into(text, n, (enum base64_form)form, decoded,
                                                &decoded_len), 0);
            ck_assert_uint_eq(decoded_len, len);
            ck_assert(memcmp(decoded, bytes, len) == 0);
        }
        if (BASE64_ENCODED_LEN(len) > 4096) {   /* '=' ending the first chunk of several */
            whole[4095] = '=';
            size_t decoded_len = 99;
            ck_assert_int_eq(base64_decode_into(whole, strlen(whole), BASE64_PADDED, decoded,
                                                &decoded_len), -1);
            ck_assert_uint_eq(decoded_len, 99);
        }
        free(decoded);
        free(text);
        free(whole);
        free(bytes);
    }
}
END_TEST

START_TEST(test_base64_drop_blanks)
{
    static const char in[] = " Zm\t9v\r\nZg\v=\f= ";
    char out[sizeof(in)];
    size_t n = base64_drop_blanks(in, sizeof(in) - 1, out);
    ck_assert_uint_eq(n, 10);
    ck_assert(memcmp(out, "Zm9vZg\v=\f=", n) == 0);   /* only XML's blanks go */
    ck_assert_uint_eq(base64_drop_blanks("", 0, out), 0);
}
END_TEST

static void decodes_to(const char *s, size_t avail, size_t want_len, uint32_t want_cp)
{
    uint32_t cp = 0xDEAD;
    ck_assert_uint_eq(utf8_decode(s, avail, &cp), want_len);
    ck_assert_uint_eq(cp, want_cp);
}

START_TEST(test_utf8_valid)
{
    decodes_to("A", 1, 1, 0x41);
    decodes_to("", 1, 1, 0);                            /* the NUL itself */
    decodes_to("\x7F", 1, 1, 0x7F);
    decodes_to("\xC2\x80", 2, 2, 0x80);
    decodes_to("\xC3\xA9xyz", 5, 2, 0xE9);              /* reads one sequence only */
    decodes_to("\xDF\xBF", 2, 2, 0x7FF);
    decodes_to("\xE0\xA0\x80", 3, 3, 0x800);
    decodes_to("\xE2\x82\xAC", 3, 3, 0x20AC);
    decodes_to("\xED\x9F\xBF", 3, 3, 0xD7FF);           /* just below the surrogates */
    decodes_to("\xEE\x80\x80", 3, 3, 0xE000);           /* just above them */
    decodes_to("\xEF\xBF\xBF", 3, 3, 0xFFFF);
    decodes_to("\xF0\x90\x80\x80", 4, 4, 0x10000);
    decodes_to("\xF0\x9F\x98\x80", 4, 4, 0x1F600);
    decodes_to("\xF4\x8F\xBF\xBF", 4, 4, 0x10FFFF);
}
END_TEST

START_TEST(test_utf8_invalid)
{
    static const struct { const char *s; size_t avail; } invalid[] = {
        {"\x80", 1}, {"\xBF", 1},                                   /* stray continuation */
        {"\xC0\x80", 2}, {"\xC1\xBF", 2},                           /* overlong, 2 bytes */
        {"\xE0\x80\x80", 3}, {"\xE0\x9F\xBF", 3},                   /* overlong, 3 bytes */
        {"\xF0\x80\x80\x80", 4}, {"\xF0\x8F\xBF\xBF", 4},           /* overlong, 4 bytes */
        {"\xED\xA0\x80", 3}, {"\xED\xBF\xBF", 3},                   /* surrogates */
        {"\xF4\x90\x80\x80", 4}, {"\xF5\x80\x80\x80", 4},           /* above U+10FFFF */
        {"\xF8\x88\x80\x80\x80", 5}, {"\xFE", 1}, {"\xFF", 1},
        {"\xC3", 1}, {"\xE2\x82", 2}, {"\xF0\x9F\x98", 3},          /* truncated */
        {"\xE2\x82\xAC", 2}, {"\xF0\x9F\x98\x80", 3},               /* cut off by avail */
        {"\xC3\x28", 2}, {"\xE2\x28\xA1", 3}, {"\xE2\x82\x28", 3},  /* not continuations */
        {"\xF0\x9F\x98\x28", 4}, {"\xF0\x9F\xC3\xA9", 4},
    };
    for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
        uint32_t cp = 0xDEAD;
        ck_assert_msg(utf8_decode(invalid[i].s, invalid[i].avail, &cp) == 0,
                      "invalid sequence %zu accepted", i);
        ck_assert_uint_eq(cp, 0xDEAD);
    }
}
END_TEST

/* Text cut inside a character keeps the characters before it; invalid bytes end the prefix. */
START_TEST(test_utf8_valid_prefix)
{
    ck_assert_uint_eq(utf8_valid_prefix("caf\xC3\xA9", 5), 5);
    ck_assert_uint_eq(utf8_valid_prefix("caf\xC3\xA9", 4), 3);
    ck_assert_uint_eq(utf8_valid_prefix("\xE2\x82\xAC\xE2\x82", 5), 3);
    ck_assert_uint_eq(utf8_valid_prefix("ab\xFF" "cd", 5), 2);
    ck_assert_uint_eq(utf8_valid_prefix("", 0), 0);
}
END_TEST

/* What an adopted arena handed out lives on in the adopter, whose current block goes on
 * handing out; the adopted one is left empty (freeing it frees nothing: ASan and valgrind
 * would see the double free or the leak). */
START_TEST(test_arena_adopt)
{
    struct arena a, from;
    arena_init(&a);
    arena_init(&from);
    char *mine = arena_strdup(&a, "mine");
    char *theirs[64];
    for (int i = 0; i < 64; i++) {   /* several blocks */
        theirs[i] = arena_alloc(&from, 4096);
        memset(theirs[i], 'a' + i % 26, 4096);
    }
    size_t total = a.total + from.total;
    arena_adopt(&a, &from);
    ck_assert_ptr_null(from.head);
    ck_assert_uint_eq(from.total, 0);
    ck_assert_uint_eq(a.total, total);
    arena_free(&from);
    char *next = arena_strdup(&a, "next");
    ck_assert_ptr_eq(next, mine + 16);   /* the same block, right after */
    for (int i = 0; i < 64; i++)
        ck_assert_int_eq(theirs[i][4095], 'a' + i % 26);
    ck_assert_str_eq(mine, "mine");
    arena_adopt(&a, &from);              /* an empty one: nothing changes */
    ck_assert_uint_eq(a.total, total + 16);
    struct arena empty;
    arena_init(&empty);
    arena_adopt(&empty, &a);             /* into an empty one */
    ck_assert_ptr_null(a.head);
    ck_assert_str_eq(next, "next");
    arena_free(&empty);
}
END_TEST

/* Replacement runs: none, at the start and end, next to each other, every byte value kept
 * (a NUL in the middle too), and the buffer's end NUL after each append. */
START_TEST(test_buf_put_replaced)
{
    static const char *const table[256] = {['a'] = "<A>", ['\t'] = "\\t", [0xff] = ""};
    struct buf b = BUF_INIT;
    buf_put_replaced(&b, "", 0, table);
    ck_assert_uint_eq(b.len, 0);
    buf_put_replaced(&b, "xyz", 3, table);
    ck_assert_str_eq(b.data, "xyz");
    buf_put_replaced(&b, "a\taba\0q\xff", 8, table);
    ck_assert_uint_eq(b.len, 3 + 3 + 2 + 3 + 1 + 3 + 1 + 1);
    ck_assert(memcmp(b.data, "xyz<A>\\t<A>b<A>\0q", b.len) == 0);
    ck_assert_int_eq(b.data[b.len], '\0');
    buf_reset(&b);
    char every[256];
    for (int i = 0; i < 256; i++)
        every[i] = (char)i;
    static const char *const none[256];
    buf_put_replaced(&b, every, sizeof(every), none);
    ck_assert_uint_eq(b.len, 256);
    ck_assert(memcmp(b.data, every, 256) == 0);
    buf_reset(&b);
    buf_put_xml_escaped(&b, "<a href=\"x\">'&'\r\n", 17);
    ck_assert_str_eq(b.data, "&lt;a href=&quot;x&quot;&gt;&apos;&amp;&apos;&#13;\n");
    buf_free(&b);
}
END_TEST

/* Decimal integers at both ends of int64_t, and hexadecimal of every byte value. */
START_TEST(test_buf_put_numbers)
{
    struct buf b = BUF_INIT;
    static const int64_t ints[] = {0, 7, -1, 10, -10, 1234567890123LL, INT64_MAX, INT64_MIN};
    for (size_t i = 0; i < sizeof(ints) / sizeof(ints[0]); i++) {
        char expect[32];
        snprintf(expect, sizeof(expect), "%lld", (long long)ints[i]);
        buf_reset(&b);
        buf_put_int(&b, ints[i]);
        ck_assert_str_eq(b.data, expect);
    }
    buf_reset(&b);
    unsigned char bytes[256];
    for (int i = 0; i < 256; i++)
        bytes[i] = (unsigned char)i;
    buf_put_hex(&b, bytes, 0);
    ck_assert_uint_eq(b.len, 0);
    buf_put_hex(&b, bytes, sizeof(bytes));
    ck_assert_uint_eq(b.len, 512);
    for (int i = 0; i < 256; i++) {
        char expect[3];
        snprintf(expect, sizeof(expect), "%02x", i);
        ck_assert(memcmp(b.data + 2 * i, expect, 2) == 0);
    }
    ck_assert_int_eq(b.data[512], '\0');
    buf_free(&b);
}
END_TEST

static int open_log(const char *path, char *err, size_t errlen)
{
    if (log_open(path, LOG_LVL_INFO, "test_common", err, errlen) != 0)
        return -1;
    log_close();
    return 0;
}

/* Root opens the log file at start, perhaps in a directory the service's user writes: a link
 * put there is refused (link_fixture); a plain file is taken, and written to. */
START_TEST(test_log_file_refuses_links)
{
    char dir[] = "/tmp/test_common.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    link_fixture_check(dir, "somirrord.log", open_log);
    char path[256], err[512], line[256] = "";
    snprintf(path, sizeof(path), "%s/somirrord.log", dir);
    ck_assert_int_eq(log_open(path, LOG_LVL_INFO, "test_common", err, sizeof(err)), 0);
    log_info("a line");
    log_close();
    FILE *f = fopen(path, "r");
    ck_assert_ptr_nonnull(fgets(line, sizeof(line), f));
    fclose(f);
    ck_assert_ptr_nonnull(strstr(line, "a line"));
    unlink(path);
    rmdir(dir);
}
END_TEST

/* Text a client chose reaches log lines (libxml2 quotes a request's namespaces): its controls
 * are written as \xNN, so one message is one line, and other UTF-8 is kept. */
START_TEST(test_log_escapes_controls)
{
    char dir[] = "/tmp/test_common.XXXXXX";
    ck_assert_ptr_nonnull(mkdtemp(dir));
    char path[256], err[512], text[1024];
    snprintf(path, sizeof(path), "%s/somirrord.log", dir);
    ck_assert_int_eq(log_open(path, LOG_LVL_INFO, "test_common", err, sizeof(err)), 0);
    log_info("bad xmlns 'urn:x\n2026-11-27T00:00:00.000Z error [1] forged\r\x1b[31m\x7f\xc2\x9b "
             "caf\xc3\xa9 \xc2\xa0 \\x0a'");
    log_close();
    FILE *f = fopen(path, "r");
    size_t n = fread(text, 1, sizeof(text) - 1, f);
    fclose(f);
    text[n] = '\0';
    ck_assert_ptr_nonnull(strstr(text, "urn:x\\x0a2026-11-27T00:00:00.000Z error [1] forged"
                                       "\\x0d\\x1b[31m\\x7f\\xc2\\x9b caf\xc3\xa9 \xc2\xa0 \\x5cx0a'\n"));
    ck_assert_ptr_eq(strchr(text, '\n'), text + n - 1);   /* one line */
    unlink(path);
    rmdir(dir);
}
END_TEST

static Suite *common_suite(void)
{
    Suite *suite = suite_create("common");
    TCase *base64 = tcase_create("base64");
    tcase_add_test(base64, test_base64_vectors);
    tcase_add_test(base64, test_base64_padded_shape);
    tcase_add_test(base64, test_base64url_shape);
    tcase_add_test(base64, test_base64_chunks);
    tcase_add_test(base64, test_base64_every_byte);
    tcase_add_test(base64, test_base64_drop_blanks);
    suite_add_tcase(suite, base64);
    TCase *utf8 = tcase_create("utf8");
    tcase_add_test(utf8, test_utf8_valid);
    tcase_add_test(utf8, test_utf8_invalid);
    tcase_add_test(utf8, test_utf8_valid_prefix);
    suite_add_tcase(suite, utf8);
    TCase *arena = tcase_create("arena");
    tcase_add_test(arena, test_arena_adopt);
    suite_add_tcase(suite, arena);
    TCase *buf = tcase_create("buf");
    tcase_add_test(buf, test_buf_put_replaced);
    tcase_add_test(buf, test_buf_put_numbers);
    suite_add_tcase(suite, buf);
    TCase *log = tcase_create("log");
    tcase_add_test(log, test_log_file_refuses_links);
    tcase_add_test(log, test_log_escapes_controls);
    suite_add_tcase(suite, log);
    return suite;
}

int main(void)
{
    SRunner *runner = srunner_create(common_suite());
    srunner_run_all(runner, CK_NORMAL);
    int failed = srunner_ntests_failed(runner);
    srunner_free(runner);
    return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
