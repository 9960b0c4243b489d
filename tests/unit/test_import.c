/*
 * test_import.c — us_import in one process (MPI singleton, MPI_COMM_SELF):
 * an .npy and a safetensors tensor imported into a temp store read back
 * bit-exactly row by row; a run killed between shard files (the
 * after_file_written seam, as `ultrashard import` does for the fault hook)
 * resumes keeping the files it had committed; bad input is refused naming
 * the file and leaves no store behind.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include <mpi.h>

#include "shard/import.h"
#include "shard/store.h"
#include "shard/tensorfile.h"
#include "tests/unit/tmpdir.h"

#define A_ROWS 1000
#define A_DIM 7
#define B_ROWS 300
#define B_DIM 5

static float    a_data[A_ROWS][A_DIM];
static uint16_t b_data[B_ROWS][B_DIM];   /* bf16 bit patterns */

static const char *tpath(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", us_test_tmpdir, name);
    return buf[k];
}

static bool exists(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0;
}

/* a.npy: f32 1000 x 7; two.safetensors: bf16 "emb" 300 x 5 and a 2 x 2
 * f32 "other" (so the table must name its tensor). */
static int write_inputs(void **state)
{
    (void)state;
    if (us_test_tmpdir_setup(state) != 0)
        return -1;
    for (int r = 0; r < A_ROWS; r++)
        for (int c = 0; c < A_DIM; c++)
            a_data[r][c] = (float)(r * A_DIM + c) * 0.37f - 1000.0f;
    uint32_t x = 12345;
    for (int r = 0; r < B_ROWS; r++)
        for (int c = 0; c < B_DIM; c++) {
            x = x * 1664525u + 1013904223u;
            b_data[r][c] = (uint16_t)(0x3c00 + (x >> 22));   /* finite, varied */
        }
    float other[4] = { 1, 2, 3, 4 };
    us_err err;
    us_tensor_desc a = { "a", US_DTYPE_F32, 2, { A_ROWS, A_DIM }, a_data };
    us_tensor_desc st[2] = {
        { "emb", US_DTYPE_BF16, 2, { B_ROWS, B_DIM }, b_data },
        { "other", US_DTYPE_F32, 2, { 2, 2 }, other },
    };
    if (us_tf_write(tpath("a.npy"), US_TF_NPY, &a, 1, false, &err) != US_OK ||
        us_tf_write(tpath("two.safetensors"), US_TF_SAFETENSORS, st, 2, false, &err) != US_OK) {
        fprintf(stderr, "writing inputs: %s\n", err.msg);
        return -1;
    }
    return 0;
}

static us_import_opts opts_for(const char *out_dir)
{
    return (us_import_opts){ .out_dir = out_dir, .shards = 3, .block_bits = 4,
                             .placement_seed = 7, .keep_dtype = true };
}

/* Paths in buffers of their own: tpath()'s are reused after 4 calls. */
static void tables(us_import_table t[2])
{
    static char a_path[512], b_path[512];
    snprintf(a_path, sizeof a_path, "%s", tpath("a.npy"));
    snprintf(b_path, sizeof b_path, "%s", tpath("two.safetensors"));
    t[0] = (us_import_table){ .name = "a", .path = a_path };
    t[1] = (us_import_table){ .name = "b", .path = b_path, .tensor = "emb" };
}

