/*
 * fuzz_serve.c — libFuzzer harness: a shard answering one gather request
 * (us_serve_request, shard/serve.h) from the bytes a coordinator sent.
 *
 * Two servers of table 4 with limits like a lookup's (256 tokens x k 32):
 * an f32 table of 64 rows whose odd blocks live on another shard, and an
 * int8 table of 61 rows (partial last block) holding every block. The
 * request goes to the server byte 0 picks. Whatever it asks, the server must
 * answer with one response that the coordinator's parser (us_wire_resp_parse)
 * accepts as the answer to that request, and must stay usable: a fixed valid
 * request afterwards is still answered correctly.
 */
#include "shard/serve.h"
#include "tests/fuzz/fuzz_util.h"

enum { F32_ROWS = 64, I8_ROWS = 61, DIM = 5, BLOCK_BITS = 3, N_BLOCKS = 8 };

static float f32_data[F32_ROWS * DIM];
static int8_t i8_data[N_BLOCKS << BLOCK_BITS][DIM];
static float i8_scales[N_BLOCKS << BLOCK_BITS];
static const uint8_t *f32_blocks[N_BLOCKS], *i8_blocks[N_BLOCKS];
static const float *i8_block_scales[N_BLOCKS];
static us_rows_view views[2];
static us_server servers[2];

static void setup(void)
{
    for (int i = 0; i < F32_ROWS * DIM; i++)
        f32_data[i] = (float)((i * 37) % 101) / 16.0f - 3.0f;
    for (int r = 0; r < (N_BLOCKS << BLOCK_BITS); r++) {
        for (int c = 0; c < DIM; c++)
            i8_data[r][c] = (int8_t)((r * DIM + c) * 29 % 255 - 127);
        i8_scales[r] = 0.01f * (float)(r + 1);
    }
    for (int b = 0; b < N_BLOCKS; b++) {
        f32_blocks[b] = b % 2 ? NULL : (const uint8_t *)(f32_data + (b << BLOCK_BITS) * DIM);
        i8_blocks[b] = (const uint8_t *)i8_data[b << BLOCK_BITS];
        i8_block_scales[b] = i8_scales + (b << BLOCK_BITS);
    }
    views[0] = (us_rows_view){ .dtype = US_DTYPE_F32, .dim = DIM, .block_bits = BLOCK_BITS,
                               .row_stride_bytes = DIM * 4, .rows = F32_ROWS,
                               .n_blocks = N_BLOCKS, .blocks = f32_blocks };
    views[1] = (us_rows_view){ .dtype = US_DTYPE_INT8, .dim = DIM, .block_bits = BLOCK_BITS,
                               .row_stride_bytes = DIM, .rows = I8_ROWS,
                               .n_blocks = N_BLOCKS, .blocks = i8_blocks,
                               .block_scales = i8_block_scales };
    const us_wire_limits lim = { .max_bytes = 1u << 20, .max_tokens = 256,
                                 .max_pairs = 256 * 32 };
    for (int i = 0; i < 2; i++) {
        us_err err = {0};
        FUZZ_CHECK(us_server_init(&servers[i], 4, i, &views[i], &lim, 1, &err) == US_OK,
                   "server %d: %s", i, err.msg);
    }
}

/* Serves msg on s; the answer must parse as the response to msg. */
static const us_wire_resp_hdr *serve(us_server *s, const us_rows_view *v, const uint8_t *msg,
                                     size_t len, us_wire_buf *out)
{
    out->len = 0;
    bool rejected = true;
    us_err err = {0};
    int rc = us_serve_request(s, msg, len, 0, out, &rejected, NULL, &err);
    fuzz_check_err(rc, &err);
    FUZZ_CHECK(rc == US_OK, "no answer built: %s", err.msg);
    FUZZ_CHECK(out->len >= sizeof(us_wire_resp_hdr), "answer of %llu bytes",
               (unsigned long long)out->len);
    const us_wire_resp_hdr *h = (const us_wire_resp_hdr *)out->data;
    FUZZ_CHECK(h->total_bytes == out->len, "answer says %llu bytes, is %llu",
               (unsigned long long)h->total_bytes, (unsigned long long)out->len);
    FUZZ_CHECK(rejected == (h->status < 0), "rejected %d, status %d", rejected, h->status);
    if (len >= sizeof(us_wire_req_hdr)) {
        us_wire_req_hdr asked;
        memcpy(&asked, msg, sizeof asked);
        us_wire_resp r;
        us_wire_resp_expect want = { .asked = &asked, .dim = v->dim,
                                     .elem_bytes = us_dtype_size(v->dtype),
                                     .with_scales = v->dtype == US_DTYPE_INT8 };
        rc = us_wire_resp_parse(out->data, out->len, &want, &r, &err);
        FUZZ_CHECK(rc == US_OK, "coordinator refuses the answer: %s", err.msg);
    }
    return h;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int ready;
    if (!ready) {
        setup();
        ready = 1;
    }
    if (size == 0)
        return 0;
    int which = data[0] & 1;
    uint8_t *msg = malloc(size - 1 ? size - 1 : 1);   /* 16-aligned, exact length */
    if (msg == NULL)
        abort();
    memcpy(msg, data + 1, size - 1);
    us_wire_buf out = {0};
    serve(&servers[which], &views[which], msg, size - 1, &out);
    free(msg);

    /* Still usable: row 2 of token 0 with weight 1 is that row itself. */
    us_wire_buf req = {0};
    uint64_t at, len = us_wire_req_bytes(1, 1, 0);
    us_err err = {0};
    us_wire_req r;
    FUZZ_CHECK(us_wire_buf_append(&req, len, &at, &err) == US_OK, "%s", err.msg);
    us_wire_req_desc d = { .mode = US_WIRE_PUSH, .table_id = 4, .batch_id = 7, .n_tokens = 1,
                           .n_rows = 1, .n_pairs = 1, .n_groups = 1 };
    FUZZ_CHECK(us_wire_req_init(req.data, len, &d, &r, &err) == US_OK, "%s", err.msg);
    ((uint64_t *)r.rows)[0] = 2;
    ((uint32_t *)r.pair_token)[0] = 0;
    ((uint32_t *)r.pair_ref)[0] = 0;
    ((float *)r.pair_weight)[0] = 1.0f;
    const us_wire_resp_hdr *h = serve(&servers[which], &views[which], req.data, len, &out);
    FUZZ_CHECK(h->status == US_OK, "valid request rejected after fuzz input");
    const float *sums = (const float *)(h + 1);
    for (int c = 0; c < DIM; c++) {
        float want = which == 0 ? f32_data[2 * DIM + c] : i8_data[2][c] * i8_scales[2];
        FUZZ_CHECK(sums[c] == want, "column %d: %g, want %g", c, (double)sums[c], (double)want);
    }
    us_wire_buf_free(&req);
    us_wire_buf_free(&out);
    return 0;
}
