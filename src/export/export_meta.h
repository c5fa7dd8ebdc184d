/* What the ONNX and TF.js exports record beside the weights (graft_export_meta). */
#ifndef GRAFT_EXPORT_META_H
#define GRAFT_EXPORT_META_H

#include "internal.h"

#include <cjson/cJSON.h>

/* The class names as a JSON array ("[]" when none); malloc'd, NULL when out of memory. */
char *export_classes_json(const graft_export_meta *meta);
/* {"classes", "preprocessing", "input_shape", "val_accuracy", "model_name", ...}
 * as metadata.json holds them; NULL when out of memory. */
cJSON *export_metadata(const graft_model *m, const graft_export_meta *meta);

#endif
