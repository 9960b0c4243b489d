/*
 * fuzz_model_config.c — libFuzzer harness: a model directory's config.json
 * through us_model_config_parse (coordinator/model/model_config.h).
 *
 * A config the parser accepts must also pass us_model_config_validate, and
 * must survive a round trip: rendered with us_model_config_to_json and
 * parsed again it gives the same config (init-model writes configs that
 * way, infer reads them back).
 */
#include "coordinator/model/model_config.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *json = malloc(size + 1);   /* the parser takes NUL-terminated text */
    if (json == NULL)
        abort();
    memcpy(json, data, size);
    json[size] = '\0';
    us_model_config cfg;
    us_err err = {0};
    int rc = us_model_config_parse(&cfg, json, "config.json", &err);
    free(json);
    fuzz_check_err(rc, &err);
    if (rc != US_OK)
        return 0;
    rc = us_model_config_validate(&cfg, "config.json", &err);
    FUZZ_CHECK(rc == US_OK, "parsed config fails validation: %s", err.msg);
    (void)us_model_config_memory_layers(&cfg);
    (void)us_model_config_table_rows(&cfg);
    char *text = us_model_config_to_json(&cfg);
    FUZZ_CHECK(text != NULL, "to_json failed");
    us_model_config again;
    rc = us_model_config_parse(&again, text, "rendered", &err);
    FUZZ_CHECK(rc == US_OK, "rendered config does not parse: %s\n%s", err.msg, text);
    FUZZ_CHECK(memcmp(&again, &cfg, sizeof cfg) == 0 ||
               (again.norm_eps == cfg.norm_eps &&
                memcmp(&again.layers, &cfg.layers, sizeof cfg.layers) == 0 &&
                memcmp(&again.memory, &cfg.memory, sizeof cfg.memory) == 0 &&
                again.d_model == cfg.d_model && again.n_layers == cfg.n_layers),
               "round trip changed the config:\n%s", text);
    free(text);
    return 0;
}
