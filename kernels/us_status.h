/*
 * us_status.h — the one error convention of UltraShard.
 *
 * Every fallible function returns an int: US_OK (0) on success, a negative
 * US_E* code on failure. When the caller passes a non-NULL `us_err *`, the
 * function also writes a one-line message naming the thing that failed (file,
 * rank, table, block, field, key). Callers chain
 *
 *     if ((rc = f(..., err)) != US_OK) goto undo_something;
 *
 * and add context with us_err_prefix() when they pass an error up. No
 * assert() on input and no exit() outside main(): bad input is an error code.
 * This header lives in kernels/ only because kernels/ is the bottom layer;
 * it has no state and no dependencies.
 */
#ifndef US_STATUS_H
#define US_STATUS_H

#include <stddef.h>

enum us_code {
    US_OK        = 0,
    US_EINVAL    = -1,  /* bad argument, shape, option or input value */
    US_EIO       = -2,  /* read/write/open/fsync failed (errno in message) */
    US_ECORRUPT  = -3,  /* checksum mismatch, truncated or malformed data */
    US_ENOMEM    = -4,  /* allocation failed */
    US_ERANGE    = -5,  /* index or size out of range */
    US_ENOTFOUND = -6,  /* missing file, table, session, key */
    US_EMPI      = -7,  /* MPI call failed or MPI environment unusable */
    US_EFABRIC   = -8,  /* libfabric call failed */
    US_EPROTO    = -9,  /* malformed or unexpected wire message */
    US_EEXIST    = -10, /* refusing to overwrite something that exists */
    US_EVERSION  = -11, /* unsupported format or protocol version */
    US_EUNSUPP   = -12, /* valid request this build/configuration cannot do */
};

#define US_ERR_MSG_BYTES 512

typedef struct us_err {
    int  code;
    char msg[US_ERR_MSG_BYTES];
} us_err;

/* Records code and a printf-style message in *err (if err is non-NULL).
 * Returns: code, so `return us_err_set(err, US_EINVAL, "...")` reads
 * naturally. */
int us_err_set(us_err *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prepends "context: " to the message already in *err.
 * Returns: err->code (US_OK when err is NULL). */
int us_err_prefix(us_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* Resets *err (if non-NULL) to US_OK with an empty message.
 * Returns: nothing; cannot fail. */
void us_err_clear(us_err *err);

/* Returns: the static name of a code, e.g. "EINVAL"; "E?" for unknown codes. */
const char *us_code_name(int code);

#endif
