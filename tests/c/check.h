/*
 * The C tests' one check: CHECK(cond) counts a check and reports a failed
 * one with the library's last error; EXPECT(call, status) checks a call's
 * status. Each test program reports `checks` and `failures` at its end.
 */
#ifndef SV_TEST_CHECK_H
#define SV_TEST_CHECK_H

#include <stdio.h>

#include "shredvault.h"

static int failures = 0;
static int checks = 0;

#define CHECK(cond)                                                            \
  do {                                                                         \
    checks++;                                                                  \
    if (!(cond)) {                                                             \
      failures++;                                                              \
      fprintf(stderr, "%s:%d: check failed: %s (last error: %s)\n", __FILE__,  \
              __LINE__, #cond, sv_last_error());                               \
    }                                                                          \
  } while (0)

#define EXPECT(call, status) CHECK((call) == (status))

#endif
