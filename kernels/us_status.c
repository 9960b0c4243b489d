/* us_status.c — error records: see us_status.h for the convention. */
#include "kernels/us_status.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

int us_err_set(us_err *err, int code, const char *fmt, ...)
{
    if (err == NULL)
        return code;
    err->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    return code;
}

int us_err_prefix(us_err *err, const char *fmt, ...)
{
    if (err == NULL)
        return US_OK;
    char prefix[US_ERR_MSG_BYTES];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    if (n < 0)
        return err->code;
    /* Truncation of an over-long message is acceptable; keep the prefix. */
    char joined[2 * US_ERR_MSG_BYTES + 2];
    snprintf(joined, sizeof joined, "%s: %s", prefix, err->msg);
    memcpy(err->msg, joined, US_ERR_MSG_BYTES - 1);
    err->msg[US_ERR_MSG_BYTES - 1] = '\0';
    return err->code;
}

void us_err_clear(us_err *err)
{
    if (err == NULL)
        return;
    err->code = US_OK;
    err->msg[0] = '\0';
}

const char *us_code_name(int code)
{
    switch (code) {
    case US_OK:        return "OK";
    case US_EINVAL:    return "EINVAL";
    case US_EIO:       return "EIO";
    case US_ECORRUPT:  return "ECORRUPT";
    case US_ENOMEM:    return "ENOMEM";
    case US_ERANGE:    return "ERANGE";
    case US_ENOTFOUND: return "ENOTFOUND";
    case US_EMPI:      return "EMPI";
    case US_EFABRIC:   return "EFABRIC";
    case US_EPROTO:    return "EPROTO";
    case US_EEXIST:    return "EEXIST";
    case US_EVERSION:  return "EVERSION";
    case US_EUNSUPP:   return "EUNSUPP";
    default:           return "E?";
    }
}
