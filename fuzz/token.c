/* fuzz/token: fuzz target for SignedToken verification (proto/token.h, checks 2-9 of protocol
 * section 3 and the nonce of 4.1). The policy is fixed: issuer "SuperOffice AS", application id
 * 123123123123123123, skew 300 s, any tenant, now = 2026-11-26T10:15:00Z, and two vendor
 * certificates made at the first call with OpenSSL from the fixed test key below (fixed serials,
 * names and dates, so the thumbprints and every signature are the same on every run).
 *
 * Input: the token text, verified with and without need_nonce. An input starting with '{' is
 * instead "HEADER_JSON\nCLAIMS_JSON" (or just CLAIMS_JSON, with header {"alg":"RS256"}): it is
 * signed with the test key and then verified, so mutations reach checks 5-9 behind the
 * signature.
 *
 * Seeds: built with -DFUZZ_TOKEN_MAKE_SEEDS, this file is a program that writes signed seed
 * tokens into the directory given as its argument (see the end of the file).
 *
 * The key is a throwaway made for this file; it signs nothing but fuzz inputs. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "common/log.h"
#include "proto/fault.h"
#include "proto/token.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FUZZ_NOW ((time_t)1795688100)          /* 2026-11-26T10:15:00Z */
#define FUZZ_APP_ID "123123123123123123"
#define FUZZ_ISSUER "SuperOffice AS"

static const char test_key_pem[] =
    "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEpAIBAAKCAQEA1opH6PZgu8ArRkuAgBWcCgVqtIXJxCz2gYTvdvOnTchfPvBW\n"
    "tEON0xWYq22NhZkGsLEkMTURbsEc7RXJh7JXzkPzvlO1Zp2v4H82M62JukUDvLnp\n"
    "0bmkIK80Tk3uS/ePwfpBucyk67WnWYbfTaR47bQjvCO8PEa93YSC6bOn+9nEOX7E\n"
    "bfmhXAfS/GKFT6x/1LmOFQKudFQnlvTZ+sWyVxgWmZaLa6SlMgMRsup0LVbBvnty\n"
    "mAFBd/APghYVg4EinrVrP0kVZ5CDbIH+4qSaiiKpUIHIQ5faGlpRwZr4E8UsKFLA\n"
    "eBO6UZ812mPKJDeV7U+4jVOehr5A7GaJk7lj1QIDAQABAoIBABHlHeNqLZ5rhJCL\n"
    "+q90XfweAI0HPdGtuHAMQRcocrOTu5IZ5PmLSvio6/+clznmDj9Nv0mVdhtJY1rJ\n"
    "PvKhJx7O3zVocRCapZFxuvkrh/nwCMREs6KpO+33/0Jq0K4oe6a/85yGW9lHYSqg\n"
    "C99DkUyugm6OgoR6mBqyk2Lf9+qTU9K2Hj7EAjXX03LVKkpOq5aCAvBTWigaWgik\n"
    "Y7o5MAcFsSokiYyqmD/fHTKJ78bo1qOzFNhzz/9PivZboH+ZcSJXiEtZIURxlXq8\n"
    "TVtedcvRJRgMeg/d/9vb1Jr4LYig2APmXe0CWL3mfaicY3wssM/6BCf57rE/DfzW\n"
    "dWyNsEECgYEA+mTkkrmKwbnK0W8mNEgGFZmpDaUvCh0kKwHNcNWWvHn74JV2y+vY\n"
    "UVsVZ8KLn575U7QiQ9qvY+4C323SLEvuBtnfc9pPNTr5xzqesvi4fbZycnu7/oK0\n"
    "QBhLLKf7XaOpS/hm0sUGze6Avl96RSWXsovx/H2fE2hK5qhV/8tM2zUCgYEA21fl\n"
    "GhWMTssYrNnYZcD2AjYega96vBX5rhg8lZUQ4iNej7Riov5B+Ft9Mll/wsqDejzw\n"
    "R5rkTq0MM0qtqVRU3ArdAg3T4/zIGSmJ8HIFWLvasZy2hB+f66/6wHhlQIg1gkG/\n"
    "Bqp9ug5YNMnX1iA3pMiEzwE0/fx8nTckT9pO2iECgYEAvZ17znS9VBj7MwBlwP+t\n"
    "w9u6PoARkCojQoI57jGA1bfWeusUrDYseOdt3UZg7362tqFZtWK8oQMTn9kNaMgT\n"
    "N5Lz+Uqf4uKHVkzY8xUQuPpZzsJOydx23XbILsgCvZV7VfGFBCV6EqaDTicFc6mV\n"
    "J/t8Q8VpmovG9McTYQK2b+UCgYBj52LIQKxJbyPsBsUTg5IJa9D1TJHgfTnd29gs\n"
    "YVrxRR7a4VRT3O77SeB6QF16wXalBICEfL4kP5lg+1Ch4XFNT/1d5CJwo0AYhdz4\n"
    "EVbyFY4Ee9Z901GprdvOMogbnm6Qx5VUWe8uAT6XvJ98PexaN6KWDnyueoPfr6/w\n"
    "VwS3QQKBgQC8xE5rsj5Skzs1By2Iw43QED98jLuJ+u/LhUBiJ51/3oMJcZl2U/uW\n"
    "BWXVQzhypDqdUEnUhsTgfwykczpOpNBVCRVu6AgZbVEn7bDTIbX7/9roAW1pzZ/g\n"
    "KMpMoBoGGzz4R188e9UqHyweIPe89hEYgymsha/CwdjyJcqM/2ya4w==\n"
    "-----END RSA PRIVATE KEY-----\n";

