/*
 * The C API as a C service uses it: every function, every kind of invalid
 * argument, threads sharing one handle, and a deliberately triggered
 * internal failure. Built with -Wall -Wextra -Wpedantic -Werror, run plain,
 * under AddressSanitizer/UBSan and under valgrind by scripts/test.
 *
 * Usage: test_api POLICY_FILE WORK_DIR
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shredvault.h"
#include "check.h"

static const uint8_t ROOT[32] = {
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16,
    17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32};

static int buf_equals(const sv_buf *b, const char *text) {
  size_t n = strlen(text);
  return b->len == n && (n == 0 || memcmp(b->ptr, text, n) == 0);
}

static int contains(const sv_buf *b, const char *needle) {
  size_t n = strlen(needle);
  size_t i;
  if (b->ptr == NULL || b->len < n) return 0;
  for (i = 0; i + n <= b->len; i++)
    if (memcmp(b->ptr + i, needle, n) == 0) return 1;
  return 0;
}

/* ---- threads sharing one handle ----------------------------------------- */

typedef struct {
  sv_vault *v;
  char subject[SV_ID_BUF];
  int errors;
} worker_arg;

static void *worker(void *p) {
  worker_arg *a = (worker_arg *)p;
  int i;
  for (i = 0; i < 40; i++) {
    char record[SV_ID_BUF];
    char data[32];
    sv_buf out = {NULL, 0};
    snprintf(data, sizeof data, "thread-data-%d", i);
    if (sv_put(a->v, a->subject, "account", (const uint8_t *)data,
               strlen(data), record) != SV_OK) {
      a->errors++;
      continue;
    }
    if (sv_get(a->v, record, "billing", &out) != SV_OK ||
        !buf_equals(&out, data))
      a->errors++;
    sv_buf_free(&out);
    /* The last error is per thread: a failure here leaves others alone. */
    if (sv_get(a->v, record, "marketing", &out) != SV_PURPOSE_DENIED ||
        strstr(sv_last_error(), "marketing") == NULL)
      a->errors++;
  }
  return NULL;
}

static void test_threads(sv_vault *v) {
  enum { N = 4 };
  pthread_t threads[N];
  worker_arg args[N];
  int i;
  for (i = 0; i < N; i++) {
    args[i].v = v;
    args[i].errors = 0;
    EXPECT(sv_subject_create(v, args[i].subject), SV_OK);
  }
  for (i = 0; i < N; i++)
    CHECK(pthread_create(&threads[i], NULL, worker, &args[i]) == 0);
  for (i = 0; i < N; i++) {
    pthread_join(threads[i], NULL);
    CHECK(args[i].errors == 0);
  }
}

/* ---- invalid arguments --------------------------------------------------- */

