/*
 * tensorfile.h — read and write tensors in `.npy` and safetensors files.
 *
 * Reading: us_tf_open() reads and validates only the header; tensor data is
 * read later with pread at computed offsets, so each MPI rank can read just
 * the row range (blocks) it owns. A row is one index of the first dimension
 * (a 0-d tensor has one row). The file stays open until us_tf_close().
 *
 * Formats accepted (little-endian, C order only):
 *  - .npy versions 1.0, 2.0 and 3.0. descr exactly '<f4' (f32), '<f2' (f16),
 *    '|i1' / '<i1' / 'i1' (int8), and '<V2' / '|V2' read as bf16 — numpy has
 *    no bf16 dtype; ml_dtypes' bfloat16 arrays are saved as raw 2-byte voids.
 *    fortran_order True, big-endian and other dtypes are refused (US_EUNSUPP).
 *    The file size must equal header + data exactly.
 *    The tensor's name is the file's base name without ".npy".
 *  - safetensors: 8-byte little-endian header length N (N <= 100 MB), then a
 *    JSON object of N bytes: "name": {"dtype", "shape", "data_offsets":
 *    [begin, end]} relative to the data area after the header, optionally
 *    followed by whitespace padding (nothing else); "__metadata__" is
 *    tolerated and ignored. Dtypes exactly F32, F16, BF16, I8 (others:
 *    US_EUNSUPP). A NUL in the header (raw or \u0000) is US_ECORRUPT: JSON
 *    strings would end there, so "F32\u0000x" must not read as "F32".
 *    As in the reference implementation, offsets must tile the data area
 *    exactly: no overlap, no hole, nothing out of bounds, no trailing bytes,
 *    and end - begin == product(shape) * element size. Offsets above 2^53
 *    (JSON numbers are doubles in cJSON) are refused.
 * Every malformed or truncated file is US_ECORRUPT with a message naming the
 * file (and the tensor, when one is at fault); nothing is read past a check.
 *
 * In a tensor file, US_DTYPE_INT8 means plain int8 elements (no row scales).
 *
 * Writing: us_tf_writer_* stream one or more named tensors into a new file
 * crash-safely (temp file, fsync, rename, fsync(dir): see durable.h). All
 * tensors are declared up front (the header comes first); their bytes are
 * then appended in declaration order; commit checks the byte count. npy
 * files hold exactly one tensor (bf16 written as '<V2').
 */
#ifndef US_TENSORFILE_H
#define US_TENSORFILE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "kernels/convert.h"
#include "kernels/us_status.h"
#include "shard/durable.h"

#define US_TF_MAX_DIMS 8

typedef enum us_tf_format {
    US_TF_NPY = 0,
    US_TF_SAFETENSORS = 1,
} us_tf_format;

typedef struct us_tensor_info {
    const char *name;               /* owned by the file */
    us_dtype    dtype;
    int         ndim;               /* 0..US_TF_MAX_DIMS */
    uint64_t    shape[US_TF_MAX_DIMS];
    uint64_t    offset_bytes;       /* absolute file offset of the first byte */
    uint64_t    nbytes;             /* product(shape) * element size */
    uint64_t    rows;               /* shape[0], or 1 for a 0-d tensor */
    uint64_t    row_bytes;          /* nbytes / rows (0 when rows == 0) */
} us_tensor_info;

typedef struct us_tensor_file us_tensor_file;

/* Opens and validates `path`; the format is taken from the first bytes
 * (npy magic) or else safetensors. Returns US_OK and *out, or US_ENOTFOUND /
 * US_EIO / US_ECORRUPT / US_EUNSUPP / US_ENOMEM naming the file.
 * Returns: see above (US_OK or the codes listed).
 */
int us_tf_open(const char *path, us_tensor_file **out, us_err *err);
/* Returns: nothing; accepts NULL. */
void us_tf_close(us_tensor_file *f);