static EVP_PKEY *test_key;
static struct vendor_cert certs[2];
static struct cfg_strings allow_any;
static struct token_policy policy;

static void fail_setup(const char *what)
{
    fprintf(stderr, "fuzz/token: setup failed: %s\n", what);
    abort();
}

/* A self-signed certificate of test_key with fixed fields; thumbprints as config/keys.c makes
 * them (kid: lowercase hex SHA-1 of the DER; x5t: its base64url). */
static void make_cert(long serial, const char *name, struct vendor_cert *out)
{
    X509 *cert = X509_new();
    if (!cert)
        fail_setup("X509_new");
    X509_set_version(cert, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(cert), serial);
    if (!ASN1_TIME_set(X509_getm_notBefore(cert), (time_t)1767225600) ||    /* 2026-01-01 */
        !ASN1_TIME_set(X509_getm_notAfter(cert), (time_t)1893456000))       /* 2030-01-01 */
        fail_setup("ASN1_TIME_set");
    X509_set_pubkey(cert, test_key);
    X509_NAME *subject = X509_get_subject_name(cert);
    X509_NAME_add_entry_by_txt(subject, "CN", MBSTRING_ASC, (const unsigned char *)name, -1, -1, 0);
    X509_set_issuer_name(cert, subject);
    if (X509_sign(cert, test_key, EVP_sha256()) <= 0)
        fail_setup("X509_sign");
    unsigned char sha1[20];
    unsigned int sha1_len = 0;
    if (X509_digest(cert, EVP_sha1(), sha1, &sha1_len) != 1 || sha1_len != 20)
        fail_setup("X509_digest");
    for (unsigned int i = 0; i < sha1_len; i++)
        snprintf(out->kid + 2 * i, sizeof(out->kid) - 2 * i, "%02x", sha1[i]);
    char *x5t = base64url_encode(sha1, sha1_len);
    if (!x5t || strlen(x5t) != 27)
        fail_setup("x5t");
    memcpy(out->x5t, x5t, 28);
    free(x5t);
    out->cert = cert;
    out->public_key = X509_get_pubkey(cert);
    out->path = NULL;
    if (!out->public_key)
        fail_setup("X509_get_pubkey");
}

static void teardown(void)
{
    for (size_t i = 0; i < 2; i++) {
        EVP_PKEY_free(certs[i].public_key);
        X509_free(certs[i].cert);
    }
    EVP_PKEY_free(test_key);
}