static void test_invalid_arguments(sv_vault *v, const char *subject,
                                   const char *record, const char *policy,
                                   const char *dir) {
  char id[SV_ID_BUF];
  sv_buf out = {NULL, 0};
  sv_vault *other = NULL;
  sv_scan *scan = NULL;
  uint64_t n = 0;
  const char bad_utf8[] = {(char)0xff, (char)0xfe, 0};
  const char *bad_id = "not-an-id";
  const char *upper_id = "ABCDEF00ABCDEF00ABCDEF00ABCDEF00";

  /* NULL handle, in every function that takes one. */
  EXPECT(sv_flush(NULL), SV_INVALID_ARGUMENT);
  CHECK(strstr(sv_last_error(), "`v`") != NULL);
  EXPECT(sv_subject_create(NULL, id), SV_INVALID_ARGUMENT);
  EXPECT(sv_subject_link(NULL, subject, "email", "x@example.com"), SV_INVALID_ARGUMENT);
  EXPECT(sv_subject_find(NULL, "email", "x@example.com", id), SV_INVALID_ARGUMENT);
  EXPECT(sv_put(NULL, subject, "account", (const uint8_t *)"x", 1, id), SV_INVALID_ARGUMENT);
  EXPECT(sv_get(NULL, record, "billing", &out), SV_INVALID_ARGUMENT);
  EXPECT(sv_update(NULL, record, (const uint8_t *)"x", 1), SV_INVALID_ARGUMENT);
  EXPECT(sv_delete(NULL, record), SV_INVALID_ARGUMENT);
  EXPECT(sv_records(NULL, subject, &out), SV_INVALID_ARGUMENT);
  EXPECT(sv_erase_subject(NULL, subject, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_record_event(NULL, subject, "agreement_end", 0), SV_INVALID_ARGUMENT);
  EXPECT(sv_set_flag(NULL, subject, "employee", 1), SV_INVALID_ARGUMENT);
  EXPECT(sv_give_consent(NULL, subject, "marketing", 0), SV_INVALID_ARGUMENT);
  EXPECT(sv_withdraw_consent(NULL, subject, "marketing", 0), SV_INVALID_ARGUMENT);
  EXPECT(sv_set_restricted(NULL, subject, 1), SV_INVALID_ARGUMENT);
  EXPECT(sv_set_legal_hold(NULL, subject, 1), SV_INVALID_ARGUMENT);
  EXPECT(sv_set_opt_out_of_sale(NULL, subject, 1), SV_INVALID_ARGUMENT);
  EXPECT(sv_export(NULL, subject, &out), SV_INVALID_ARGUMENT);
  EXPECT(sv_expire(NULL, 0, &n), SV_INVALID_ARGUMENT);
  EXPECT(sv_verify_audit(NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_open_request(NULL, subject, "access", 0, id), SV_INVALID_ARGUMENT);
  EXPECT(sv_extend_request(NULL, record, "reason"), SV_INVALID_ARGUMENT);
  EXPECT(sv_close_request(NULL, record, 0), SV_INVALID_ARGUMENT);
  EXPECT(sv_requests(NULL, NULL, &out), SV_INVALID_ARGUMENT);
  EXPECT(sv_scan_open(NULL, "account", "billing", &scan), SV_INVALID_ARGUMENT);
  EXPECT(sv_receipt_public_key(NULL, id), SV_INVALID_ARGUMENT);

  /* NULL strings and out-parameters, naming the argument. */
  EXPECT(sv_put(v, NULL, "account", (const uint8_t *)"x", 1, id), SV_INVALID_ARGUMENT);
  CHECK(strstr(sv_last_error(), "subject_id") != NULL);
  EXPECT(sv_put(v, subject, NULL, (const uint8_t *)"x", 1, id), SV_INVALID_ARGUMENT);
  CHECK(strstr(sv_last_error(), "category") != NULL);
  EXPECT(sv_put(v, subject, "account", (const uint8_t *)"x", 1, NULL), SV_INVALID_ARGUMENT);
  CHECK(strstr(sv_last_error(), "out_record_id") != NULL);
  EXPECT(sv_get(v, record, NULL, &out), SV_INVALID_ARGUMENT);
  CHECK(strstr(sv_last_error(), "purpose") != NULL);
  EXPECT(sv_get(v, record, "billing", NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_subject_create(v, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_subject_find(v, NULL, "x", id), SV_INVALID_ARGUMENT);
  EXPECT(sv_subject_find(v, "email", NULL, id), SV_INVALID_ARGUMENT);
  EXPECT(sv_subject_find(v, "email", "x@example.com", NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_subject_link(v, subject, NULL, "x"), SV_INVALID_ARGUMENT);
  EXPECT(sv_subject_link(v, subject, "email", NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_records(v, subject, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_export(v, subject, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_requests(v, NULL, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_record_event(v, subject, NULL, 0), SV_INVALID_ARGUMENT);
  EXPECT(sv_set_flag(v, subject, NULL, 1), SV_INVALID_ARGUMENT);
  EXPECT(sv_give_consent(v, subject, NULL, 0), SV_INVALID_ARGUMENT);
  EXPECT(sv_withdraw_consent(v, subject, NULL, 0), SV_INVALID_ARGUMENT);
  EXPECT(sv_open_request(v, subject, NULL, 0, id), SV_INVALID_ARGUMENT);
  EXPECT(sv_open_request(v, subject, "access", 0, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_extend_request(v, record, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_scan_open(v, NULL, "billing", &scan), SV_INVALID_ARGUMENT);
  EXPECT(sv_scan_open(v, "account", NULL, &scan), SV_INVALID_ARGUMENT);
  EXPECT(sv_scan_open(v, "account", "billing", NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_scan_next(NULL, id, &out, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_receipt_public_key(v, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_verify_receipt(NULL, 5, NULL), SV_INVALID_ARGUMENT);

  /* Non-UTF-8 strings. */
  EXPECT(sv_put(v, subject, bad_utf8, (const uint8_t *)"x", 1, id), SV_INVALID_ARGUMENT);
  CHECK(strstr(sv_last_error(), "UTF-8") != NULL);
  EXPECT(sv_get(v, record, bad_utf8, &out), SV_INVALID_ARGUMENT);
  EXPECT(sv_subject_find(v, "email", bad_utf8, id), SV_INVALID_ARGUMENT);
  EXPECT(sv_verify_receipt((const uint8_t *)bad_utf8, 2, NULL), SV_INVALID_ARGUMENT);

  /* Malformed ids. */
  EXPECT(sv_get(v, bad_id, "billing", &out), SV_INVALID_ARGUMENT);
  CHECK(strstr(sv_last_error(), "record_id") != NULL);
  EXPECT(sv_get(v, upper_id, "billing", &out), SV_INVALID_ARGUMENT);
  EXPECT(sv_set_restricted(v, bad_id, 1), SV_INVALID_ARGUMENT);
  EXPECT(sv_set_legal_hold(v, bad_id, 1), SV_INVALID_ARGUMENT);
  EXPECT(sv_set_opt_out_of_sale(v, bad_id, 1), SV_INVALID_ARGUMENT);
  EXPECT(sv_erase_subject(v, bad_id, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_delete(v, bad_id), SV_INVALID_ARGUMENT);
  EXPECT(sv_update(v, bad_id, NULL, 0), SV_INVALID_ARGUMENT);
  EXPECT(sv_close_request(v, bad_id, 0), SV_INVALID_ARGUMENT);
  CHECK(strstr(sv_last_error(), "request_id") != NULL);

  /* A length with NULL data; (NULL, 0) is empty data and fine. */
  EXPECT(sv_put(v, subject, "account", NULL, 3, id), SV_INVALID_ARGUMENT);
  CHECK(strstr(sv_last_error(), "data") != NULL);
  EXPECT(sv_update(v, record, NULL, 3), SV_INVALID_ARGUMENT);

  /* Out-parameters are untouched on failure. */
  memset(id, 'Z', sizeof id);
  EXPECT(sv_put(v, subject, "no_such_category", (const uint8_t *)"x", 1, id),
         SV_INVALID_ARGUMENT);
  CHECK(id[0] == 'Z' && id[SV_ID_BUF - 1] == 'Z');
  out.ptr = (uint8_t *)0x1;
  out.len = 77;
  EXPECT(sv_get(v, record, "marketing", &out), SV_PURPOSE_DENIED);
  CHECK(out.ptr == (uint8_t *)0x1 && out.len == 77);
  out.ptr = NULL;
  out.len = 0;

  /* Opening: bad key length, wrong key, second handle, bad durability. */
  EXPECT(sv_open(dir, ROOT, 31, NULL, &other), SV_INVALID_ARGUMENT);
  EXPECT(sv_open(dir, NULL, 32, NULL, &other), SV_INVALID_ARGUMENT);
  EXPECT(sv_open(NULL, ROOT, 32, policy, &other), SV_INVALID_ARGUMENT);
  EXPECT(sv_open(dir, ROOT, 32, NULL, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_open(dir, ROOT, 32, NULL, &other), SV_LOCKED);
  CHECK(other == NULL);
  {
    sv_open_options o = sv_open_options_default();
    CHECK(o.struct_size == sizeof o && o.privileged == 0 && o.actor == NULL);
    o.durability = "sometimes";
    EXPECT(sv_open_ex(dir, ROOT, 32, NULL, &o, &other), SV_INVALID_ARGUMENT);
    o = sv_open_options_default();
    o.actor = "Alice Smith";
    EXPECT(sv_open_ex(dir, ROOT, 32, NULL, &o, &other), SV_INVALID_ARGUMENT);
    o = sv_open_options_default();
    o.struct_size = 1;
    EXPECT(sv_open_ex(dir, ROOT, 32, NULL, &o, &other), SV_INVALID_ARGUMENT);
    CHECK(strstr(sv_last_error(), "struct_size") != NULL);
    EXPECT(sv_open_ex(dir, ROOT, 32, NULL, NULL, &other), SV_LOCKED);
  }
  CHECK(other == NULL);
}

int main(int argc, char **argv) {
  const char *policy;
  char dir[4096], dir2[4096];
  sv_vault *v = NULL;
  char alice[SV_ID_BUF], bob[SV_ID_BUF], found[SV_ID_BUF];
  char account[SV_ID_BUF], cert[SV_ID_BUF], mkt[SV_ID_BUF], usage[SV_ID_BUF];
  char request[SV_ID_BUF], scanned[SV_ID_BUF], pk[SV_PUBLIC_KEY_BUF];
  sv_buf out = {NULL, 0}, receipt = {NULL, 0};
  sv_scan *scan = NULL;
  uint64_t expired = 0;
  int64_t overdue = 1893456000; /* 2030-01-01 */
  int done = 0, count = 0;
  uint8_t wrong[32];
  sv_open_options privileged = sv_open_options_default();
  privileged.privileged = 1;

  if (argc != 3) {
    fprintf(stderr, "usage: %s POLICY_FILE WORK_DIR\n", argv[0]);
    return 2;
  }
  policy = argv[1];
  snprintf(dir, sizeof dir, "%s/vault", argv[2]);
  snprintf(dir2, sizeof dir2, "%s/vault2", argv[2]);

  CHECK(strcmp(sv_version(), SHREDVAULT_VERSION) == 0);
  CHECK(strcmp(sv_last_error(), "") == 0);

  /* The deliberately triggered internal failure: a caught panic. */
  EXPECT(sv_test_internal_failure(), SV_INTERNAL);
  CHECK(strstr(sv_last_error(), "panicked") != NULL);
  /* The next successful call clears the last error. */
  EXPECT(sv_close(NULL), SV_OK);
  CHECK(strcmp(sv_last_error(), "") == 0);

  EXPECT(sv_open(dir, ROOT, 32, "/nonexistent/policy.toml", &v), SV_POLICY);
  CHECK(v == NULL);
  EXPECT(sv_open(dir, ROOT, 32, NULL, &v), SV_POLICY);
  EXPECT(sv_open(dir, ROOT, 32, policy, &v), SV_OK);
  CHECK(v != NULL);

  /* Subjects and identifiers. */
  EXPECT(sv_subject_create(v, alice), SV_OK);
  CHECK(strlen(alice) == 32);
  EXPECT(sv_subject_create(v, bob), SV_OK);
  EXPECT(sv_subject_link(v, alice, "email", "alice@example.com"), SV_OK);
  EXPECT(sv_subject_find(v, "email", " Alice@Example.com", found), SV_OK);
  CHECK(strcmp(found, alice) == 0);
  EXPECT(sv_subject_find(v, "email", "nobody@example.com", found), SV_NOT_FOUND);
  EXPECT(sv_subject_link(v, bob, "email", "alice@example.com"), SV_INVALID_ARGUMENT);

  /* Records. */
  EXPECT(sv_put(v, alice, "account", (const uint8_t *)"{\"name\":\"Alice\"}", 16, account), SV_OK);
  EXPECT(sv_put(v, alice, "certificate", (const uint8_t *)"\0\1cert", 6, cert), SV_OK);
  EXPECT(sv_put(v, alice, "usage_log", NULL, 0, usage), SV_OK);
  EXPECT(sv_get(v, account, "billing", &out), SV_OK);
  CHECK(buf_equals(&out, "{\"name\":\"Alice\"}"));
  sv_buf_free(&out);
  CHECK(out.ptr == NULL && out.len == 0);
  sv_buf_free(&out); /* a second free of a freed buffer is a no-op */
  sv_buf_free(NULL);
  EXPECT(sv_get(v, cert, "certificate_validation", &out), SV_OK);
  CHECK(out.len == 6 && memcmp(out.ptr, "\0\1cert", 6) == 0);
  sv_buf_free(&out);
  EXPECT(sv_get(v, usage, "security", &out), SV_OK);
  CHECK(out.ptr == NULL && out.len == 0);
  EXPECT(sv_get(v, account, "marketing", &out), SV_PURPOSE_DENIED);
  CHECK(strstr(sv_last_error(), "marketing") != NULL);
  EXPECT(sv_update(v, account, (const uint8_t *)"{\"name\":\"Alice B\"}", 18), SV_OK);
  EXPECT(sv_get(v, account, "account_admin", &out), SV_OK);
  CHECK(buf_equals(&out, "{\"name\":\"Alice B\"}"));
  sv_buf_free(&out);
  EXPECT(sv_records(v, alice, &out), SV_OK);
  CHECK(contains(&out, account) && contains(&out, "\"category\": \"certificate\""));
  sv_buf_free(&out);
  EXPECT(sv_delete(v, usage), SV_OK);
  EXPECT(sv_get(v, usage, "security", &out), SV_ERASED);
  EXPECT(sv_delete(v, usage), SV_ERASED);

  /* Retention: events, flags, expiry. */
  EXPECT(sv_record_event(v, alice, "last_certificate_end", 1798761600), SV_OK); /* 2027-01-01 */
  EXPECT(sv_set_flag(v, alice, "qualified_certificate", 1), SV_OK);
  EXPECT(sv_set_flag(v, alice, "no_such_flag", 1), SV_INVALID_ARGUMENT);
  EXPECT(sv_record_event(v, alice, "no_such_event", 0), SV_INVALID_ARGUMENT);
  EXPECT(sv_record_event(v, alice, "agreement_end", -1), SV_INVALID_ARGUMENT);
  EXPECT(sv_put(v, bob, "usage_log", (const uint8_t *)"bob log", 7, usage), SV_OK);
  /* 2030 is years ahead of the clock: refused unless forced. */
  EXPECT(sv_expire(v, 1893456000, &expired), SV_INVALID_ARGUMENT);
  CHECK(strstr(sv_last_error(), "ahead of the clock") != NULL);
  EXPECT(sv_get(v, usage, "security", &out), SV_OK);
  sv_buf_free(&out);
  EXPECT(sv_expire_ex(v, 1893456000, 1, &expired), SV_OK); /* the log's 13 months are over */
  CHECK(expired == 1);
  EXPECT(sv_expire_ex(v, 1893456000, 1, NULL), SV_OK);
  EXPECT(sv_get(v, usage, "security", &out), SV_EXPIRED);
  EXPECT(sv_get(v, cert, "certificate_validation", &out), SV_OK); /* 15 years */
  sv_buf_free(&out);

  /* Consent. */
  EXPECT(sv_put(v, bob, "marketing_contact", (const uint8_t *)"bob", 3, mkt), SV_PURPOSE_DENIED);
  EXPECT(sv_give_consent(v, bob, "marketing", 1767225600), SV_OK);
  EXPECT(sv_put(v, bob, "marketing_contact", (const uint8_t *)"bob", 3, mkt), SV_OK);
  EXPECT(sv_set_opt_out_of_sale(v, bob, 1), SV_OK);
  EXPECT(sv_get(v, mkt, "sale", &out), SV_PURPOSE_DENIED);
  EXPECT(sv_set_opt_out_of_sale(v, bob, 0), SV_OK);
  EXPECT(sv_withdraw_consent(v, bob, "marketing", 1767225700), SV_OK);
  EXPECT(sv_get(v, mkt, "marketing", &out), SV_ERASED);

  /* Restriction and legal hold. */
  EXPECT(sv_set_restricted(v, alice, 1), SV_OK);
  EXPECT(sv_get(v, account, "billing", &out), SV_RESTRICTED);
  /* legal_claims is privileged: this handle was not opened so. */
  EXPECT(sv_get(v, account, "legal_claims", &out), SV_PURPOSE_DENIED);
  CHECK(strstr(sv_last_error(), "privileged") != NULL);
  EXPECT(sv_identifiers(v, alice, &out), SV_RESTRICTED);
  EXPECT(sv_subject_state(v, alice, &out), SV_RESTRICTED);
  EXPECT(sv_set_restricted(v, alice, 0), SV_OK);
  EXPECT(sv_set_legal_hold(v, alice, 1), SV_OK);
  EXPECT(sv_erase_subject(v, alice, &receipt), SV_LEGAL_HOLD);
  CHECK(receipt.ptr == NULL);
  EXPECT(sv_set_legal_hold(v, alice, 0), SV_OK);

  /* Requests, export, scan. */
  EXPECT(sv_open_request(v, alice, "access", 1767225600, request), SV_OK);
  EXPECT(sv_open_request(v, alice, "gossip", 1767225600, found), SV_INVALID_ARGUMENT);
  EXPECT(sv_requests(v, &overdue, &out), SV_OK);
  CHECK(contains(&out, request));
  sv_buf_free(&out);
  EXPECT(sv_extend_request(v, request, "many systems to search"), SV_OK);
  EXPECT(sv_extend_request(v, request, "again"), SV_INVALID_ARGUMENT);
  EXPECT(sv_export(v, alice, &out), SV_OK);
  CHECK(contains(&out, "\"name\": \"Alice B\"") && contains(&out, "alice@example.com"));
  sv_buf_free(&out);
  EXPECT(sv_close_request(v, request, 1767312000), SV_OK);
  EXPECT(sv_close_request(v, request, 1767312000), SV_INVALID_ARGUMENT);
  EXPECT(sv_close_request(v, "00000000000000000000000000000000", 0), SV_NOT_FOUND);
  EXPECT(sv_requests(v, NULL, &out), SV_OK);
  CHECK(contains(&out, "\"extended\": true"));
  sv_buf_free(&out);
  EXPECT(sv_scan_open(v, "account", "billing", &scan), SV_OK);
  for (;;) {
    EXPECT(sv_scan_next(scan, scanned, &out, &done), SV_OK);
    if (done) break;
    count++;
    CHECK(strcmp(scanned, account) == 0 && buf_equals(&out, "{\"name\":\"Alice B\"}"));
    sv_buf_free(&out);
  }
  CHECK(count == 1);
  sv_scan_free(scan);
  sv_scan_free(NULL);
  EXPECT(sv_scan_open(v, "account", "marketing", &scan), SV_PURPOSE_DENIED);

  /* What the vault knows of a subject, the audit entries, the counts. */
  EXPECT(sv_identifiers(v, alice, &out), SV_OK);
  CHECK(contains(&out, "alice@example.com") && contains(&out, "email"));
  sv_buf_free(&out);
  EXPECT(sv_subject_state(v, alice, &out), SV_OK);
  CHECK(contains(&out, "\"last_certificate_end\": 1798761600") &&
        contains(&out, "qualified_certificate"));
  sv_buf_free(&out);
  EXPECT(sv_subject_state(v, "00000000000000000000000000000000", &out), SV_NOT_FOUND);
  EXPECT(sv_audit_entries(v, alice, &out), SV_OK);
  CHECK(contains(&out, "\"op\": \"put\"") && !contains(&out, bob));
  sv_buf_free(&out);
  EXPECT(sv_audit_entries(v, NULL, &out), SV_OK);
  CHECK(contains(&out, bob) && contains(&out, alice));
  sv_buf_free(&out);
  EXPECT(sv_stats(v, &out), SV_OK);
  CHECK(contains(&out, "\"subjects_live\": 2"));
  sv_buf_free(&out);
  EXPECT(sv_purge(v, &expired), SV_OK);
  EXPECT(sv_purge(v, NULL), SV_OK);
  EXPECT(sv_vault_id(v, found), SV_OK);
  CHECK(strlen(found) == 32);
  EXPECT(sv_vault_id(v, NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_set_post_mortem_directive(v, bob, "hand_over", "Erin Example", found), SV_OK);
  EXPECT(sv_get(v, found, "post_mortem", &out), SV_OK);
  CHECK(contains(&out, "Erin Example"));
  sv_buf_free(&out);
  EXPECT(sv_set_post_mortem_directive(v, bob, "hand_over", NULL, found), SV_INVALID_ARGUMENT);
  EXPECT(sv_set_post_mortem_directive(v, bob, "burn", NULL, found), SV_INVALID_ARGUMENT);
  EXPECT(sv_set_post_mortem_directive(v, bob, "erase", NULL, found), SV_OK);
  EXPECT(sv_set_policy(v, "/nonexistent/policy.toml"), SV_POLICY);
  EXPECT(sv_set_policy(v, policy), SV_OK);

  /* Threads, then every invalid argument. */
  test_threads(v);
  test_invalid_arguments(v, alice, account, policy, dir);

  /* Erasure with a signed receipt. */
  EXPECT(sv_receipt_public_key(v, pk), SV_OK);
  CHECK(strlen(pk) == 64);
  EXPECT(sv_erase_subject(v, alice, &receipt), SV_OK);
  CHECK(contains(&receipt, alice) && contains(&receipt, "\"signature\""));
  EXPECT(sv_verify_receipt(receipt.ptr, receipt.len, pk), SV_OK);
  EXPECT(sv_verify_receipt(receipt.ptr, receipt.len, NULL), SV_OK);
  {
    /* One changed character breaks it. */
    uint8_t *copy = malloc(receipt.len);
    size_t i;
    memcpy(copy, receipt.ptr, receipt.len);
    for (i = 0; i + 10 < receipt.len; i++)
      if (memcmp(copy + i, "erased_at", 9) == 0) {
        size_t j = i + 12; /* into the number */
        copy[j] = copy[j] == '1' ? '2' : '1';
        break;
      }
    EXPECT(sv_verify_receipt(copy, receipt.len, pk), SV_CORRUPT);
    free(copy);
  }
  sv_buf_free(&receipt);
  EXPECT(sv_erase_subject(v, bob, NULL), SV_OK);
  EXPECT(sv_get(v, account, "legal_claims", &out), SV_PURPOSE_DENIED); /* not privileged */
  EXPECT(sv_rotate_blind_index(v), SV_OK);
  EXPECT(sv_rotate_blind_index(NULL), SV_INVALID_ARGUMENT);
  EXPECT(sv_warnings(v, &out), SV_OK);
  CHECK(buf_equals(&out, "[]"));
  sv_buf_free(&out);
  EXPECT(sv_export(v, bob, &out), SV_ERASED);
  EXPECT(sv_verify_audit(v), SV_OK);
  EXPECT(sv_flush(v), SV_OK);
  EXPECT(sv_close(v), SV_OK);

  /* Reopen: the stored policy, the same data; a wrong key is refused. */
  memset(wrong, 7, sizeof wrong);
  EXPECT(sv_open(dir, wrong, 32, NULL, &v), SV_WRONG_KEY);
  privileged.durability = "batched";
  privileged.actor = "billing-service";
  EXPECT(sv_open_ex(dir, ROOT, 32, NULL, &privileged, &v), SV_OK);
  EXPECT(sv_get(v, cert, "legal_claims", &out), SV_OK);
  sv_buf_free(&out);
  EXPECT(sv_get(v, account, "legal_claims", &out), SV_OK); /* retained on request */
  sv_buf_free(&out);
  EXPECT(sv_put(v, alice, "account", (const uint8_t *)"x", 1, found), SV_ERASED);
  EXPECT(sv_close(v), SV_OK);

  /* Root-key rotation: afterwards only the new key opens the vault. */
  {
    uint8_t next[32];
    memset(next, 0x42, sizeof next);
    privileged = sv_open_options_default();
    privileged.privileged = 1;
    EXPECT(sv_open_ex(dir, ROOT, 32, NULL, &privileged, &v), SV_OK);
    EXPECT(sv_rotate_root_key(NULL, next, 32), SV_INVALID_ARGUMENT);
    EXPECT(sv_rotate_root_key(v, next, 16), SV_INVALID_ARGUMENT);
    EXPECT(sv_rotate_root_key(v, NULL, 32), SV_INVALID_ARGUMENT);
    EXPECT(sv_rotate_root_key(v, next, 32), SV_OK);
    EXPECT(sv_get(v, cert, "legal_claims", &out), SV_OK);
    sv_buf_free(&out);
    EXPECT(sv_close(v), SV_OK);
    EXPECT(sv_open(dir, ROOT, 32, NULL, &v), SV_WRONG_KEY);
    CHECK(strstr(sv_last_error(), "re-wrapped") != NULL);
    EXPECT(sv_open_ex(dir, next, 32, NULL, &privileged, &v), SV_OK);
    EXPECT(sv_get(v, cert, "legal_claims", &out), SV_OK);
    sv_buf_free(&out);

    /* Compaction: refused while open, with another key or bad arguments;
       afterwards everything live is still there. */
    EXPECT(sv_compact(dir, next, 32, &out), SV_LOCKED);
    EXPECT(sv_close(v), SV_OK);
    EXPECT(sv_compact(NULL, next, 32, &out), SV_INVALID_ARGUMENT);
    EXPECT(sv_compact(dir, next, 31, &out), SV_INVALID_ARGUMENT);
    EXPECT(sv_compact(dir, ROOT, 32, &out), SV_WRONG_KEY);
    EXPECT(sv_compact(dir, next, 32, &out), SV_OK);
    CHECK(contains(&out, "\"bytes_after\""));
    sv_buf_free(&out);
    EXPECT(sv_compact(dir, next, 32, NULL), SV_OK);
    EXPECT(sv_open_ex(dir, next, 32, NULL, &privileged, &v), SV_OK);
    EXPECT(sv_get(v, cert, "legal_claims", &out), SV_OK);
    sv_buf_free(&out);
    EXPECT(sv_verify_audit(v), SV_OK);
    EXPECT(sv_close(v), SV_OK);
  }

  /* A second vault beside the first: handles are independent. */
  EXPECT(sv_open(dir2, ROOT, 32, policy, &v), SV_OK);
  EXPECT(sv_get(v, cert, "legal_claims", &out), SV_NOT_FOUND);

  /* Backup and restore: a backup taken while the vault is open, an
     erasure after it, the ledger exported; the restore re-applies the
     erasure, refuses without a ledger, and the restored vault opens. */
  {
    char backup[4200], ledger[4200], restored[4200], norestore[4200];
    char kept[SV_ID_BUF], gone[SV_ID_BUF], s1[SV_ID_BUF], s2[SV_ID_BUF];
    const char *ledgers[1];
    uint64_t appended = 0;
    snprintf(backup, sizeof backup, "%s/backup.svb", argv[2]);
    snprintf(ledger, sizeof ledger, "%s/ledger.jsonl", argv[2]);
    snprintf(restored, sizeof restored, "%s/restored", argv[2]);
    snprintf(norestore, sizeof norestore, "%s/not-restored", argv[2]);
    ledgers[0] = ledger;
    EXPECT(sv_subject_create(v, s1), SV_OK);
    EXPECT(sv_subject_create(v, s2), SV_OK);
    EXPECT(sv_put(v, s1, "account", (const uint8_t *)"kept", 4, kept), SV_OK);
    EXPECT(sv_put(v, s2, "usage_log", (const uint8_t *)"gone", 4, gone), SV_OK);
    EXPECT(sv_backup(v, backup, &out), SV_OK);
    CHECK(contains(&out, "\"window_ends_at\""));
    sv_buf_free(&out);
    EXPECT(sv_backup(v, backup, NULL), SV_INVALID_ARGUMENT); /* exists */
    EXPECT(sv_backup(NULL, backup, NULL), SV_INVALID_ARGUMENT);
    EXPECT(sv_erase_subject(v, s2, &out), SV_OK);
    sv_buf_free(&out);
    EXPECT(sv_ledger_export(v, ledger, &appended), SV_OK);
    CHECK(appended >= 1);
    EXPECT(sv_receipt_public_key(v, pk), SV_OK);
    EXPECT(sv_close(v), SV_OK);
    EXPECT(sv_ledger_verify(ledger, pk, &out), SV_OK);
    CHECK(contains(&out, "\"entries\""));
    sv_buf_free(&out);
    EXPECT(sv_ledger_verify(ledger, "00", NULL), SV_CORRUPT);
    EXPECT(sv_restore(backup, norestore, ROOT, 32, NULL, NULL, 0, 0, NULL),
           SV_INVALID_ARGUMENT); /* no ledger, no --no-ledger */
    CHECK(strstr(sv_last_error(), "no-ledger") != NULL);
    EXPECT(sv_restore(backup, norestore, wrong, 32, NULL, ledgers, 1, 0, NULL),
           SV_WRONG_KEY);
    EXPECT(sv_restore(backup, restored, ROOT, 32, NULL, ledgers, 1, 0, &out),
           SV_OK);
    CHECK(contains(&out, s2)); /* re-erased */
    sv_buf_free(&out);
    EXPECT(sv_open(restored, ROOT, 32, NULL, &v), SV_OK);
    EXPECT(sv_get(v, kept, "account_admin", &out), SV_OK);
    CHECK(buf_equals(&out, "kept"));
    sv_buf_free(&out);
    EXPECT(sv_get(v, gone, "security", &out), SV_ERASED);
    EXPECT(sv_verify_audit(v), SV_OK);
  }
  EXPECT(sv_close(v), SV_OK);

  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
