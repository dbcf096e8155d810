/*
 * The C API through a server (sv_connect), as the billing service uses it
 * while other processes share the vault: the same sv_ functions on a
 * served handle, SV_FORBIDDEN outside the client's grant, a clear
 * refusal of maintenance to a client without the admin grant, threads
 * sharing the handle, and a bad URL or token.
 *
 * Usage: test_connect URL BILLING_TOKEN ANALYTICS_TOKEN POLICY_FILE
 * (scripts/test starts `shredvault serve` with tests/c/clients.toml)
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shredvault.h"
#include "check.h"

static int buf_equals(const sv_buf *b, const char *text) {
  size_t n = strlen(text);
  return b->len == n && (n == 0 || memcmp(b->ptr, text, n) == 0);
}

/* Whether the buffer (not NUL-terminated) holds `needle`. */
static int contains(const sv_buf *b, const char *needle) {
  size_t n = strlen(needle);
  size_t i;
  if (b->ptr == NULL || b->len < n) return 0;
  for (i = 0; i + n <= b->len; i++)
    if (memcmp(b->ptr + i, needle, n) == 0) return 1;
  return 0;
}

typedef struct {
  sv_vault *v;
  char subject[SV_ID_BUF];
  int errors;
} worker_arg;

static void *worker(void *p) {
  worker_arg *a = (worker_arg *)p;
  int i;
  for (i = 0; i < 20; i++) {
    char record[SV_ID_BUF];
    char data[32];
    sv_buf out = {NULL, 0};
    snprintf(data, sizeof data, "served-%d", i);
    if (sv_put(a->v, a->subject, "account", (const uint8_t *)data,
               strlen(data), record) != SV_OK) {
      a->errors++;
      continue;
    }
    if (sv_get(a->v, record, "billing", &out) != SV_OK ||
        !buf_equals(&out, data))
      a->errors++;
    sv_buf_free(&out);
  }
  return NULL;
}

