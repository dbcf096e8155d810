/*
 * The C API with the root key in a PKCS#11 token (SoftHSM2 in the tests):
 * sv_open_ex with options.root_key_uri creates and reopens a vault, bytes
 * do not open it, both a key and a URI are refused, and a URI naming no
 * object, a wrong PIN and a missing module are clean errors.
 *
 * Usage: test_hsm URI URI_OF_NO_OBJECT URI_WITH_WRONG_PIN POLICY_FILE DIR
 * (scripts/test makes the token and the key with `shredvault init
 * --create-key`, SOFTHSM2_CONF in the environment)
 */
#include <stdio.h>
#include <string.h>

#include "shredvault.h"
#include "check.h"

static sv_status open_with(const char *dir, const char *uri, const char *policy,
                           sv_vault **v) {
  sv_open_options o = sv_open_options_default();
  o.root_key_uri = uri;
  o.actor = "billing";
  return sv_open_ex(dir, NULL, 0, policy, &o, v);
}

int main(int argc, char **argv) {
  const char *uri, *no_object, *wrong_pin, *policy;
  char dir[4096], record[SV_ID_BUF], subject[SV_ID_BUF];
  uint8_t key[32];
  sv_vault *v = NULL;
  sv_buf out = {NULL, 0};
  sv_open_options o = sv_open_options_default();
  if (argc != 6) {
    fprintf(stderr, "usage: %s URI NO_OBJECT_URI WRONG_PIN_URI POLICY DIR\n", argv[0]);
    return 2;
  }
  uri = argv[1];
  no_object = argv[2];
  wrong_pin = argv[3];
  policy = argv[4];
  snprintf(dir, sizeof dir, "%s/vault", argv[5]);

  EXPECT(open_with(dir, uri, policy, &v), SV_OK);
  EXPECT(sv_subject_create(v, subject), SV_OK);
  EXPECT(sv_put(v, subject, "account", (const uint8_t *)"in the token", 12, record), SV_OK);
  EXPECT(sv_close(v), SV_OK);
  v = NULL;

  EXPECT(open_with(dir, uri, NULL, &v), SV_OK);
  EXPECT(sv_get(v, record, "billing", &out), SV_OK);
  CHECK(out.len == 12 && memcmp(out.ptr, "in the token", 12) == 0);
  sv_buf_free(&out);
  EXPECT(sv_close(v), SV_OK);
  v = NULL;

  /* Bytes do not open it; a key and a URI together are refused. */
  memset(key, 0x5a, sizeof key);
  EXPECT(sv_open(dir, key, sizeof key, NULL, &v), SV_WRONG_KEY);
  o.root_key_uri = uri;
  EXPECT(sv_open_ex(dir, key, sizeof key, NULL, &o, &v), SV_INVALID_ARGUMENT);
  CHECK(v == NULL);
  /* The token's failures. */
  EXPECT(open_with(dir, no_object, NULL, &v), SV_WRONG_KEY);
  CHECK(strstr(sv_last_error(), "not in its token") != NULL);
  EXPECT(open_with(dir, wrong_pin, NULL, &v), SV_WRONG_KEY);
  CHECK(strstr(sv_last_error(), "PIN") != NULL);
  EXPECT(open_with(dir, "pkcs11:object=x?module-path=/nonexistent/p11.so&pin-value=1", NULL, &v), SV_IO);
  EXPECT(open_with(dir, "pkcs11:object=x", NULL, &v), SV_INVALID_ARGUMENT);
  CHECK(v == NULL);

  if (failures) {
    fprintf(stderr, "%d of %d checks failed\n", failures, checks);
    return 1;
  }
  printf("test_hsm: %d checks passed\n", checks);
  return 0;
}
