/* transport_fabric.c — placeholder until the libfabric backend lands. */
#include "proto/transport.h"

int us_transport_open_fabric(const us_world *world, const us_transport_opts *opts,
                             us_transport **out, us_err *err)
{
    (void)opts;
    (void)out;
    return us_err_set(err, US_EUNSUPP, "rank %d: fabric transport not built yet",
                      world->rank);
}
