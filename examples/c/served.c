/*
 * The billing service on a served vault: it connects by URL instead of
 * opening the directory (the vault is shared with other processes, such as
 * a Python analytics job) and uses the same sv_ functions. Its grant
 * (the server's clients.toml) lets it write accounts and read for billing;
 * a read for another purpose is SV_FORBIDDEN.
 *
 * Build and run (from the repository root, after cargo build --release):
 *   cc examples/c/served.c $(PKG_CONFIG_PATH=target/release pkg-config --cflags --libs shredvault) -o served
 *   ./served unix:///abs/path/sv.sock TOKEN
 */
#include <stdio.h>
#include <string.h>

#include "shredvault.h"

static int fail(const char *what, sv_status s) {
  fprintf(stderr, "C billing: %s failed (status %d): %s\n", what, (int)s, sv_last_error());
  return 1;
}

int main(int argc, char **argv) {
  sv_vault *vault = NULL;
  char customer[SV_ID_BUF], record[SV_ID_BUF];
  const char *invoice = "{\"invoice\":\"INV-2026-0042\",\"amount\":\"120.00 EUR\"}";
  sv_buf data = {NULL, 0};
  sv_status s;
  int i;

  if (argc != 3) {
    fprintf(stderr, "usage: %s URL TOKEN\n", argv[0]);
    return 2;
  }
  if ((s = sv_connect(argv[1], argv[2], &vault)) != SV_OK) return fail("sv_connect", s);
  for (i = 0; i < 50; i++) {
    if ((s = sv_subject_create(vault, customer)) != SV_OK) return fail("sv_subject_create", s);
    if ((s = sv_put(vault, customer, "account", (const uint8_t *)invoice, strlen(invoice), record)) != SV_OK)
      return fail("sv_put", s);
    if ((s = sv_get(vault, record, "billing", &data)) != SV_OK) return fail("sv_get", s);
    if (data.len != strlen(invoice) || memcmp(data.ptr, invoice, data.len) != 0) {
      fprintf(stderr, "C billing: the invoice read back differs\n");
      return 1;
    }
    sv_buf_free(&data);
  }
  printf("C billing: 50 customers invoiced and read back for billing\n");
  s = sv_get(vault, record, "marketing", &data);
  if (s != SV_FORBIDDEN) return fail("the refusal of a read for marketing", s);
  printf("C billing asks for marketing: SV_FORBIDDEN (%s)\n", sv_last_error());
  if ((s = sv_close(vault)) != SV_OK) return fail("sv_close", s);
  return 0;
}
