/*
 * The lesson (shared/lesson/lesson27_transfer_learning.md) written against
 * graft's C API, step by step as in the Keras original. Each Keras step is a
 * few lines here; the comments quote the Keras code they stand for.
 *
 *   make examples && build/examples/lesson [DATA_DIR [WEIGHTS]]
 *
 * DATA_DIR holds train/ and validation/ (cats_and_dogs_filtered); WEIGHTS is
 * a Keras .h5 or TF.js model.json of MobileNet (alpha 0.75 on these machines).
 * `graft lesson` does the same with data and weights discovery, run folders
 * and a summary table.
 */
#include <graft.h>

#include <stdio.h>
#include <stdlib.h>

/* An example may stop at the first error; the library itself never exits. */
#define TRY(call)                                                                                \
    do {                                                                                         \
        graft_status s_ = (call);                                                                \
        if (s_ != GRAFT_OK) {                                                                    \
            fprintf(stderr, "lesson: %s: %s\n", #call, graft_last_error());                      \
            exit(1);                                                                             \
        }                                                                                        \
    } while (0)

int main(int argc, char **argv)
{
    const char *data = argc > 1 ? argv[1] : "../shared/data/cats_and_dogs_filtered";
    const char *weights = argc > 2 ? argv[2] : "../shared/models/mobilenet_v1_0.75_224/model.json";
    char train_dir[4096], validation_dir[4096];
    snprintf(train_dir, sizeof train_dir, "%s/train", data);
    snprintf(validation_dir, sizeof validation_dir, "%s/validation", data);

    /* Step 1: train_datagen = ImageDataGenerator(rescale=1./255)
     *         train_generator = train_datagen.flow_from_directory(train_dir,
     *             target_size=(150, 150), batch_size=32, class_mode='binary') */
    graft_image_data_generator datagen = {.rescale = 1.0f / 255};
    graft_flow_cfg flow = {.target_size = {150, 150}, .batch_size = 32, .class_mode = GRAFT_CLASS_BINARY};
    graft_source *train_generator, *validation_generator;
    TRY(graft_flow_from_directory(train_dir, &datagen, &flow, &train_generator));
    TRY(graft_flow_from_directory(validation_dir, &datagen, &flow, &validation_generator));

    /* Step 2: base_model = MobileNet(input_shape=(150, 150, 3), include_top=False,
     *                                weights='imagenet') */
    graft_zoo_cfg base_cfg = graft_zoo_default_cfg();
    base_cfg.alpha = 0.75f;
    base_cfg.include_top = 0;
    base_cfg.input_shape[0] = base_cfg.input_shape[1] = 150;
    graft_model *model;
    TRY(graft_zoo_build("mobilenet", &base_cfg, &model));
    TRY(graft_model_load_weights(model, weights, &(graft_load_opts){.by_name = 1}));
    int n_base = graft_model_num_layers(model); /* len(base_model.layers) */

    /* x = layers.GlobalAveragePooling2D()(base_model.output)
     * x = layers.Dense(1024, activation='relu')(x)
     * output = layers.Dense(1, activation='sigmoid')(x) */
    graft_layer *x = graft_global_average_pooling2d(model, NULL, NULL);
    x = graft_dense(model, x, (graft_dense_cfg){.units = 1024, .activation = GRAFT_RELU});
    graft_dense(model, x, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    TRY(graft_model_status(model));

    /* Step 3: base_model.trainable = False
     *         model.compile(optimizer='adam', loss='binary_crossentropy', metrics=['accuracy'])
     *         history = model.fit(train_generator, steps_per_epoch=100, epochs=5,
     *             validation_data=validation_generator, validation_steps=50, verbose=2) */
    graft_model_set_trainable(model, 0, n_base, 0);
    graft_compile_cfg compile = {.optimizer = graft_adam(1e-3f), .loss = GRAFT_BINARY_CROSSENTROPY};
    TRY(graft_model_compile(model, &compile));
    graft_model_summary(model, stdout);
    graft_history history;
    graft_history_init(&history);
    /* Not in Keras: a feature store keeps this fit's cached base outputs for
     * the next fit, and the features below the layers that step 4 unfreezes
     * are filled in the same passes. */
    graft_feature_store *features = graft_feature_store_new();
    graft_fit_cfg fit = {.epochs = 5, .steps_per_epoch = 100, .validation_data = validation_generator,
                         .validation_steps = 50, .verbose = 2, .feature_store = features,
                         .keep_features_below = graft_layer_name(graft_model_layer(model, n_base - 20))};
    TRY(graft_model_fit(model, train_generator, &fit, &history));

    /* Step 4: for layer in base_model.layers[-20:]: layer.trainable = True
     *         model.compile(optimizer=tf.keras.optimizers.Adam(1e-5), ...)
     *         history_fine = model.fit(..., epochs=10, ...)
     * The epochs continue the count (5..14) and the same History. */
    graft_model_set_trainable(model, n_base - 20, n_base, 1);
    compile.optimizer = graft_adam(1e-5f);
    TRY(graft_model_compile(model, &compile));
    fit.initial_epoch = 5;
    fit.epochs = 15;
    fit.keep_features_below = NULL;
    TRY(graft_model_fit(model, train_generator, &fit, &history));
    graft_feature_store_free(features);
    fit.feature_store = NULL;

    /* plt.subplot(2, 1, 1) ... 'Accuracy до и после fine-tuning' */
    graft_history_stage stages[2] = {{"frozen", 0}, {"fine-tuning", 5}};
    graft_stages_plot figure = {stages, 2, "Accuracy before and after fine-tuning",
                                "Loss before and after fine-tuning"};
    TRY(graft_plot_stages(&history, &figure, "lesson_accuracy_loss.png"));
    TRY(graft_model_save(model, "lesson_model.h5"));

    /* From scratch: scratch_model = Sequential([Conv2D(32, (3, 3), activation='relu',
     * input_shape=(150, 150, 3)), MaxPooling2D(2, 2), Conv2D(64, (3, 3), activation='relu'),
     * MaxPooling2D(2, 2), Flatten(), Dense(128, activation='relu'), Dense(1, activation='sigmoid')]) */
    graft_model *scratch = graft_model_new("sequential");
    graft_input(scratch, NULL, graft_shape3(150, 150, 3));
    graft_conv2d(scratch, NULL, (graft_conv2d_cfg){.filters = 32, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(scratch, NULL, (graft_pool2d_cfg){.pool_size = {2, 2}});
    graft_conv2d(scratch, NULL, (graft_conv2d_cfg){.filters = 64, .kernel_size = {3, 3}, .activation = GRAFT_RELU});
    graft_max_pooling2d(scratch, NULL, (graft_pool2d_cfg){.pool_size = {2, 2}});
    graft_flatten(scratch, NULL, NULL);
    graft_dense(scratch, NULL, (graft_dense_cfg){.units = 128, .activation = GRAFT_RELU});
    graft_dense(scratch, NULL, (graft_dense_cfg){.units = 1, .activation = GRAFT_SIGMOID});
    compile.optimizer = graft_adam(1e-3f);
    TRY(graft_model_compile(scratch, &compile));
    graft_history history_scratch;
    graft_history_init(&history_scratch);
    fit.initial_epoch = 0;
    fit.epochs = 10;
    TRY(graft_model_fit(scratch, train_generator, &fit, &history_scratch));

    /* plt.plot(history_scratch.history['val_accuracy'], label='Обучение с нуля') ... */
    const graft_history *runs[] = {&history_scratch, &history};
    const char *labels[] = {"From scratch", "Transfer learning + fine-tuning"};
    TRY(graft_plot_compare(runs, labels, 2, "lesson_comparison.png", "Accuracy comparison"));
    printf("Figures: lesson_accuracy_loss.png, lesson_comparison.png\n");

    graft_history_free(&history);
    graft_history_free(&history_scratch);
    graft_model_free(model);
    graft_model_free(scratch);
    graft_source_free(train_generator);
    graft_source_free(validation_generator);
    return 0;
}
