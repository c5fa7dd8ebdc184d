/* history.json as graft (or Keras's History) writes it; what loads must
 * save and load back to the same number of epochs and stages. */
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *p = fuzz_file("history.json", data, size);
    graft_history h;
    graft_history_stage *st = NULL;
    int n_st = 0;
    if (graft_history_load_json(p, &h, &st, &n_st) == GRAFT_OK) {
        const char *q = fuzz_path("again.json");
        if (graft_history_save_json(q, &h, st, n_st) == GRAFT_OK) {
            graft_history h2;
            graft_history_stage *st2 = NULL;
            int n2 = 0;
            if (graft_history_load_json(q, &h2, &st2, &n2) != GRAFT_OK || h2.n != h.n || n2 != n_st)
                abort();
            graft_history_free(&h2);
            free(st2);
        }
        graft_history_save_csv(fuzz_path("log.csv"), &h);
        graft_history_free(&h);
        free(st);
    } else if (st || h.n != 0) {
        abort(); /* documented: on failure *h is empty and *stages NULL */
    }
    fuzz_check_message();
    return 0;
}
