/*
 * tmpdir.h — one scratch directory per test binary, as cmocka group
 * fixtures: cmocka_run_group_tests(tests, us_test_tmpdir_setup,
 * us_test_tmpdir_teardown). The directory is /tmp/us-test-XXXXXX, created
 * before the first test and removed with everything in it after the last.
 */
#ifndef US_TEST_TMPDIR_H
#define US_TEST_TMPDIR_H

extern char us_test_tmpdir[64];

int us_test_tmpdir_setup(void **state);
int us_test_tmpdir_teardown(void **state);

#endif
