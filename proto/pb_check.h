/*
 * pb_check.h — what protobuf-c's parser lets through but cannot write back.
 *
 * protobuf-c reads a field tag written in more bytes than needed (e.g.
 * 0x80 0x00) without checking its number, so a message can carry an unknown
 * field numbered 0, which the protobuf encoding forbids; packed again, that
 * field's tag is one 0x00 byte, which protobuf-c's own parser then refuses.
 * A peer's message that is accepted must be one we could pack and read back
 * (a fuzzed Request did exactly this: 13 bytes in, 12 out, unreadable).
 */
#ifndef US_PB_CHECK_H
#define US_PB_CHECK_H

#include <stdbool.h>

#include <protobuf-c/protobuf-c.h>

/* Returns: true unless m or a message inside it (set oneof members and
 * repeated messages included) carries an unknown field numbered 0; true for
 * NULL; cannot fail. */
bool us_pb_field_numbers_valid(const ProtobufCMessage *m);

#endif