/* Every row of both tables, read from the store, equals the input bytes. */
static void check_rows(const char *dir)
{
    us_err err;
    us_store *s;
    us_store_opts so = { .backend = US_BACKEND_RAM, .shard_index = US_STORE_ALL_SHARDS,
                         .expect_shards = 3 };   /* RAM: every block's CRC checked */
    assert_int_equal(us_store_open(dir, &so, &s, &err), US_OK);
    const us_manifest *m = us_store_manifest(s);
    assert_int_equal(m->n_tables, 2);
    assert_int_equal(m->tables[0].dtype, US_DTYPE_F32);
    assert_int_equal(m->tables[0].rows, A_ROWS);
    assert_int_equal(m->tables[0].dim, A_DIM);
    assert_int_equal(m->tables[1].dtype, US_DTYPE_BF16);
    assert_int_equal(m->tables[1].rows, B_ROWS);
    assert_int_equal(m->tables[1].dim, B_DIM);
    float a_row[A_DIM];
    uint16_t b_row[B_DIM];
    for (uint64_t r = 0; r < A_ROWS; r++) {
        assert_int_equal(us_store_read_row(s, 0, r, a_row, NULL, &err), US_OK);
        assert_memory_equal(a_row, a_data[r], sizeof a_row);
    }
    for (uint64_t r = 0; r < B_ROWS; r++) {
        assert_int_equal(us_store_read_row(s, 1, r, b_row, NULL, &err), US_OK);
        assert_memory_equal(b_row, b_data[r], sizeof b_row);
    }
    uint64_t compared = 0;
    assert_int_equal(us_import_compare(s, 1, tpath("two.safetensors"), "emb", &compared, &err),
                     US_OK);
    assert_int_equal(compared, B_ROWS);
    us_store_close(s);
}

static void test_import_reads_back(void **state)
{
    (void)state;
    us_import_table t[2];
    tables(t);
    char out_dir[512];
    snprintf(out_dir, sizeof out_dir, "%s", tpath("store"));
    us_import_opts o = opts_for(out_dir);
    us_import_stats st;
    us_err err = {0};
    int rc = us_import(MPI_COMM_SELF, &o, t, 2, &st, &err);
    if (rc != US_OK)
        fail_msg("import: %s", err.msg);
    /* ceil(1000 / 16) + ceil(300 / 16) blocks; every input byte read once */
    assert_int_equal(st.blocks, 63 + 19);
    assert_int_equal(st.bytes_read, A_ROWS * A_DIM * 4 + B_ROWS * B_DIM * 2);
    assert_int_equal(st.resumed_files, 0);
    assert_false(exists(tpath("store.partial")));
    check_rows(tpath("store"));
}

static void kill_at(void *ctx, int files_written)
{
    if (files_written == *(const int *)ctx)
        raise(SIGKILL);
}

static void count_files(void *ctx, int files_written)
{
    *(int *)ctx = files_written;
}

static ino_t inode(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return st.st_ino;
}

/* A run killed after committing 2 of its 6 shard files leaves only the
 * stage; the same import again keeps those 2 files (same inodes) and writes
 * the other 4. */
static void test_import_resume_keeps_files(void **state)
{
    (void)state;
    us_import_table t[2];
    tables(t);
    static char out_dir[512];
    snprintf(out_dir, sizeof out_dir, "%s", tpath("resumed"));
    us_import_opts o = opts_for(out_dir);
    int kill_after = 2;
    o.after_file_written = kill_at;
    o.after_file_ctx = &kill_after;
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        us_err err;
        us_import(MPI_COMM_SELF, &o, t, 2, NULL, &err);
        _exit(3);   /* not reached: the seam kills the child */
    }
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
    assert_false(exists(tpath("resumed")));
    /* table 0's shards are written first: shards 0 and 1 were committed */
    ino_t kept0 = inode(tpath("resumed.partial/table-0.shard-0.bin"));
    ino_t kept1 = inode(tpath("resumed.partial/table-0.shard-1.bin"));
    assert_false(exists(tpath("resumed.partial/table-0.shard-2.bin")));

    int written = 0;
    o.after_file_written = count_files;
    o.after_file_ctx = &written;
    us_import_stats st;
    us_err err = {0};
    int rc = us_import(MPI_COMM_SELF, &o, t, 2, &st, &err);
    if (rc != US_OK)
        fail_msg("resumed import: %s", err.msg);
    assert_int_equal(st.resumed_files, 2);
    assert_int_equal(written, 4);
    assert_true(inode(tpath("resumed/table-0.shard-0.bin")) == kept0);
    assert_true(inode(tpath("resumed/table-0.shard-1.bin")) == kept1);
    assert_false(exists(tpath("resumed.partial")));
    check_rows(tpath("resumed"));
}

