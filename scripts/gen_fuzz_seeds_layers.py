#!/usr/bin/python3
"""Seeds for fuzz_keras_config covering every layer kind added for Keras
Applications breadth: one model config per family, in Keras 2's functional
form (and one in Keras 3's inbound form), written to
fuzz/corpus/fuzz_keras_config/layers_*.json.

Run: /usr/bin/python3 scripts/gen_fuzz_seeds_layers.py
"""
import json
import os

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "fuzz", "corpus",
                   "fuzz_keras_config")


def model(name, shape, layers, keras3=False):
    """layers: (class_name, name, config, [input names]) in order."""
    listed = [{"class_name": "InputLayer", "name": "x",
               "config": {"name": "x", "batch_input_shape": [None] + shape, "dtype": "float32"},
               "inbound_nodes": []}]
    for cls, lname, cfg, ins in layers:
        c = {"name": lname, "trainable": True, "dtype": "float32"}
        c.update(cfg)
        if keras3:
            nodes = [{"args": [[{"class_name": "__keras_tensor__",
                                 "config": {"shape": None, "dtype": "float32",
                                            "keras_history": [i, 0, 0]}} for i in ins]]
                      if len(ins) > 1 else
                      [{"class_name": "__keras_tensor__",
                        "config": {"shape": None, "dtype": "float32",
                                   "keras_history": [ins[0], 0, 0]}}],
                      "kwargs": {}}]
        else:
            nodes = [[[i, 0, 0, {}] for i in ins]]
        listed.append({"class_name": cls, "name": lname, "config": c, "inbound_nodes": nodes})
    last = layers[-1][1]
    return {"class_name": "Functional",
            "config": {"name": name, "layers": listed, "input_layers": [["x", 0, 0]],
                       "output_layers": [[last, 0, 0]]},
            "keras_version": "3.3.3" if keras3 else "2.15.0", "backend": "tensorflow"}


def write(fname, m):
    with open(os.path.join(OUT, fname), "w") as f:
        json.dump(m, f, indent=1)
        f.write("\n")


ACTS = ["linear", "relu", "relu6", "sigmoid", "tanh", "softmax", "swish", "silu", "hard_sigmoid",
        "hard_swish", "hard_silu", "gelu", "gelu_approximate", "softplus", "softsign", "selu",
        "elu", "exponential", "leaky_relu"]

write("layers_merge.json", model("merge", [4, 4, 3], [
    ("AveragePooling2D", "sq", {"pool_size": [4, 4], "padding": "valid"}, ["x"]),
    ("Conv2D", "ex", {"filters": 3, "kernel_size": [1, 1], "activation": "sigmoid"}, ["sq"]),
    ("Multiply", "gate", {}, ["x", "ex"]),
    ("Subtract", "sub", {}, ["gate", "ex"]),
    ("Maximum", "mx", {}, ["sub", "x"]),
    ("Minimum", "mn", {}, ["sub", "x"]),
    ("Average", "av", {}, ["mx", "mn", "gate"]),
    ("Concatenate", "cat", {"axis": -1}, ["av", "x"]),
    ("Concatenate", "cat_h", {"axis": 1}, ["cat", "cat"]),
]))
write("layers_merge_keras3.json", model("merge3", [4, 4, 3], [
    ("GlobalAveragePooling2D", "sq", {"keepdims": True}, ["x"]),
    ("Multiply", "gate", {}, ["x", "sq"]),
    ("Concatenate", "cat", {"axis": 3}, ["gate", "x"]),
], keras3=True))
write("layers_activation.json", model("acts", [2, 2, 3], [
    ("Activation", "a_" + a, {"activation": a if i % 2 else
                              {"module": "keras.activations", "class_name": "function",
                               "config": a, "registered_name": None}},
     ["x" if i == 0 else "a_" + ACTS[i - 1]]) for i, a in enumerate(ACTS)
] + [("Conv2D", "c", {"filters": 2, "kernel_size": 1, "activation": "swish"}, ["a_leaky_relu"]),
     ("DepthwiseConv2D", "d", {"kernel_size": 1, "activation": "gelu"}, ["c"]),
     ("Flatten", "f", {}, ["d"]),
     ("Dense", "o", {"units": 2, "activation": "hard_silu"}, ["f"])]))
