/*
 * nn_check.c — runs the neural-net kernels on inputs written by
 * tests/ref/nn_ref.py (`gen DIR`) and writes DIR/out_<name>.f32 for
 * `nn_ref.py check DIR`. Shapes mirror nn_ref.py. Exit 0 on success,
 * 1 with a message naming the file on any I/O or shape error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/activation.h"
#include "kernels/attention.h"
#include "kernels/infini.h"
#include "kernels/ive.h"
#include "kernels/norm.h"
#include "kernels/us_status.h"

enum { N = 5, D = 13, SR = 4, SC = 11, NS = 37, T = 9, H = 3, DH = 5, TQ = 2,
       IT = 9, IH = 2, DK = 7, DV = 6, IVE_T = 5, E = 4, VD = 7, DO = 9 };

static const char *dir;

static int load(const char *name, float *buf, size_t n, us_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.f32", dir, name);
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return us_err_set(err, US_ENOTFOUND, "%s: cannot open", path);
    size_t got = fread(buf, sizeof(float), n, f);
    int extra = fgetc(f);
    fclose(f);
    if (got != n || extra != EOF)
        return us_err_set(err, US_ECORRUPT, "%s: want exactly %zu floats", path, n);
    return US_OK;
}

static int save(const char *name, const float *buf, size_t n, us_err *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/out_%s.f32", dir, name);
    FILE *f = fopen(path, "wb");
    if (f == NULL)
        return us_err_set(err, US_EIO, "%s: cannot create", path);
    size_t put = fwrite(buf, sizeof(float), n, f);
    if (fclose(f) != 0 || put != n)
        return us_err_set(err, US_EIO, "%s: short write", path);
    return US_OK;
}

#define LOAD(name, var, n) \
    static float var[n];   \
    if ((rc = load(name, var, n, &err)) != US_OK) goto fail
#define SAVE(name, var, n) \
    if ((rc = save(name, var, n, &err)) != US_OK) goto fail

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: nn_check DIR   (after nn_ref.py gen DIR)\n");
        return 2;
    }
    dir = argv[1];
    us_err err = {0};
    int rc;
    static float out[4096], scratch[4096];

    LOAD("norm_x", nx, N * D); LOAD("norm_w", nw, D); LOAD("norm_b", nb, D);
    us_rmsnorm_forward(out, nx, nw, N, D, 1e-5f);
    SAVE("rmsnorm", out, N * D);
    us_layernorm_forward(out, nx, nw, nb, N, D, 1e-5f);
    SAVE("layernorm", out, N * D);

    LOAD("sm_x", sx, SR * SC);
    us_softmax_rows(out, sx, SR, SC);
    SAVE("softmax", out, SR * SC);

    LOAD("sw_g", sg, NS); LOAD("sw_u", su, NS);
    us_swiglu(out, sg, su, NS);
    SAVE("swiglu", out, NS);

    LOAD("at_q", aq, T * H * DH); LOAD("at_k", ak, T * H * DH); LOAD("at_v", av, T * H * DH);
    if ((rc = us_causal_attention_forward(out, scratch, aq, ak, av, T, T, H, DH)) != US_OK)
        goto fail;
    SAVE("attn_prefill", out, T * H * DH);
    if ((rc = us_causal_attention_forward(out, scratch, aq + (T - TQ) * H * DH, ak, av,
                                          TQ, T, H, DH)) != US_OK)
        goto fail;
    SAVE("attn_decode", out, TQ * H * DH);

    LOAD("inf_q1", q1, IT * IH * DK); LOAD("inf_k1", k1, IT * IH * DK);
    LOAD("inf_v1", v1, IT * IH * DV); LOAD("inf_q2", q2, IT * IH * DK);
    LOAD("inf_k2", k2, IT * IH * DK); LOAD("inf_v2", v2, IT * IH * DV);
    LOAD("inf_beta", beta, IH); LOAD("inf_adot", adot, IT * IH * DV);
    static const char *rule_names[2] = { "linear", "delta" };
    for (int rule = 0; rule < 2; rule++) {
        float M[IH * DK * DV] = { 0 }, z[IH * DK] = { 0 };
        float a1[IT * IH * DV], a2[IT * IH * DV], g[IT * IH * DV];
        char name[64];
        us_infini_retrieve(a1, scratch, q1, M, z, IT, IH, DK, DV);
        us_infini_update(M, z, scratch, k1, v1, IT, IH, DK, DV, (us_infini_rule)rule);
        us_infini_retrieve(a2, scratch, q2, M, z, IT, IH, DK, DV);
        us_infini_update(M, z, scratch, k2, v2, IT, IH, DK, DV, (us_infini_rule)rule);
        us_infini_gate(g, a2, adot, beta, IT, IH, DV);
        snprintf(name, sizeof name, "inf_%s_a1", rule_names[rule]);
        SAVE(name, a1, IT * IH * DV);
        snprintf(name, sizeof name, "inf_%s_a2", rule_names[rule]);
        SAVE(name, a2, IT * IH * DV);
        snprintf(name, sizeof name, "inf_%s_M", rule_names[rule]);
        SAVE(name, M, IH * DK * DV);
        snprintf(name, sizeof name, "inf_%s_z", rule_names[rule]);
        SAVE(name, z, IH * DK);
        snprintf(name, sizeof name, "inf_%s_gate", rule_names[rule]);
        SAVE(name, g, IT * IH * DV);
    }

    LOAD("ive_p", ip, IVE_T * E * VD); LOAD("ive_w", iw, E * VD * DO);
    us_ive_project(out, ip, iw, IVE_T, E, VD, DO, 0);
    SAVE("ive", out, IVE_T * DO);
    return 0;
fail:
    fprintf(stderr, "nn_check: error: %s (%s)\n", err.msg[0] ? err.msg : "kernel failed",
            us_code_name(rc));
    return 1;
}