static void write_bytes(const char *path, const void *p, size_t n)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(p, 1, n, f), n);
    fclose(f);
}

/* Each bad input fails with its code, names the file (and table), and
 * leaves neither the store nor its stage. */
static void test_import_bad_input(void **state)
{
    (void)state;
    us_err err;
    /* a truncated npy: the header says 4 x 2 f32, 12 data bytes follow */
    float v[8] = { 0 };
    us_tensor_desc d = { "t", US_DTYPE_F32, 2, { 4, 2 }, v };
    assert_int_equal(us_tf_write(tpath("trunc.npy"), US_TF_NPY, &d, 1, false, &err), US_OK);
    assert_int_equal(truncate(tpath("trunc.npy"), 128 + 12), 0);
    us_tensor_desc one_d = { "v", US_DTYPE_F32, 1, { 8 }, v };
    assert_int_equal(us_tf_write(tpath("flat.npy"), US_TF_NPY, &one_d, 1, false, &err), US_OK);
    static const char nul_descr[] = "{'descr': '<f4\0', 'fortran_order': False, 'shape': (2, 1), }";
    uint8_t hdr[10 + sizeof nul_descr + 8] = { 0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0,
                                               sizeof nul_descr, 0 };
    memcpy(hdr + 10, nul_descr, sizeof nul_descr - 1);
    hdr[10 + sizeof nul_descr - 1] = '\n';
    write_bytes(tpath("nul.npy"), hdr, sizeof hdr);

    struct { const char *path, *tensor; int code; const char *needle; } cases[] = {
        { "nope.npy", NULL, US_ENOTFOUND, "nope.npy" },
        { "trunc.npy", NULL, US_ECORRUPT, "trunc.npy" },
        { "flat.npy", NULL, US_EINVAL, "flat.npy" },
        { "nul.npy", NULL, US_EUNSUPP, "'<f4\\x00'" },
        { "two.safetensors", "missing", US_ENOTFOUND, "two.safetensors" },
        { "two.safetensors", NULL, US_EINVAL, "two.safetensors" },   /* 2 tensors: name one */
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char in[512], out[512];
        snprintf(in, sizeof in, "%s", tpath(cases[i].path));
        snprintf(out, sizeof out, "%s", tpath("refused"));
        us_import_table t = { .name = "bad", .path = in, .tensor = cases[i].tensor };
        us_import_opts o = opts_for(out);
        us_err_clear(&err);
        int rc = us_import(MPI_COMM_SELF, &o, &t, 1, NULL, &err);
        if (rc != cases[i].code || strstr(err.msg, cases[i].needle) == NULL ||
            strstr(err.msg, "'bad'") == NULL)
            fail_msg("case %zu (%s): rc %d msg '%s' (want %d, '%s')", i, cases[i].path, rc,
                     err.msg, cases[i].code, cases[i].needle);
        assert_false(exists(tpath("refused")));
        assert_false(exists(tpath("refused.partial")));
    }
    /* an existing output directory is never touched */
    assert_int_equal(mkdir(tpath("taken"), 0755), 0);
    us_import_table t[2];
    tables(t);
    char taken[512];
    snprintf(taken, sizeof taken, "%s", tpath("taken"));
    us_import_opts o = opts_for(taken);
    assert_int_equal(us_import(MPI_COMM_SELF, &o, t, 2, NULL, &err), US_EEXIST);
    assert_non_null(strstr(err.msg, "taken"));
    assert_false(exists(tpath("taken/manifest.pb")));
}

int main(void)
{
    MPI_Init(NULL, NULL);   /* a singleton: no mpirun needed */
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_import_reads_back),
        cmocka_unit_test(test_import_resume_keeps_files),
        cmocka_unit_test(test_import_bad_input),
    };
    int failed = cmocka_run_group_tests(tests, write_inputs, us_test_tmpdir_teardown);
    MPI_Finalize();
    return failed;
}