int main(int argc, char **argv) {
  sv_vault *billing = NULL, *analytics = NULL, *bad = NULL;
  char subject[SV_ID_BUF], record[SV_ID_BUF], id[SV_ID_BUF];
  char pk[SV_PUBLIC_KEY_BUF], email[128];
  const char *tag = getenv("SV_TEST_TAG") ? getenv("SV_TEST_TAG") : "plain";
  sv_buf out = {NULL, 0};
  sv_scan *scan = NULL;
  uint64_t expired = 7;
  pthread_t threads[4];
  worker_arg args[4];
  int i;

  if (argc != 5) {
    fprintf(stderr, "usage: %s URL BILLING_TOKEN ANALYTICS_TOKEN POLICY_FILE\n",
            argv[0]);
    return 2;
  }

  /* Bad URLs and tokens. */
  EXPECT(sv_connect("http://example.com", argv[2], &bad), SV_INVALID_ARGUMENT);
  CHECK(bad == NULL);
  EXPECT(sv_connect("unix:///nonexistent/sv.sock", argv[2], &bad), SV_IO);
  EXPECT(sv_connect(NULL, argv[2], &bad), SV_INVALID_ARGUMENT);
  EXPECT(sv_connect(argv[1], "not-a-token", &bad), SV_OK);
  EXPECT(sv_subject_create(bad, subject), SV_FORBIDDEN);
  EXPECT(sv_close(bad), SV_OK);

  EXPECT(sv_connect(argv[1], argv[2], &billing), SV_OK);
  EXPECT(sv_connect(argv[1], argv[3], &analytics), SV_OK);

  /* The same functions as on a vault opened in-process. */
  EXPECT(sv_subject_create(billing, subject), SV_OK);
  EXPECT(sv_put(billing, subject, "account", (const uint8_t *)"42.00 EUR", 9,
                record),
         SV_OK);
  EXPECT(sv_get(billing, record, "billing", &out), SV_OK);
  CHECK(buf_equals(&out, "42.00 EUR"));
  sv_buf_free(&out);
  EXPECT(sv_get(analytics, record, "billing", &out), SV_OK);
  sv_buf_free(&out);
  EXPECT(sv_update(billing, record, (const uint8_t *)"43.00 EUR", 9), SV_OK);
  EXPECT(sv_records(billing, subject, &out), SV_OK);
  CHECK(contains(&out, record));
  sv_buf_free(&out);
  EXPECT(sv_vault_id(billing, id), SV_OK);
  CHECK(strlen(id) == 32);
  EXPECT(sv_stats(analytics, &out), SV_OK);
  sv_buf_free(&out);
  EXPECT(sv_flush(billing), SV_OK);
  EXPECT(sv_warnings(billing, &out), SV_OK);
  CHECK(buf_equals(&out, "[]"));
  sv_buf_free(&out);

  /* Outside the grant: SV_FORBIDDEN, and nothing about the data. */
  EXPECT(sv_get(analytics, record, "account_admin", &out), SV_FORBIDDEN);
  CHECK(strstr(sv_last_error(), "43.00") == NULL);
  EXPECT(sv_get(billing, record, "legal_claims", &out), SV_FORBIDDEN);
  EXPECT(sv_put(billing, subject, "job_application", (const uint8_t *)"x", 1,
                id),
         SV_FORBIDDEN);
  EXPECT(sv_subject_create(analytics, id), SV_FORBIDDEN);
  EXPECT(sv_delete(billing, record), SV_FORBIDDEN);
  EXPECT(sv_erase_subject(billing, subject, NULL), SV_FORBIDDEN);
  EXPECT(sv_expire_ex(billing, 0, 0, &expired), SV_FORBIDDEN);
  CHECK(expired == 7);
  EXPECT(sv_verify_audit(analytics), SV_FORBIDDEN);

  /* Rights and facts through the server: billing is not granted them. */
  EXPECT(sv_set_restricted(billing, subject, 1), SV_FORBIDDEN);
  EXPECT(sv_record_event(billing, subject, "agreement_end", 1767225600),
         SV_FORBIDDEN);
  snprintf(email, sizeof email, "c-%s@example.com", tag);
  EXPECT(sv_subject_link(billing, subject, "email", email), SV_OK);
  email[0] = 'C'; /* found whatever its case */
  EXPECT(sv_subject_find(analytics, "email", email, id), SV_OK);
  CHECK(strcmp(id, subject) == 0);
  EXPECT(sv_identifiers(billing, subject, &out), SV_OK);
  email[0] = 'c';
  CHECK(contains(&out, email));
  sv_buf_free(&out);
  EXPECT(sv_subject_state(billing, subject, &out), SV_OK);
  CHECK(contains(&out, "\"restricted\": false"));
  sv_buf_free(&out);
  EXPECT(sv_receipt_public_key(analytics, pk), SV_OK);
  CHECK(strlen(pk) == 64);

  /* Audit entries are the admin grant's; the ledger the rights grant's. */
  EXPECT(sv_audit_entries(billing, subject, &out), SV_FORBIDDEN);
  EXPECT(sv_open_request(billing, subject, "access", 1767225600, id),
         SV_FORBIDDEN);
  EXPECT(sv_rotate_blind_index(analytics), SV_FORBIDDEN);

  /* A scan, streamed from the server; refused for a purpose not granted. */
  EXPECT(sv_scan_open(analytics, "account", "analytics", &scan),
         SV_PURPOSE_DENIED); /* granted, but not a purpose of the category */
  EXPECT(sv_scan_open(analytics, "account", "account_admin", &scan),
         SV_FORBIDDEN);
  EXPECT(sv_scan_open(analytics, "account", "billing", &scan), SV_OK);
  {
    int done = 0, seen = 0, found = 0;
    char scanned[SV_ID_BUF];
    while (!done) {
      if (sv_scan_next(scan, scanned, &out, &done) != SV_OK) break;
      if (!done) {
        seen++;
        if (strcmp(scanned, record) == 0 && buf_equals(&out, "43.00 EUR"))
          found = 1;
        sv_buf_free(&out);
      }
    }
    CHECK(done && seen >= 1 && found);
  }
  sv_scan_free(scan);

  /* Maintenance is the admin grant's. */
  EXPECT(sv_set_policy(billing, argv[4]), SV_FORBIDDEN);
  EXPECT(sv_rotate_root_key(billing, (const uint8_t *)"0123456789abcdef0123456789abcdef", 32),
         SV_FORBIDDEN);

  /* Threads sharing one served handle. */
  for (i = 0; i < 4; i++) {
    args[i].v = billing;
    args[i].errors = 0;
    EXPECT(sv_subject_create(billing, args[i].subject), SV_OK);
    pthread_create(&threads[i], NULL, worker, &args[i]);
  }
  for (i = 0; i < 4; i++) {
    pthread_join(threads[i], NULL);
    CHECK(args[i].errors == 0);
  }

  EXPECT(sv_close(analytics), SV_OK);
  EXPECT(sv_close(billing), SV_OK);
  printf("%d checks, %d failed\n", checks, failures);
  return failures == 0 ? 0 : 1;
}