write("layers_conv.json", model("conv", [9, 9, 4], [
    ("Conv2D", "dil", {"filters": 4, "kernel_size": [3, 3], "padding": "same",
                       "dilation_rate": [2, 2]}, ["x"]),
    ("Conv2D", "grp", {"filters": 6, "kernel_size": 3, "groups": 2}, ["dil"]),
    ("DepthwiseConv2D", "dw", {"kernel_size": 3, "depth_multiplier": 2, "dilation_rate": 2,
                               "padding": "same"}, ["grp"]),
    ("SeparableConv2D", "sep", {"filters": 5, "kernel_size": 3, "depth_multiplier": 2,
                                "padding": "same", "use_bias": False}, ["dw"]),
    ("MaxPooling2D", "mp", {"pool_size": 3, "strides": 2, "padding": "same"}, ["sep"]),
    ("AveragePooling2D", "ap", {"pool_size": 2, "strides": 1, "padding": "same"}, ["mp"]),
    ("GlobalMaxPooling2D", "gmp", {"keepdims": True}, ["ap"]),
]))
write("layers_norm.json", model("norm", [6, 6, 3], [
    ("Rescaling", "rs", {"scale": 0.00392156862745098, "offset": 0.0}, ["x"]),
    ("Normalization", "nm", {"axis": -1, "mean": None, "variance": None, "invert": False}, ["rs"]),
    ("Rescaling", "rs2", {"scale": [4.367, 4.464, 4.444]}, ["nm"]),
    ("Normalization", "nc", {"axis": [3], "mean": [0.1, 0.2, 0.3], "variance": [1.0, 2.0, 3.0]},
     ["rs2"]),
    ("Conv2D", "c", {"filters": 4, "kernel_size": 1}, ["nc"]),
    ("LayerNormalization", "ln", {"axis": -1, "epsilon": 1e-6}, ["c"]),
    ("LayerScale", "ls", {"init_values": 1e-6, "projection_dim": 4}, ["ln"]),
    ("LayerNormalization", "ln3", {"axis": [1, 2, 3], "center": False}, ["ls"]),
]))
write("layers_more.json", model("more", [6, 6, 3], [
    ("LeakyReLU", "lk2", {"alpha": 0.1}, ["x"]),
    ("LeakyReLU", "lk3", {"negative_slope": 0.2}, ["lk2"]),
    ("ELU", "el", {"alpha": 0.7}, ["lk3"]),
    ("PReLU", "pr", {"shared_axes": [1, 2]}, ["el"]),
    ("Conv2DTranspose", "up", {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same",
                               "output_padding": None}, ["pr"]),
    ("Conv2DTranspose", "up2", {"filters": 2, "kernel_size": 3, "strides": 2, "padding": "same",
                                "output_padding": [1, 1], "dilation_rate": 1}, ["up"]),
    ("Cropping2D", "cr", {"cropping": [[1, 1], [2, 0]]}, ["up2"]),
    ("UpSampling2D", "us", {"size": [2, 2], "interpolation": "bilinear"}, ["cr"]),
    ("SpatialDropout2D", "sd", {"rate": 0.2}, ["us"]),
    ("GaussianNoise", "gn", {"stddev": 0.1}, ["sd"]),
    ("GaussianDropout", "gd", {"rate": 0.1}, ["gn"]),
    ("Permute", "pm", {"dims": [3, 1, 2]}, ["gd"]),
    ("Softmax", "sm", {"axis": 1}, ["pm"]),
]))
# ConvNeXt as Keras 2 saves it: a nested Sequential stem without an
# InputLayer, Dense on (H, W, C), and the block sum as a TFOpLambda whose node
# is one entry with the second operand among its keyword arguments.
cnx = model("convnext", [8, 8, 3], [
    ("Normalization", "prestem", {"axis": -1, "mean": [123.675, 116.28, 103.53],
                                  "variance": [3409.976, 3262.6944, 3291.890625]}, ["x"]),
    ("Conv2D", "dw", {"filters": 4, "kernel_size": [7, 7], "padding": "same", "groups": 4},
     ["stem"]),
    ("LayerNormalization", "ln", {"axis": -1, "epsilon": 1e-6}, ["dw"]),
    ("Dense", "pw1", {"units": 16}, ["ln"]),
    ("Activation", "gelu", {"activation": "gelu"}, ["pw1"]),
    ("Dense", "pw2", {"units": 4}, ["gelu"]),
    ("LayerScale", "ls", {"init_values": 1e-6, "projection_dim": 4}, ["pw2"]),
    ("Activation", "identity", {"activation": "linear"}, ["ls"]),
])
stem = {"class_name": "Sequential", "name": "stem", "inbound_nodes": [[["prestem", 0, 0, {}]]],
        "config": {"name": "stem", "layers": [
            {"class_name": "Conv2D", "config": {"name": "stem_conv", "filters": 4,
                                                "kernel_size": [4, 4], "strides": [4, 4]}},
            {"class_name": "LayerNormalization", "config": {"name": "stem_ln", "axis": -1,
                                                            "epsilon": 1e-6}}]}}
add = {"class_name": "TFOpLambda", "name": "tf.__operators__.add",
       "config": {"name": "tf.__operators__.add", "trainable": True, "dtype": "float32",
                  "function": "__operators__.add"},
       "inbound_nodes": [["stem", 1, 0, {"y": ["identity", 0, 0], "name": None}]]}
cnx["config"]["layers"].insert(2, stem)
cnx["config"]["layers"].append(add)
cnx["config"]["output_layers"] = [["tf.__operators__.add", 0, 0]]
write("layers_convnext.json", cnx)
# The topology TF.js 4.22 wrote for tests/fixtures/layers/tfjs_leaky (LeakyReLU and friends).
tfjs = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "layers",
                    "tfjs_leaky", "model.json")
with open(tfjs) as f:
    write("layers_tfjs_leaky.json", json.load(f)["modelTopology"])
print("wrote the layers_*.json seeds to", OUT)