/* Returns: the path given to us_tf_open (owned by f). */
const char  *us_tf_path(const us_tensor_file *f);
/* Returns: the file format. */
us_tf_format us_tf_format_of(const us_tensor_file *f);
/* Returns: the number of tensors. */
size_t       us_tf_count(const us_tensor_file *f);
/* i-th tensor in file order (ascending offset); NULL when out of range.
 * Returns: the tensor, or NULL when i is out of range.
 */
const us_tensor_info *us_tf_tensor(const us_tensor_file *f, size_t i);
/* By name; name == NULL returns the only tensor of a one-tensor file.
 * Returns US_ENOTFOUND (naming file and tensor) or US_EINVAL (ambiguous).
 * Returns: US_OK; US_ENOTFOUND (no such name); US_EINVAL (name NULL, several tensors).
 */
int us_tf_find(const us_tensor_file *f, const char *name,
               const us_tensor_info **out, us_err *err);

/* Reads rows [row_begin, row_begin + n_rows) of tensor t into dst, which
 * holds dst_bytes >= n_rows * row_bytes. US_ERANGE for rows out of range,
 * US_ECORRUPT if the file was truncated since open.
 * Returns: US_OK; US_ERANGE; US_EINVAL (dst too small); US_ECORRUPT (truncated); US_EIO.
 */
int us_tf_read_rows(const us_tensor_file *f, const us_tensor_info *t,
                    uint64_t row_begin, uint64_t n_rows,
                    void *dst, size_t dst_bytes, us_err *err);
/* Whole tensor (= all rows).
 * Returns: as us_tf_read_rows.
 */
int us_tf_read(const us_tensor_file *f, const us_tensor_info *t,
               void *dst, size_t dst_bytes, us_err *err);

/* Element size of a dtype in a tensor file (int8: 1), 0 if unknown.
 * Returns: the element size in bytes, 0 if unknown.
 */
size_t us_tf_dtype_size(us_dtype dtype);
/* Safetensors dtype string "F32", "F16", "BF16", "I8".
 * Returns: the dtype string, or NULL for an unknown dtype.
 */
const char *us_tf_safetensors_dtype(us_dtype dtype);

/* ---- writing ---- */

typedef struct us_tensor_desc {
    const char *name;
    us_dtype    dtype;
    int         ndim;
    uint64_t    shape[US_TF_MAX_DIMS];
    const void *data;     /* for us_tf_write(); ignored by the streaming writer */
} us_tensor_desc;

typedef struct us_tf_writer {
    us_durable_file file;
    uint64_t header_bytes;
    uint64_t data_bytes;      /* total expected */
} us_tf_writer;

/* Declares the tensors and writes the header to a temp file. npy: n == 1.
 * Refuses an existing `path` unless overwrite. Bad names, duplicate names,
 * dims or sizes: US_EINVAL naming the tensor.
 * Returns: US_OK; US_EINVAL naming the tensor; US_EEXIST; US_EIO; US_ENOMEM.
 */
int us_tf_writer_open(us_tf_writer *w, const char *path, us_tf_format format,
                      const us_tensor_desc *tensors, size_t n, bool overwrite,
                      us_err *err);
/* Appends tensor bytes in declaration order (any chunking).
 * Returns: US_OK; US_EINVAL (more than declared); US_EIO naming the file.
 */
int us_tf_writer_append(us_tf_writer *w, const void *bytes, size_t n, us_err *err);
/* Checks that exactly the declared bytes were appended, then makes the file
 * visible (fsync, rename, fsync dir). On any error the target is untouched.
 * Returns: US_OK; US_EINVAL (byte count differs); US_EIO.
 */
int us_tf_writer_commit(us_tf_writer *w, us_err *err);
/* Returns: nothing; the target is untouched. */
void us_tf_writer_abort(us_tf_writer *w);

/* One call: declare, append each tensor's data, commit.
 * Returns: as us_tf_writer_open / _append / _commit; US_EINVAL for a tensor without data.
 */
int us_tf_write(const char *path, us_tf_format format, const us_tensor_desc *tensors,
                size_t n, bool overwrite, us_err *err);

#endif
