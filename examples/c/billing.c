/*
 * A billing service on shredvault: store a customer's billing record, read
 * it for billing, answer the customer's erasure request.
 *
 * Build and run (from the repository root, after cargo build --release):
 *   cc examples/c/billing.c $(PKG_CONFIG_PATH=target/release pkg-config --cflags --libs shredvault) -o billing
 *   SHREDVAULT_ROOT_KEY=$(head -c32 /dev/urandom | xxd -p -c64) ./billing /tmp/billing-vault example-policy.toml
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "shredvault.h"

static int fail(const char *what, sv_status s) {
  fprintf(stderr, "billing: %s failed (status %d): %s\n", what, (int)s, sv_last_error());
  return 1;
}

/* 64 hex characters into 32 bytes. */
static int parse_key(const char *hex, uint8_t key[32]) {
  int i;
  if (hex == NULL || strlen(hex) != 64) return 0;
  for (i = 0; i < 32; i++) {
    unsigned int byte;
    if (sscanf(hex + 2 * i, "%2x", &byte) != 1) return 0;
    key[i] = (uint8_t)byte;
  }
  return 1;
}

int main(int argc, char **argv) {
  uint8_t key[32];
  sv_vault *vault = NULL;
  char customer[SV_ID_BUF], record[SV_ID_BUF];
  const char *billing = "{\"name\":\"Ada Lovelace\",\"iban\":\"GB33BUKB20201555555555\"}";
  sv_buf data = {NULL, 0}, receipt = {NULL, 0};
  sv_status s;

  if (argc != 3) {
    fprintf(stderr, "usage: %s VAULT_DIR POLICY_FILE (root key in SHREDVAULT_ROOT_KEY, 64 hex)\n", argv[0]);
    return 2;
  }
  if (!parse_key(getenv("SHREDVAULT_ROOT_KEY"), key)) {
    fprintf(stderr, "billing: set SHREDVAULT_ROOT_KEY to 64 hex characters\n");
    return 2;
  }
  printf("libshredvault %s\n", sv_version());
  if ((s = sv_open(argv[1], key, sizeof key, argv[2], &vault)) != SV_OK) return fail("sv_open", s);
  memset(key, 0, sizeof key);

  /* A new customer, found again later by e-mail. */
  if ((s = sv_subject_create(vault, customer)) != SV_OK) return fail("sv_subject_create", s);
  if ((s = sv_subject_link(vault, customer, "email", "ada@example.com")) != SV_OK)
    return fail("sv_subject_link", s);
  if ((s = sv_put(vault, customer, "account", (const uint8_t *)billing, strlen(billing), record)) != SV_OK)
    return fail("sv_put", s);
  printf("stored billing record %s for customer %s\n", record, customer);

  /* The monthly run reads it for billing. */
  if ((s = sv_get(vault, record, "billing", &data)) != SV_OK) return fail("sv_get", s);
  printf("billing reads: %.*s\n", (int)data.len, (const char *)data.ptr);
  sv_buf_free(&data);

  /* Marketing may not read billing data. */
  s = sv_get(vault, record, "marketing", &data);
  printf("marketing reads: %s\n", s == SV_PURPOSE_DENIED ? "refused (SV_PURPOSE_DENIED)" : "ALLOWED?!");

  /* The customer asks to be erased. The account is kept (restricted to
   * legal claims) until seven years after the agreement ends, as the policy
   * says; everything else goes now. The receipt is signed. */
  if ((s = sv_erase_subject(vault, customer, &receipt)) != SV_OK) return fail("sv_erase_subject", s);
  printf("erasure receipt:\n%.*s\n", (int)receipt.len, (const char *)receipt.ptr);
  sv_buf_free(&receipt);
  s = sv_get(vault, record, "billing", &data);
  printf("billing reads after the erasure request: %s\n",
         s == SV_RESTRICTED ? "refused (SV_RESTRICTED: kept for legal claims only)" : sv_last_error());

  if ((s = sv_close(vault)) != SV_OK) return fail("sv_close", s);
  return 0;
}
