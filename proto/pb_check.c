/* pb_check.c — the field-number walk (see pb_check.h). */
#include "proto/pb_check.h"

#include <stddef.h>
#include <stdint.h>

/* The message field fd of m: its count (repeated) and elements. */
static bool messages_valid(const ProtobufCMessage *m, const ProtobufCFieldDescriptor *fd)
{
    const char *base = (const char *)m;
    if (fd->label == PROTOBUF_C_LABEL_REPEATED) {
        size_t n = *(const size_t *)(const void *)(base + fd->quantifier_offset);
        ProtobufCMessage *const *items = *(ProtobufCMessage *const *const *)(const void *)(base + fd->offset);
        for (size_t i = 0; i < n; i++)
            if (!us_pb_field_numbers_valid(items[i]))
                return false;
        return true;
    }
    /* a oneof's members share storage: only the set one is a message here */
    if ((fd->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) &&
        *(const uint32_t *)(const void *)(base + fd->quantifier_offset) != fd->id)
        return true;
    return us_pb_field_numbers_valid(*(ProtobufCMessage *const *)(const void *)(base + fd->offset));
}

bool us_pb_field_numbers_valid(const ProtobufCMessage *m)
{
    if (m == NULL)
        return true;
    for (unsigned i = 0; i < m->n_unknown_fields; i++)
        if (m->unknown_fields[i].tag == 0)
            return false;
    const ProtobufCMessageDescriptor *d = m->descriptor;
    for (unsigned f = 0; f < d->n_fields; f++)
        if (d->fields[f].type == PROTOBUF_C_TYPE_MESSAGE && !messages_valid(m, &d->fields[f]))
            return false;
    return true;
}
