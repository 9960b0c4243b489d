/* tmpdir.c — scratch directory fixtures for unit tests (see tmpdir.h). */
#include "tests/unit/tmpdir.h"

#include <stdio.h>
#include <stdlib.h>

char us_test_tmpdir[64];

int us_test_tmpdir_setup(void **state)
{
    (void)state;
    snprintf(us_test_tmpdir, sizeof us_test_tmpdir, "/tmp/us-test-XXXXXX");
    return mkdtemp(us_test_tmpdir) ? 0 : -1;
}

int us_test_tmpdir_teardown(void **state)
{
    (void)state;
    char cmd[300];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", us_test_tmpdir);
    return system(cmd);
}