static void setup(void)
{
    log_set_level(LOG_LVL_ERROR);
    BIO *bio = BIO_new_mem_buf(test_key_pem, (int)sizeof(test_key_pem) - 1);
    test_key = bio ? PEM_read_bio_PrivateKey(bio, NULL, NULL, NULL) : NULL;
    BIO_free(bio);
    if (!test_key)
        fail_setup("the test key");
    /* The second certificate is listed first, so that a token without x5t/kid tries both. */
    make_cert(2, "somirror fuzz vendor (old)", &certs[0]);
    make_cert(1, "somirror fuzz vendor", &certs[1]);
    policy.certs = certs;
    policy.ncerts = 2;
    policy.issuer = FUZZ_ISSUER;
    policy.app_id = FUZZ_APP_ID;
    policy.clock_skew = 300;
    policy.allow = &allow_any;
    atexit(teardown);
}

static volatile size_t sink;

static void verify(const char *jwt, size_t len)
{
    for (int need_nonce = 0; need_nonce <= 1; need_nonce++) {
        struct token_claims claims;
        struct fault f;
        memset(&claims, 0, sizeof(claims));
        fault_clear(&f);
        if (token_verify(jwt, len, &policy, FUZZ_NOW, need_nonce, &claims, &f) == 0)
            sink += strlen(claims.tenant) + strlen(claims.nonce) + (size_t)claims.exp;
        else
            sink += strlen(f.message) + (size_t)f.code;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int initialised;
    if (!initialised) {
        setup();
        initialised = 1;
    }
    if (size == 0 || data[0] != '{' || size > TOKEN_MAX_LEN) {
        verify((const char *)data, size);
        return 0;
    }
    /* "HEADER\nCLAIMS" or "CLAIMS": sign, then verify. */
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    const char *header = "{\"alg\":\"RS256\"}";
    const char *claims = text;
    char *nl = memchr(text, '\n', size);
    if (nl) {
        *nl = '\0';
        header = text;
        claims = nl + 1;
    }
    char *jwt = token_sign_compact(test_key, header, claims);
    if (jwt) {
        verify(jwt, strlen(jwt));
        free(jwt);
    }
    free(text);
    return 0;
}

#ifdef FUZZ_TOKEN_MAKE_SEEDS
/* cc -DFUZZ_TOKEN_MAKE_SEEDS fuzz/token.c <libs> -o make-seeds && ./make-seeds fuzz/corpus/token */
int main(int argc, char **argv);

static void write_seed(const char *dir, const char *name, const char *text)
{
    char path[4096];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(text, 1, strlen(text), f) != strlen(text) || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static void write_signed(const char *dir, const char *name, const char *header, const char *claims)
{
    char *jwt = token_sign_compact(test_key, header, claims);
    if (!jwt)
        fail_setup("token_sign_compact");
    write_seed(dir, name, jwt);
    free(jwt);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s DIR\n", argv[0]);
        return 2;
    }
    const char *dir = argv[1];
    setup();
    char header_x5t[128], header_kid[128], header_both[192];
    snprintf(header_x5t, sizeof(header_x5t), "{\"alg\":\"RS256\",\"typ\":\"JWT\",\"x5t\":\"%s\"}", certs[1].x5t);
    snprintf(header_kid, sizeof(header_kid), "{\"alg\":\"RS256\",\"kid\":\"%s\"}", certs[1].kid);
    snprintf(header_both, sizeof(header_both), "{\"alg\":\"RS256\",\"x5t\":\"%s\",\"kid\":\"%s\"}",
             certs[0].x5t, certs[1].kid);
    const char *good =
        "{\"sub\":\"Cust12020\",\"nonce\":\"6D50C131F468876F5B316273B20B69FE\","
        "\"http://schemes.superoffice.net/identity/ctx\":\"Cust12020\","
        "\"nbf\":1795687800,\"exp\":1795688400,\"iss\":\"SuperOffice AS\",\"aud\":\"spn:123123123123123123\"}";
    write_signed(dir, "valid-x5t.jwt", header_x5t, good);
    write_signed(dir, "valid-kid.jwt", header_kid, good);
    write_signed(dir, "valid-no-thumbprint.jwt", "{\"alg\":\"RS256\"}", good);
    write_signed(dir, "x5t-and-kid.jwt", header_both, good);
    write_signed(dir, "aud-array.jwt", header_x5t,
                 "{\"sub\":\"Cust1\",\"exp\":1795688400,\"iss\":\"SuperOffice AS\","
                 "\"aud\":[\"spn:other\",\"spn:123123123123123123\"],\"nonce\":\"abc_-1\"}");
    write_signed(dir, "expired.jwt", header_x5t,
                 "{\"sub\":\"Cust1\",\"exp\":1795680000,\"iss\":\"SuperOffice AS\",\"aud\":\"spn:123123123123123123\"}");
    write_signed(dir, "not-yet.jwt", header_x5t,
                 "{\"sub\":\"Cust1\",\"nbf\":1795699999,\"exp\":1795799999,\"iss\":\"SuperOffice AS\",\"aud\":\"spn:123123123123123123\"}");
    write_signed(dir, "wrong-issuer.jwt", header_x5t,
                 "{\"sub\":\"Cust1\",\"exp\":1795688400,\"iss\":\"Someone\",\"aud\":\"spn:123123123123123123\"}");
    write_signed(dir, "wrong-audience.jwt", header_x5t,
                 "{\"sub\":\"Cust1\",\"exp\":1795688400,\"iss\":\"SuperOffice AS\",\"aud\":\"spn:1\"}");
    write_signed(dir, "bad-tenant.jwt", header_x5t,
                 "{\"sub\":\"_bad-tenant\",\"exp\":1795688400,\"iss\":\"SuperOffice AS\",\"aud\":\"spn:123123123123123123\"}");
    write_signed(dir, "tenant-mismatch.jwt", header_x5t,
                 "{\"sub\":\"Cust1\",\"http://schemes.superoffice.net/identity/ctx\":\"Cust2\","
                 "\"exp\":1795688400,\"iss\":\"SuperOffice AS\",\"aud\":\"spn:123123123123123123\"}");
    write_signed(dir, "exp-string.jwt", header_x5t,
                 "{\"sub\":\"Cust1\",\"exp\":\"1795688400\",\"iss\":\"SuperOffice AS\",\"aud\":\"spn:123123123123123123\"}");
    write_signed(dir, "duplicate-key.jwt", header_x5t,
                 "{\"sub\":\"Cust1\",\"sub\":\"Cust2\",\"exp\":1795688400,\"iss\":\"SuperOffice AS\",\"aud\":\"spn:123123123123123123\"}");
    write_signed(dir, "crit.jwt", "{\"alg\":\"RS256\",\"crit\":[\"exp\"]}", good);
    write_signed(dir, "alg-hs256.jwt", "{\"alg\":\"HS256\"}", good);
    write_signed(dir, "bad-nonce.jwt", header_kid,
                 "{\"sub\":\"Cust1\",\"nonce\":\"has space\",\"exp\":1795688400,\"iss\":\"SuperOffice AS\",\"aud\":\"spn:123123123123123123\"}");
    write_seed(dir, "alg-none.jwt",
               "eyJhbGciOiJub25lIn0.eyJzdWIiOiJDdXN0MSIsImV4cCI6MTc5NTY4ODQwMH0.");
    write_seed(dir, "two-parts.jwt", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJDdXN0MSJ9");
    write_seed(dir, "padded.jwt", "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJDdXN0MSJ9==.AAAA");
    write_seed(dir, "not-json.jwt", "bm90IGpzb24.bm90IGpzb24.c2ln");
    write_seed(dir, "empty-parts.jwt", "..");
    write_seed(dir, "signed-claims.json", good);
    char both[1024];
    snprintf(both, sizeof(both), "%s\n%s", header_kid, good);
    write_seed(dir, "signed-header-claims.json", both);
    write_seed(dir, "signed-claims-aud-number.json",
               "{\"sub\":\"Cust1\",\"exp\":1795688400.5,\"nbf\":-1e300,\"iss\":\"SuperOffice AS\",\"aud\":[1,\"spn:123123123123123123\"]}");
    return 0;
}
#endif
